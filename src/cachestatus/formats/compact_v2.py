"""ArcGIS Compact Cache V2 (``esriMapCacheStorageModeCompactV2``): the bundle codec.

A V2 bundle is a 64-byte little-endian header, then 16,384 eight-byte index entries in row-major
order (``64 + 8 * (128 * r + c)``): offset in the low 40 bits, size in the high 24 bits; size 0
means no tile whatever the offset (ArcGIS writes empty slots as offset 4, size 0). Each tile's size
is repeated as a u32 at ``offset - 4``. Only the header words GDAL checks are validated; ArcGIS
writes the others differently from the published white paper.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from ..errors import CorruptBundle
from ..models import BUNDLE_SIZE, BundleKey
from .base import BundleFile, BundleIndex, StoredTile
from .bytesource import ByteSource, Opener
from .tile_index import TileIndex

#: ``StorageFormat`` of ``conf.xml`` (``storageFormat`` of ``root.json``) for these bundles.
STORAGE_FORMAT = "esriMapCacheStorageModeCompactV2"

HEADER_SIZE = 64
TILES_PER_BUNDLE = BUNDLE_SIZE * BUNDLE_SIZE
INDEX_SIZE = 8 * TILES_PER_BUNDLE  # 131,072 bytes, starts at byte 64
HEADER_INDEX_SIZE = HEADER_SIZE + INDEX_SIZE  # 131,136: the minimum file size
#: Each tile's bytes are preceded by its size as a u32.
SIZE_PREFIX = 4
#: The first byte a tile can start at: after the index and the first size prefix.
FIRST_TILE_OFFSET = HEADER_INDEX_SIZE + SIZE_PREFIX
OFFSET_MASK = (1 << 40) - 1
SIZE_SHIFT = 40
_MASK = np.uint64(OFFSET_MASK)
_SHIFT = np.uint64(SIZE_SHIFT)
_ENTRY = np.dtype("<u8")

#: Header words that GDAL's ESRIC driver checks: (name, byte offset, expected value).
HEADER_CHECKS = (
    ("version", 0, 3),  # u32 at byte 0
    ("offset size", 12, 5),  # u32 at byte 12
    ("user header offset", 32, 40),  # u64 at byte 32
    ("index size", 60, INDEX_SIZE),  # u32 at byte 60
)
#: The four checked words in one unpack: u32 @0, u32 @12, u64 @32, u32 @60.
_HEADER_WORDS = struct.Struct("<I8xI16xQ20xI")
#: The four checked words as GDAL expects them.
_EXPECTED_WORDS = tuple(expected for _, _, expected in HEADER_CHECKS)

#: Anything holding bundle bytes.
Buffer = bytes | bytearray | memoryview


def check_header(buf: Buffer) -> None:
    """Validate the header words GDAL checks.

    Raises:
        CorruptBundle: the buffer is shorter than header+index or a checked word is wrong.
    """
    if len(buf) < HEADER_INDEX_SIZE:
        raise CorruptBundle(
            f"truncated: {len(buf):,} bytes, a Compact V2 bundle holds at least "
            f"{HEADER_INDEX_SIZE:,} (header and index)"
        )
    values = _HEADER_WORDS.unpack_from(buf, 0)
    if values == _EXPECTED_WORDS:
        return
    for (name, offset, expected), value in zip(HEADER_CHECKS, values, strict=True):
        if value != expected:
            raise CorruptBundle(
                f"bad header: {name} (byte {offset}) is {value}, expected {expected}"
            )


def index_entries(buf: Buffer) -> npt.NDArray[np.uint64]:
    """The 16,384 raw index entries of a header+index buffer, as a (128, 128) ``uint64`` view."""
    return np.ndarray((BUNDLE_SIZE, BUNDLE_SIZE), dtype=_ENTRY, buffer=buf, offset=HEADER_SIZE)


class Scratch(threading.local):
    """Reusable arrays for :func:`summarize_index`: a scan allocates nothing per bundle.

    Each thread sees arrays of its own: a reader may read bundles from several threads at once
    (reads in flight, see :func:`cachestatus.scan.scan_chunk`).
    """

    def __init__(self) -> None:
        self.buffer = bytearray(HEADER_INDEX_SIZE)
        # uint64 throughout: mixed-width ufuncs take numpy's slow buffered path.
        self.sizes = np.empty((BUNDLE_SIZE, BUNDLE_SIZE), dtype=np.uint64)
        self.ends = np.empty((BUNDLE_SIZE, BUNDLE_SIZE), dtype=np.uint64)


def summarize_index(
    buf: Buffer,
    file_size: int,
    first_row: int = 0,
    first_col: int = 0,
    scratch: Scratch | None = None,
    modified: float | None = None,
    stamp: int | str | None = None,
) -> BundleIndex:
    """Decode and check a bundle's header and index, vectorised (six passes over the index).

    Args:
        buf: at least the first 131,136 bytes of the bundle.
        file_size: the bundle file's size in bytes.
        first_row: row of the bundle's top-left tile, to name tiles in messages.
        first_col: column of the bundle's top-left tile.
        scratch: arrays to decode into; the returned ``sizes`` is then a view of them, valid until
            the next call with the same scratch.
        modified: the file's modification time, passed through to the result.
        stamp: the file's version stamp as read, passed through to the result.

    Returns:
        Sizes, counts, tile bytes and dead bytes.

    Raises:
        CorruptBundle: header, index or file size are inconsistent; the reason names the tile.
    """
    check_header(buf)
    if file_size < HEADER_INDEX_SIZE:
        raise CorruptBundle(f"truncated: file is {file_size:,} bytes, shorter than its index")
    scratch = scratch or Scratch()
    entries = index_entries(buf)
    sizes, ends = scratch.sizes, scratch.ends
    np.right_shift(entries, _SHIFT, out=sizes)
    tiles = int(np.count_nonzero(sizes))
    tile_bytes = int(sizes.sum())
    if tiles:
        np.bitwise_and(entries, _MASK, out=ends)
        np.add(ends, sizes, out=ends)
        if int(ends.max()) > file_size:
            # Empty slots may carry any offset: only slots with a size count.
            np.multiply(ends, sizes > 0, out=ends)
            high = int(np.argmax(ends))
            if int(ends.flat[high]) > file_size:
                r, c = divmod(high, BUNDLE_SIZE)
                size = int(sizes.flat[high])
                raise CorruptBundle(
                    f"tile R{first_row + r}/C{first_col + c}: offset "
                    f"{int(ends.flat[high]) - size} + size {size} runs past the end of the file "
                    f"({file_size:,} bytes)"
                )
    used = tile_bytes + SIZE_PREFIX * tiles
    if file_size - HEADER_INDEX_SIZE < used:
        used = _unique_bytes(entries)  # slots may share one tile body: count it once
        if file_size - HEADER_INDEX_SIZE < used:
            raise CorruptBundle(
                f"the index claims {used:,} bytes of tiles, more than the "
                f"{file_size - HEADER_INDEX_SIZE:,} the file holds after its index"
            )
    return BundleIndex(
        sizes=sizes,
        tiles=tiles,
        tile_bytes=tile_bytes,
        file_bytes=file_size,
        dead_bytes=file_size - HEADER_INDEX_SIZE - used,
        modified=modified,
        stamp=stamp,
    )


def _unique_bytes(entries: npt.NDArray[np.uint64]) -> int:
    live = np.unique(entries[entries >> _SHIFT > 0])
    return int((live >> _SHIFT).sum()) + SIZE_PREFIX * int(live.size)


def read_v2_index(src: ByteSource, key: BundleKey, scratch: Scratch | None = None) -> BundleIndex:
    """Read one V2 bundle's header and index (one read of 131,136 bytes) and decode it.

    Args:
        src: the bundle's bytes.
        key: the bundle, to name its tiles in messages.
        scratch: arrays to decode into (see :func:`summarize_index`).

    Raises:
        CorruptBundle: the bundle cannot be decoded.
        BundleChanging: it changed while it was read.
        OSError: it cannot be read.
    """
    scratch = scratch or Scratch()
    view, size = memoryview(scratch.buffer), src.size
    src.advise_random()  # one read of the index, never the tiles behind it
    got = src.readinto(0, view if size >= HEADER_INDEX_SIZE else view[:size])
    src.check_unchanged()
    buf = view if got == HEADER_INDEX_SIZE else view[:got]
    return summarize_index(buf, size, key.row, key.col, scratch, src.modified, src.version.stamp)


def v2_tiles(src: ByteSource, first_row: int = 0, first_col: int = 0) -> Iterator[StoredTile]:
    """Every stored tile of a V2 bundle, in file order, each checked against its size prefix.

    Args:
        src: the bundle's bytes.
        first_row: row of the bundle's top-left tile.
        first_col: column of the bundle's top-left tile.

    Raises:
        CorruptBundle: bad header, or a file shorter than its index.
        OSError: the bundle cannot be read.
    """
    file_size = src.size
    buf = src.read(0, HEADER_INDEX_SIZE)
    check_header(buf)
    if file_size < HEADER_INDEX_SIZE:
        raise CorruptBundle(f"truncated: file is {file_size:,} bytes, shorter than its index")
    entries = index_entries(buf).ravel()
    sizes = (entries >> _SHIFT).astype(np.int64)
    offsets = (entries & _MASK).astype(np.int64)
    live = np.flatnonzero(sizes)
    for slot in live[np.argsort(offsets[live], kind="stable")].tolist():
        offset, size = int(offsets[slot]), int(sizes[slot])
        r, c = divmod(slot, BUNDLE_SIZE)
        row, col = first_row + r, first_col + c
        if offset < FIRST_TILE_OFFSET:
            yield StoredTile(row, col, b"", f"offset {offset} lies inside the header and index")
        elif offset + size > file_size:
            yield StoredTile.past_end(row, col, offset, size, file_size)
        else:
            chunk = src.read(offset - SIZE_PREFIX, size + SIZE_PREFIX)
            prefix = int.from_bytes(chunk[:SIZE_PREFIX], "little")
            damage = (
                ""
                if prefix == size
                else f"size prefix {prefix:,} disagrees with the index's {size:,}"
            )
            yield StoredTile(row, col, chunk[SIZE_PREFIX:], damage)


def v2_tile_index(src: ByteSource, key: BundleKey) -> TileIndex:
    """Read and decode one V2 bundle's index into arrays of its own: each tile's size and the
    offset of its bytes; -1 where an offset points inside the header and index.

    Raises:
        CorruptBundle: the bundle cannot be decoded.
        BundleChanging: it changed while it was read.
        OSError: it cannot be read.
    """
    scratch = Scratch()
    sizes = read_v2_index(src, key, scratch).sizes
    offsets = (index_entries(scratch.buffer) & _MASK).astype(np.int64)
    offsets[(offsets < FIRST_TILE_OFFSET) & (sizes > 0)] = -1
    return TileIndex(sizes, offsets)


class CompactV2:
    """The Compact V2 codec of one reader, with its decoding arrays."""

    #: A bundle is one file.
    beside = False
    #: The header and index, read first: what a layout may read ahead.
    leading_bytes = HEADER_INDEX_SIZE

    def __init__(self) -> None:
        self.scratch = Scratch()

    def read_index(self, open_source: Opener, bundle: BundleFile) -> BundleIndex:
        """Read and decode one bundle's header and index (see :func:`read_v2_index`).

        The returned sizes are valid until the next call in the same thread (the codec reuses
        its arrays, one set per thread).
        """
        with open_source(bundle.path) as src:
            return read_v2_index(src, bundle.key, self.scratch)

    def read_tiles(self, open_source: Opener, bundle: BundleFile) -> Iterator[StoredTile]:
        """The bundle's tiles in file order (see :func:`v2_tiles`)."""
        with open_source(bundle.path) as src:
            yield from v2_tiles(src, bundle.key.row, bundle.key.col)

    def tile_index(self, open_source: Opener, bundle: BundleFile) -> TileIndex:
        """The bundle's index in arrays of its own (see :func:`v2_tile_index`)."""
        with open_source(bundle.path) as src:
            return v2_tile_index(src, bundle.key)
