"""ArcGIS Compact Cache V2 (``esriMapCacheStorageModeCompactV2``): decoding and the folder reader.

A V2 bundle is a 64-byte little-endian header, then 16,384 eight-byte index entries in row-major
order (``64 + 8 * (128 * r + c)``): offset in the low 40 bits, size in the high 24 bits; size 0
means no tile whatever the offset (ArcGIS writes empty slots as offset 4, size 0). Each tile's size
is repeated as a u32 at ``offset - 4``. Only the header words GDAL checks are validated; ArcGIS
writes the others differently from the published white paper.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..errors import CorruptBundle
from ..models import BUNDLE_SIZE
from .arcgis_folder import ArcGISFolderCache
from .base import BundleFile, BundleIndex

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

#: Header words that GDAL's ESRIC driver checks: (format, byte offset, expected value, name).
HEADER_CHECKS = (
    ("<I", 0, 3, "version"),
    ("<I", 12, 5, "offset size"),
    ("<Q", 32, 40, "user header offset"),
    ("<I", 60, INDEX_SIZE, "index size"),
)


def check_header(buf: bytes) -> None:
    """Validate the header words GDAL checks.

    Raises:
        CorruptBundle: the buffer is shorter than header+index or a checked word is wrong.
    """
    if len(buf) < HEADER_INDEX_SIZE:
        raise CorruptBundle(
            f"truncated: {len(buf):,} bytes, a Compact V2 bundle holds at least "
            f"{HEADER_INDEX_SIZE:,} (header and index)"
        )
    for fmt, offset, expected, name in HEADER_CHECKS:
        (value,) = struct.unpack_from(fmt, buf, offset)
        if value != expected:
            raise CorruptBundle(
                f"bad header: {name} (byte {offset}) is {value}, expected {expected}"
            )


def decode_index(buf: bytes) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Offsets and sizes of the 128 x 128 slots, each a ``uint64`` array of shape (128, 128).

    Sizes of empty slots are 0; their offsets are meaningless.
    """
    entries = np.frombuffer(buf, dtype="<u8", count=TILES_PER_BUNDLE, offset=HEADER_SIZE)
    entries = entries.reshape(BUNDLE_SIZE, BUNDLE_SIZE)
    return entries & np.uint64(OFFSET_MASK), entries >> np.uint64(SIZE_SHIFT)


def summarize_index(buf: bytes, file_size: int, first_row: int = 0, first_col: int = 0) -> BundleIndex:
    """Decode and check a bundle's header and index in one vectorised pass.

    Args:
        buf: at least the first 131,136 bytes of the bundle.
        file_size: the bundle file's size in bytes.
        first_row: row of the bundle's top-left tile, to name tiles in messages.
        first_col: column of the bundle's top-left tile.

    Returns:
        Sizes, tile bytes and dead bytes (``modified`` is left ``None``).

    Raises:
        CorruptBundle: header, index or file size are inconsistent; the reason names the tile.
    """
    check_header(buf)
    if file_size < HEADER_INDEX_SIZE:
        raise CorruptBundle(f"truncated: file is {file_size:,} bytes, shorter than its index")
    offsets, sizes = decode_index(buf)
    present = sizes > 0
    tiles = int(np.count_nonzero(present))
    tile_bytes = int(sizes.sum())
    if tiles:
        live_offsets = np.where(present, offsets, np.uint64(FIRST_TILE_OFFSET))
        low = int(np.argmin(live_offsets))
        if int(live_offsets.flat[low]) < FIRST_TILE_OFFSET:
            r, c = divmod(low, BUNDLE_SIZE)
            raise CorruptBundle(
                f"tile R{first_row + r}/C{first_col + c}: offset {int(offsets.flat[low])} points "
                f"inside the header or index (tiles start at byte {FIRST_TILE_OFFSET})"
            )
        ends = np.where(present, offsets + sizes, np.uint64(0))
        high = int(np.argmax(ends))
        if int(ends.flat[high]) > file_size:
            r, c = divmod(high, BUNDLE_SIZE)
            raise CorruptBundle(
                f"tile R{first_row + r}/C{first_col + c}: offset {int(offsets.flat[high])} + size "
                f"{int(sizes.flat[high])} runs past the end of the file ({file_size:,} bytes)"
            )
    used = tile_bytes + SIZE_PREFIX * tiles
    if file_size - HEADER_INDEX_SIZE < used:
        used = _unique_bytes(offsets, sizes)  # slots may share one tile body: count it once
        if file_size - HEADER_INDEX_SIZE < used:
            raise CorruptBundle(
                f"the index claims {used:,} bytes of tiles, more than the "
                f"{file_size - HEADER_INDEX_SIZE:,} the file holds after its index"
            )
    return BundleIndex(
        sizes=sizes.astype(np.uint32),
        tile_bytes=tile_bytes,
        file_bytes=file_size,
        dead_bytes=file_size - HEADER_INDEX_SIZE - used,
        modified=None,
    )


def _unique_bytes(offsets: npt.NDArray[np.uint64], sizes: npt.NDArray[np.uint64]) -> int:
    present = sizes > 0
    _, first = np.unique(offsets[present], return_index=True)
    live_sizes = sizes[present][first]
    return int(live_sizes.sum()) + SIZE_PREFIX * int(live_sizes.size)


def read_bundle_file(path: str, first_row: int = 0, first_col: int = 0) -> BundleIndex:
    """Read one V2 bundle's header and index (one read of 131,136 bytes) and decode it."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        buf = os.read(fd, HEADER_INDEX_SIZE)
        while 0 < len(buf) < min(HEADER_INDEX_SIZE, st.st_size):  # short reads (network shares)
            more = os.read(fd, HEADER_INDEX_SIZE - len(buf))
            if not more:
                break
            buf += more
    finally:
        os.close(fd)
    index = summarize_index(buf, st.st_size, first_row, first_col)
    return BundleIndex(index.sizes, index.tile_bytes, index.file_bytes, index.dead_bytes,
                       st.st_mtime)


class CompactV2Cache(ArcGISFolderCache):
    """An ArcGIS Compact V2 folder cache: ``conf.xml``, ``conf.cdi``, ``_alllayers/Lnn/*.bundle``."""

    name = "compact-v2"
    description = "ArcGIS Compact Cache V2 folder (conf.xml, _alllayers/Lnn/R....C....bundle)"
    storage_formats = ("esriMapCacheStorageModeCompactV2",)

    @classmethod
    def detect(cls, path: Path) -> bool:
        """True for a folder cache whose ``conf.xml`` declares Compact V2 storage."""
        return cls._detect_storage(path)

    def read_bundle(self, bundle: BundleFile) -> BundleIndex:
        """Read and decode one bundle's header and index."""
        return read_bundle_file(bundle.path, bundle.key.row, bundle.key.col)
