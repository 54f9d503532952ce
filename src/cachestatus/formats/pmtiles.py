"""PMTiles v3: a single file of tiles addressed by Hilbert tile IDs; only its directories are read.

Header (127 bytes, little-endian): ``PMTiles`` magic and version 3 at 0-7; u64 offsets and lengths
of the root directory (8, 16), metadata (24, 32), leaf directories (40, 48) and tile data (56,
64); counts (72-95); ``internal_compression`` at 97; ``min_zoom``/``max_zoom`` at 100/101; the
bounds in 1e-7 degrees as i32 at 102, 106, 110, 114. A directory, once decompressed, is a varint
count then four varint columns: tile ID deltas, run lengths, lengths, offsets (0 after the first
entry: just after the previous one; else offset + 1). An entry with run length 0 points to a
leaf directory; others are ``run length`` consecutive tile IDs sharing one body of ``length``
bytes. Tile bodies are never read.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from ..errors import CorruptBundle, InvalidCacheConfig
from ..models import BUNDLE_SIZE, Extent
from .base import BundleFile, SingleFileCache, StoredTile, open_regular, read_exactly
from .listed import ListedTiles
from .mbtiles import web_mercator, web_mercator_scheme

HEADER_SIZE = 127
MAGIC = b"PMTiles"
VERSION = 7  # u8, after the 7-byte magic
ROOT_DIRECTORY = 8  # u64 offset, u64 length
LEAF_DIRECTORIES = 40  # u64 offset (of all leaf directories), u64 length
TILE_DATA = 56  # u64 offset, u64 length of the tile data section
INTERNAL_COMPRESSION = 97  # u8: 1 none, 2 gzip
TILE_TYPE = 99  # u8: 0 unknown, 1 MVT, 2 PNG, 3 JPEG, 4 WebP, 5 AVIF
ZOOMS = 100  # u8 min_zoom, u8 max_zoom
BOUNDS = 102  # i32 min lon, min lat, max lon, max lat, in 1e-7 degrees
COMPRESSION_NONE, COMPRESSION_GZIP = 1, 2
TILE_FORMATS = {1: "PBF", 2: "PNG", 3: "JPEG", 4: "WEBP", 5: "AVIF"}
#: Offsets and lengths from 2**63 up lie past any file (and past numpy's int64).
LARGEST = 2**63
MAX_ZOOM = 31


@dataclass(frozen=True)
class Header:
    """The fields of a PMTiles v3 header that a status needs."""

    root_offset: int
    root_length: int
    leaf_offset: int
    internal_compression: int
    min_zoom: int
    max_zoom: int
    bounds: tuple[float, float, float, float]
    tile_data_offset: int = 0
    tile_data_length: int = 0
    #: The tiles' format (``tile_type``) as a tile format name: ``PBF``, ``PNG``...; ``any``
    #: where the header says unknown.
    tile_format: str = "any"


def decode_header(buf: bytes, source: str = "PMTiles") -> Header:
    """Read a PMTiles v3 header.

    Raises:
        InvalidCacheConfig: no magic, another version, or a short header.
    """
    if len(buf) < HEADER_SIZE or not buf.startswith(MAGIC):
        raise InvalidCacheConfig(f"{source}: not a PMTiles file (no 'PMTiles' magic number)")
    (version,) = struct.unpack_from("<B", buf, VERSION)
    if version != 3:
        raise InvalidCacheConfig(f"{source}: PMTiles version {version}; this version reads v3")
    root_offset, root_length = struct.unpack_from("<QQ", buf, ROOT_DIRECTORY)
    (leaf_offset,) = struct.unpack_from("<Q", buf, LEAF_DIRECTORIES)
    (compression,) = struct.unpack_from("<B", buf, INTERNAL_COMPRESSION)
    min_zoom, max_zoom = struct.unpack_from("<BB", buf, ZOOMS)
    bounds = tuple(v / 1e7 for v in struct.unpack_from("<iiii", buf, BOUNDS))
    data_offset, data_length = struct.unpack_from("<QQ", buf, TILE_DATA)
    (tile_type,) = struct.unpack_from("<B", buf, TILE_TYPE)
    if max(root_offset, root_length, leaf_offset, data_offset, data_length) >= LARGEST:
        raise InvalidCacheConfig(f"{source}: a header offset or length lies past any file")
    return Header(
        root_offset,
        root_length,
        leaf_offset,
        compression,
        min_zoom,
        max_zoom,
        bounds,
        data_offset,
        data_length,
        TILE_FORMATS.get(tile_type, "any"),
    )


def _varints(data: bytes, count: int, pos: int) -> tuple[list[int], int]:
    out = []
    for _ in range(count):
        value = shift = 0
        while True:
            if pos >= len(data):
                raise CorruptBundle("directory ends inside a varint")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift > 63:
                raise CorruptBundle("varint longer than 64 bits")
        out.append(value)
    return out, pos


def decode_directory(data: bytes) -> tuple[npt.NDArray[np.int64], ...]:
    """The entries of a decompressed directory: tile IDs, run lengths, lengths, offsets.

    Raises:
        CorruptBundle: truncated or inconsistent varints.
    """
    (count,), pos = _varints(data, 1, 0)
    if count > len(data):
        raise CorruptBundle(f"directory claims {count:,} entries in {len(data):,} bytes")
    deltas, pos = _varints(data, count, pos)
    runs, pos = _varints(data, count, pos)
    lengths, pos = _varints(data, count, pos)
    raw_offsets, pos = _varints(data, count, pos)
    if count and max(max(deltas), max(runs), max(lengths), max(raw_offsets)) >= LARGEST:
        raise CorruptBundle("an entry's offset, length or run lies past any file")
    ids = np.cumsum(np.array(deltas, dtype=np.uint64)).astype(np.int64)
    offsets = np.zeros(count, dtype=np.int64)
    for i, raw in enumerate(raw_offsets):
        offsets[i] = offsets[i - 1] + lengths[i - 1] if raw == 0 and i > 0 else raw - 1
    return (ids, np.array(runs, dtype=np.int64), np.array(lengths, dtype=np.int64), offsets)


def tile_zxy(tile_ids: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], ...]:
    """Zoom, column and row (downward) of Hilbert tile IDs, vectorised."""
    ids = tile_ids.astype(np.int64)
    z = np.zeros_like(ids)
    start = np.zeros_like(ids)
    for zoom in range(MAX_ZOOM + 1):
        first = (4**zoom - 1) // 3  # tiles of all lower zooms
        here = ids >= first
        z[here], start[here] = zoom, first
    d = ids - start
    n = np.left_shift(1, z)
    x = np.zeros_like(ids)
    y = np.zeros_like(ids)
    s = np.ones_like(ids)
    while (s < n).any():
        active = s < n
        rx = (d // 2) & 1
        ry = (d ^ rx) & 1
        # Rotate the quadrant (only where this step applies).
        flip = active & (ry == 0) & (rx == 1)
        x = np.where(flip, s - 1 - x, x)
        y = np.where(flip, s - 1 - y, y)
        swap = active & (ry == 0)
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        x = np.where(active, x + s * rx, x)
        y = np.where(active, y + s * ry, y)
        d = np.where(active, d // 4, d)
        s = np.where(active, s * 2, s)
    return z, x, y


class PMTilesCache(ListedTiles, SingleFileCache):
    """A ``.pmtiles`` archive: its directories give every tile and its size."""

    name = "pmtiles"
    description = "PMTiles v3 archive (Hilbert tile IDs; directories only, never tile bodies)"
    suffix = ".pmtiles"
    sizes = True  # the directories give every size: no extra read

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        with open(path, "rb") as f:
            self._header = decode_header(f.read(HEADER_SIZE), str(path))
        h = self._header
        levels = list(range(h.min_zoom, h.max_zoom + 1)) or [0]
        self._scheme = web_mercator_scheme(levels, tile_format=h.tile_format)
        west, south, east, north = h.bounds
        (xmin, ymin), (xmax, ymax) = web_mercator(west, south), web_mercator(east, north)
        extent = Extent(xmin, ymin, xmax, ymax)
        self._extent = None if extent.is_empty else extent
        self._tiles: npt.NDArray[np.int64] | None = None

    def _directory(self, f: BinaryIO, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > os.fstat(f.fileno()).st_size:
            raise InvalidCacheConfig(f"{self.path}: a directory runs past the end of the file")
        f.seek(offset)
        data = f.read(length)
        compression = self._header.internal_compression
        if compression == COMPRESSION_GZIP:
            try:
                return gzip.decompress(data)
            except (OSError, EOFError, zlib.error) as exc:
                raise InvalidCacheConfig(
                    f"{self.path}: a directory does not decompress ({exc})"
                ) from None
        if compression != COMPRESSION_NONE:
            raise InvalidCacheConfig(
                f"{self.path}: directories compressed with method "
                f"{compression}; this version reads none or gzip"
            )
        return data

    def _all_tiles(self) -> npt.NDArray[np.int64]:
        """(zoom, row, col, size, offset in the tile data) of every tile, from the root and
        leaf directories."""
        if self._tiles is not None:
            return self._tiles
        ids_parts, size_parts, offset_parts = [], [], []
        with open(self.path, "rb") as f:
            todo = [(self._header.root_offset, self._header.root_length)]
            seen: set[tuple[int, int]] = set()
            while todo:
                offset, length = todo.pop()
                if (offset, length) in seen:  # a leaf pointing back up would never end
                    raise InvalidCacheConfig(f"{self.path}: its leaf directories form a loop")
                seen.add((offset, length))
                try:
                    ids, runs, lengths, offsets = decode_directory(
                        self._directory(f, offset, length)
                    )
                except CorruptBundle as exc:
                    raise InvalidCacheConfig(f"{self.path}: a broken directory ({exc})") from None
                leaves = runs == 0
                todo.extend(
                    zip(
                        (self._header.leaf_offset + offsets[leaves]).tolist(),
                        lengths[leaves].tolist(),
                        strict=True,
                    )
                )
                tiles = ~leaves
                # A run of n tiles shares one body: expand it into n tile IDs.
                counts = runs[tiles]
                first = np.repeat(ids[tiles], counts)
                step = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
                ids_parts.append(first + step)
                size_parts.append(np.repeat(lengths[tiles], counts))
                offset_parts.append(np.repeat(offsets[tiles], counts))
        all_ids = np.concatenate([np.zeros(0, np.int64), *ids_parts])
        z, x, y = tile_zxy(all_ids)
        sizes = np.concatenate([np.zeros(0, np.int64), *size_parts])
        offsets = np.concatenate([np.zeros(0, np.int64), *offset_parts])
        self._tiles = np.column_stack([z, y, x, sizes, offsets])
        return self._tiles

    def _level_tiles(self, level: int) -> npt.NDArray[np.int64]:
        tiles = self._all_tiles()
        found: npt.NDArray[np.int64] = tiles[tiles[:, 0] == level][:, 1:4]
        return found

    def read_tiles(self, bundle: BundleFile) -> Iterator[StoredTile]:
        """The bundle's tile bodies, in file order; a body outside the tile data section is
        damage. Tiles of one run share one body."""
        key, h = bundle.key, self._header
        tiles = self._all_tiles()
        mine = tiles[
            (tiles[:, 0] == key.level)
            & (tiles[:, 1] >= key.row)
            & (tiles[:, 1] < key.row + BUNDLE_SIZE)
            & (tiles[:, 2] >= key.col)
            & (tiles[:, 2] < key.col + BUNDLE_SIZE)
        ]
        fd, st = open_regular(str(self.path))
        try:
            for _, row, col, size, offset in mine[np.argsort(mine[:, 4], kind="stable")].tolist():
                if offset < 0 or offset + size > h.tile_data_length:
                    yield StoredTile.past_end(row, col, offset, size, h.tile_data_length)
                    continue
                data = read_exactly(fd, h.tile_data_offset + offset, size, st.st_size)
                damage = "" if len(data) == size else "the file ends inside the tile"
                yield StoredTile(row, col, data, damage)
        finally:
            os.close(fd)
