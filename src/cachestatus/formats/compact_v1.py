"""ArcGIS Compact Cache V1 (``esriMapCacheStorageModeCompact``): ``.bundle`` + ``.bundlx``.

The ``.bundlx`` index is 81,952 bytes: a 16-byte header, 16,384 five-byte little-endian offsets
in column-major order (``16 + 5 * (128 * c + r)``) and a 16-byte footer. Each offset points at
a u32 size prefix in the ``.bundle``, whose first 60 bytes are a header and next 65,536 bytes
the zero size slots that empty tiles point into. A tile exists when its offset lies past that
reserved zone and the size found there is above zero: empty slots are recognised from the index
alone, and only the 4-byte size words of the other slots are read from the ``.bundle``: one
``pread`` of 4 bytes per tile, in file order, never a byte of a tile's body.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from ..errors import CorruptBundle
from ..models import BUNDLE_SIZE
from .arcgis_folder import ArcGISFolderCache
from .base import (
    BundleFile,
    BundleIndex,
    ReadAt,
    StoredTile,
    check_unchanged,
    open_regular,
    read_at,
    read_exactly,
)

BUNDLX_HEADER = 16  # the 5-byte offsets start at byte 16 of the .bundlx
TILES = BUNDLE_SIZE * BUNDLE_SIZE
BUNDLX_SIZE = BUNDLX_HEADER + 5 * TILES + 16  # 81,952 bytes
BUNDLE_HEADER = 60  # the .bundle's header
RESERVED = 4 * TILES  # 65,536 bytes of zero size slots after it
DATA_START = BUNDLE_HEADER + RESERVED  # 65,596: the first byte a tile's size prefix can be at
SIZE_PREFIX = 4


def decode_bundlx(buf: bytes) -> npt.NDArray[np.int64]:
    """The 128 x 128 offsets of a ``.bundlx``, row-major (``[row, col]``).

    Raises:
        CorruptBundle: the index is not 81,952 bytes.
    """
    if len(buf) != BUNDLX_SIZE:
        raise CorruptBundle(
            f"bad index: the .bundlx is {len(buf):,} bytes, expected {BUNDLX_SIZE:,}"
        )
    raw = np.frombuffer(buf, dtype=np.uint8, count=5 * TILES, offset=BUNDLX_HEADER)
    raw = raw.reshape(TILES, 5).astype(np.int64)
    offsets = raw[:, 0] | raw[:, 1] << 8 | raw[:, 2] << 16 | raw[:, 3] << 24 | raw[:, 4] << 32
    return offsets.reshape(BUNDLE_SIZE, BUNDLE_SIZE).T  # stored column by column


def tile_slots(offsets: npt.NDArray[np.int64], file_size: int) -> npt.NDArray[np.bool_]:
    """Slots whose size word must be read: those pointing past the reserved zone.

    Raises:
        CorruptBundle: an offset inside the header, or past the end of the ``.bundle``.
    """
    inside_header = (offsets > 0) & (offsets < BUNDLE_HEADER)
    past_end = offsets > file_size - SIZE_PREFIX
    bad = inside_header | past_end
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise CorruptBundle(
            f"tile slot R{r}/C{c}: offset {int(offsets[r, c])} lies "
            f"{'inside the header' if inside_header[r, c] else 'past the end'} "
            f"of the .bundle ({file_size:,} bytes)"
        )
    return offsets >= DATA_START


def summarize_v1(
    offsets: npt.NDArray[np.int64],
    size_words: npt.NDArray[np.uint32],
    file_size: int,
    first_row: int = 0,
    first_col: int = 0,
    modified: float | None = None,
) -> BundleIndex:
    """Sizes, counts and dead bytes from the offsets and the size words read at the live slots.

    Args:
        offsets: the (128, 128) offsets of :func:`decode_bundlx`.
        size_words: the u32 found at each offset where :func:`tile_slots` is true, in row-major
            order of those slots.
        file_size: the ``.bundle``'s size.
        first_row: row of the bundle's top-left tile, to name tiles in messages.
        first_col: column of the bundle's top-left tile.
        modified: the ``.bundle``'s modification time, passed through.

    Raises:
        CorruptBundle: a tile running past the end of the file, or more tile bytes than the file.
    """
    live = offsets >= DATA_START
    sizes = np.zeros((BUNDLE_SIZE, BUNDLE_SIZE), dtype=np.uint64)
    sizes[live] = size_words
    ends = np.where(sizes > 0, offsets + SIZE_PREFIX + sizes.astype(np.int64), 0)
    if ends.max(initial=0) > file_size:
        r, c = (int(v) for v in np.argwhere(ends > file_size)[0])
        raise CorruptBundle(
            f"tile R{first_row + r}/C{first_col + c}: offset {int(offsets[r, c])} + size "
            f"{int(sizes[r, c])} runs past the end of the file ({file_size:,} bytes)"
        )
    tiles = int(np.count_nonzero(sizes))
    tile_bytes = int(sizes.sum())
    used = tile_bytes + SIZE_PREFIX * tiles
    if used > file_size - DATA_START:
        raise CorruptBundle(
            f"the index claims {used:,} bytes of tiles, more than the "
            f"{file_size - DATA_START:,} the file holds after its header"
        )
    return BundleIndex(sizes, tiles, tile_bytes, file_size, file_size - DATA_START - used, modified)


def read_size_words(fd: int, at: npt.NDArray[np.int64]) -> npt.NDArray[np.uint32]:
    """The little-endian u32 at each offset of ``at`` in ``fd``: 4 bytes read per offset.

    Reads go in file order (the kernel's read-ahead then serves them from few disk reads).

    Raises:
        CorruptBundle: the file ends inside a word (it shrank after its size was checked).
    """
    order = np.argsort(at, kind="stable")
    buf = bytearray(SIZE_PREFIX * len(at))
    view = memoryview(buf)
    for i, offset in enumerate(at[order].tolist()):
        word = view[SIZE_PREFIX * i : SIZE_PREFIX * (i + 1)]
        if read_at(fd, word, offset) != SIZE_PREFIX:
            raise CorruptBundle(f"truncated: the file ends inside the size word at byte {offset}")
    words = np.empty(len(at), dtype=np.uint32)
    words[order] = np.frombuffer(buf, dtype="<u4")
    return words


def v1_tiles(
    offsets: npt.NDArray[np.int64],
    file_size: int,
    read: ReadAt,
    first_row: int = 0,
    first_col: int = 0,
) -> Iterator[StoredTile]:
    """Every stored tile of a V1 bundle, in file order: its size word, then its bytes.

    Args:
        offsets: the (128, 128) offsets of :func:`decode_bundlx`.
        file_size: the ``.bundle``'s size.
        read: reads the ``.bundle``'s bytes at an offset (a file or a zip member).
        first_row: row of the bundle's top-left tile.
        first_col: column of the bundle's top-left tile.

    Raises:
        CorruptBundle: an offset inside the header or past the end of the file.
    """
    live = tile_slots(offsets, file_size).ravel()
    flat = offsets.ravel()
    slots = np.flatnonzero(live)
    for slot in slots[np.argsort(flat[slots], kind="stable")].tolist():
        offset = int(flat[slot])
        size = int.from_bytes(read(offset, SIZE_PREFIX), "little")
        if size == 0:
            continue  # a slot written empty
        r, c = divmod(slot, BUNDLE_SIZE)
        row, col = first_row + r, first_col + c
        if offset + SIZE_PREFIX + size > file_size:
            yield StoredTile.past_end(row, col, offset, size, file_size)
        else:
            yield StoredTile(row, col, read(offset + SIZE_PREFIX, size))


def _bundlx_offsets(path: str) -> tuple[npt.NDArray[np.int64], os.stat_result]:
    """The decoded ``.bundlx`` beside the ``.bundle`` at ``path``, and its stat as read."""
    try:
        with open(path[: -len(".bundle")] + ".bundlx", "rb") as f:
            return decode_bundlx(f.read(BUNDLX_SIZE + 1)), os.fstat(f.fileno())
    except FileNotFoundError:
        raise CorruptBundle("no .bundlx index beside it") from None


def _check_length(file_size: int) -> None:
    if file_size < DATA_START:
        raise CorruptBundle(
            f"truncated: {file_size:,} bytes, a Compact V1 bundle holds at "
            f"least {DATA_START:,} (header and size slots)"
        )


def read_bundle_v1(path: str, first_row: int = 0, first_col: int = 0) -> BundleIndex:
    """Read a V1 bundle: its whole ``.bundlx``, and the size words of its live slots."""
    offsets, index_stat = _bundlx_offsets(path)
    fd, st = open_regular(path)
    try:
        _check_length(st.st_size)
        words = read_size_words(fd, offsets[tile_slots(offsets, st.st_size)])
        check_unchanged(st, os.fstat(fd))
    finally:
        os.close(fd)
    check_unchanged(index_stat, os.stat(path[: -len(".bundle")] + ".bundlx"))
    return summarize_v1(offsets, words, st.st_size, first_row, first_col, st.st_mtime)


def read_tiles_v1(path: str, first_row: int = 0, first_col: int = 0) -> Iterator[StoredTile]:
    """The tiles of a V1 bundle file, in file order (see :func:`v1_tiles`)."""
    offsets, _ = _bundlx_offsets(path)
    fd, st = open_regular(path)
    size = st.st_size
    try:
        _check_length(size)
        yield from v1_tiles(
            offsets,
            size,
            lambda offset, length: read_exactly(fd, offset, length, size),
            first_row,
            first_col,
        )
    finally:
        os.close(fd)


class CompactV1Cache(ArcGISFolderCache):
    """An ArcGIS Compact V1 folder cache: ``conf.xml``, ``.bundle`` + ``.bundlx`` files."""

    name = "compact-v1"
    description = "ArcGIS Compact Cache V1 folder (conf.xml, _alllayers/Lnn/*.bundle + .bundlx)"
    storage_formats = ("esriMapCacheStorageModeCompact",)

    def read_bundle(self, bundle: BundleFile) -> BundleIndex:
        """Read the ``.bundlx`` and the size words of the live slots."""
        return read_bundle_v1(bundle.path, bundle.key.row, bundle.key.col)

    def read_tiles(self, bundle: BundleFile) -> Iterator[StoredTile]:
        """The bundle's tiles in file order."""
        return read_tiles_v1(bundle.path, bundle.key.row, bundle.key.col)
