"""ArcGIS Compact Cache V1 (``esriMapCacheStorageModeCompact``): the codec of ``.bundle`` +
``.bundlx``.

The ``.bundlx`` index is 81,952 bytes: a 16-byte header, 16,384 five-byte little-endian offsets
in column-major order (``16 + 5 * (128 * c + r)``) and a 16-byte footer. Each offset points at
a u32 size prefix in the ``.bundle``, whose first 60 bytes are a header and next 65,536 bytes
the zero size slots that empty tiles point into. A tile exists when its offset lies past that
reserved zone and the size found there is above zero: empty slots are recognised from the index
alone, and only the 4-byte size words of the other slots are read from the ``.bundle``: one
``pread`` of 4 bytes per tile, in file order, never a byte of a tile's body.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from ..errors import CorruptBundle
from ..models import BUNDLE_SIZE, BundleKey
from .base import BundleFile, BundleIndex, StoredTile
from .bytesource import ByteSource, Opener
from .tile_index import TileIndex

#: ``StorageFormat`` of ``conf.xml`` for these bundles.
STORAGE_FORMAT = "esriMapCacheStorageModeCompact"

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


def tile_slots(
    offsets: npt.NDArray[np.int64], file_size: int, first_row: int = 0, first_col: int = 0
) -> npt.NDArray[np.bool_]:
    """Slots whose size word must be read: those pointing past the reserved zone.

    Raises:
        CorruptBundle: an offset inside the header, or past the end of the ``.bundle`` (the
            message names the tile: ``first_row`` and ``first_col`` are the bundle's first).
    """
    inside_header = (offsets > 0) & (offsets < BUNDLE_HEADER)
    past_end = offsets > file_size - SIZE_PREFIX
    bad = inside_header | past_end
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise CorruptBundle(
            f"tile R{first_row + r}/C{first_col + c}: offset {int(offsets[r, c])} lies "
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


def read_offsets(src: ByteSource) -> npt.NDArray[np.int64]:
    """The decoded ``.bundlx`` read from ``src`` (see :func:`decode_bundlx`)."""
    return decode_bundlx(src.read(0, BUNDLX_SIZE + 1))  # never more than an index


def bundle_size(src: ByteSource) -> int:
    """The size of the ``.bundle`` read from ``src``.

    Raises:
        CorruptBundle: it is too short to hold the header and the size slots.
    """
    if src.size < DATA_START:
        raise CorruptBundle(
            f"truncated: {src.size:,} bytes, a Compact V1 bundle holds at "
            f"least {DATA_START:,} (header and size slots)"
        )
    return src.size


def read_size_words(src: ByteSource, at: npt.NDArray[np.int64]) -> npt.NDArray[np.uint32]:
    """The little-endian u32 at each offset of ``at`` in ``src``: 4 bytes read per offset
    (:meth:`~.bytesource.ByteSource.read_words`).

    Reads go in file order: the kernel's read-ahead then serves them from few disk reads, an
    object joins near ones into one request, and a compressed zip member is inflated once.

    Raises:
        CorruptBundle: the source ends inside a word (it shrank after its size was taken).
    """
    order = np.argsort(at, kind="stable")
    offsets = at[order].tolist()
    data = src.read_words(offsets, SIZE_PREFIX)
    if len(data) != SIZE_PREFIX * len(offsets):
        offset = offsets[len(data) // SIZE_PREFIX]
        raise CorruptBundle(f"truncated: the file ends inside the size word at byte {offset}")
    words = np.empty(len(at), dtype=np.uint32)
    words[order] = np.frombuffer(data, dtype="<u4")
    return words


def read_v1_index(bundlx_src: ByteSource, bundle_src: ByteSource, key: BundleKey) -> BundleIndex:
    """Read a V1 bundle: its whole ``.bundlx``, and the size words of its live slots.

    Raises:
        CorruptBundle: the index or the bundle cannot be decoded.
        BundleChanging: either changed while it was read.
        OSError: either cannot be read.
    """
    return _read_v1(bundlx_src, bundle_src, key)[0]


def v1_tile_index(bundlx_src: ByteSource, bundle_src: ByteSource, key: BundleKey) -> TileIndex:
    """Read a V1 bundle's index (see :func:`read_v1_index`): each tile's size and the offset
    of its bytes, after its size prefix."""
    index, offsets = _read_v1(bundlx_src, bundle_src, key)
    return TileIndex(index.sizes, offsets + SIZE_PREFIX)


def _read_v1(
    bundlx_src: ByteSource, bundle_src: ByteSource, key: BundleKey
) -> tuple[BundleIndex, npt.NDArray[np.int64]]:
    """:func:`read_v1_index`, and the offsets of the ``.bundlx``."""
    offsets = read_offsets(bundlx_src)
    size = bundle_size(bundle_src)
    words = read_size_words(bundle_src, offsets[tile_slots(offsets, size, key.row, key.col)])
    bundle_src.check_unchanged()
    bundlx_src.check_unchanged()
    return summarize_v1(offsets, words, size, key.row, key.col, bundle_src.modified), offsets


def v1_tiles(
    offsets: npt.NDArray[np.int64],
    src: ByteSource,
    first_row: int = 0,
    first_col: int = 0,
) -> Iterator[StoredTile]:
    """Every stored tile of a V1 bundle, in file order: its size word, then its bytes.

    Args:
        offsets: the (128, 128) offsets of :func:`decode_bundlx`.
        src: the ``.bundle``'s bytes.
        first_row: row of the bundle's top-left tile.
        first_col: column of the bundle's top-left tile.

    Raises:
        CorruptBundle: a ``.bundle`` too short for its header, an offset inside the header or
            past its end.
        OSError: the ``.bundle`` cannot be read.
    """
    file_size = bundle_size(src)
    live = tile_slots(offsets, file_size, first_row, first_col).ravel()
    flat = offsets.ravel()
    slots = np.flatnonzero(live)
    for slot in slots[np.argsort(flat[slots], kind="stable")].tolist():
        offset = int(flat[slot])
        size = int.from_bytes(src.read(offset, SIZE_PREFIX), "little")
        if size == 0:
            continue  # a slot written empty
        r, c = divmod(slot, BUNDLE_SIZE)
        row, col = first_row + r, first_col + c
        if offset + SIZE_PREFIX + size > file_size:
            yield StoredTile.past_end(row, col, offset, size, file_size)
        else:
            yield StoredTile(row, col, src.read(offset + SIZE_PREFIX, size))


class CompactV1:
    """The Compact V1 codec: each bundle read with the ``.bundlx`` beside it."""

    #: A bundle is read with its ``.bundlx``.
    beside = True
    #: Nothing of the bundle file is read first: its index is the ``.bundlx``.
    leading_bytes = 0

    def read_index(self, open_source: Opener, bundle: BundleFile) -> BundleIndex:
        """Read the ``.bundlx`` and the size words of the live slots (see
        :func:`read_v1_index`)."""
        with _open_index(open_source, bundle.path) as index, open_source(bundle.path) as src:
            return read_v1_index(index, src, bundle.key)

    def read_tiles(self, open_source: Opener, bundle: BundleFile) -> Iterator[StoredTile]:
        """The bundle's tiles in file order (see :func:`v1_tiles`)."""
        with _open_index(open_source, bundle.path) as index:
            offsets = read_offsets(index)
        with open_source(bundle.path) as src:
            yield from v1_tiles(offsets, src, bundle.key.row, bundle.key.col)

    def tile_index(self, open_source: Opener, bundle: BundleFile) -> TileIndex:
        """The ``.bundlx`` and the size words (see :func:`v1_tile_index`)."""
        with _open_index(open_source, bundle.path) as index, open_source(bundle.path) as src:
            return v1_tile_index(index, src, bundle.key)


def _open_index(open_source: Opener, path: str) -> ByteSource:
    """The ``.bundlx`` beside the ``.bundle`` at ``path``."""
    try:
        return open_source(path[: -len(".bundle")] + ".bundlx")
    except FileNotFoundError:
        raise CorruptBundle("no .bundlx index beside it") from None
