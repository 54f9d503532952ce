"""PMTiles v3: a single file of tiles addressed by Hilbert tile IDs; only its directories are read.

Header (127 bytes, little-endian): ``PMTiles`` magic and version 3 at 0-7; u64 offsets and lengths
of the root directory (8, 16), metadata (24, 32), leaf directories (40, 48) and tile data (56,
64); counts of addressed tiles, tile entries and tile contents (72, 80, 88);
``internal_compression`` at 97; ``min_zoom``/``max_zoom`` at 100/101; the bounds in 1e-7 degrees
as i32 at 102, 106, 110, 114. A directory, once decompressed, is a varint count then four varint
columns: tile ID deltas, run lengths, lengths, offsets (0 after the first entry: just after the
previous one; else offset + 1). An entry with run length 0 points to a leaf directory; others are
``run length`` consecutive tile IDs sharing one body of ``length`` bytes. Directories and the
JSON metadata are compressed with ``internal_compression``, tile bodies with
``tile_compression`` (98): none, gzip, brotli or zstd (1-4), all read. Tile bodies are read only
by ``verify`` and ``--blank``, and decompressed for them, and by single tile reads (``serve``),
which look up the root directory and the leaves on the way to their tiles, never every
directory.

What the archive declares: the header's bounds (WGS 84 degrees, put into Web Mercator, the
grid's CRS) are the full extent; bounds that are a point or a line make the tiles holding it
expected, all-zero bounds are bounds never set (the whole grid is expected). The header's
``min_zoom``..``max_zoom`` are the levels: each is expected, built or not; tiles listed at
other zooms are not scanned (a warning names them). The metadata's ``tileSize`` (TileJSON)
gives the tile size in pixels, 256 when it declares none: a 512-pixel archive's levels have
half the resolution and scale of 256-pixel ones.

Runs stay runs. On the Hilbert curve, the 4**7 consecutive tile IDs of a zoom that start at a
multiple of 4**7 (counted from the zoom's first ID) fill one aligned 128 x 128 square: one
bundle. So a run is kept as a range of IDs per zoom, a bundle is a block of 4**7 IDs, and a
bundle's tiles are expanded only when that bundle is read (at most 16,384 of them). Memory grows
with the directories' entries, time with the bundles: a 174-byte file whose one entry covers
2**40 tiles costs what its bundles cost.

Limits (what a real archive can need, refused beyond), the same for every compression: a
directory decompresses to at most :data:`DIRECTORY_CAP` bytes, and to at most 40 bytes an entry
when the header counts its tile entries; all directories together to at most
:data:`DIRECTORIES_CAP`; leaves nest at most :data:`MAX_DEPTH` deep; the metadata to at most
:data:`~.arcgis_conf.CONFIG_CAP` bytes of JSON nested at most 64 deep (else the archive is
refused); a tile body to at most :data:`TILE_CAP` (else that tile is damaged). A root directory
over a limit or broken refuses the archive (:class:`InvalidCacheConfig`); a broken leaf makes
the bundle of its first tile ``CORRUPT`` and the scan goes on.
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import grid
from ..errors import BundleChanging, CorruptBundle, InvalidCacheConfig
from ..grid import web_mercator, web_mercator_scheme
from ..models import BUNDLE_SIZE, TOO_MANY_BUNDLES, BundleKey, Extent, Problem, Tile
from .arcgis_conf import CONFIG_CAP
from .base import (
    BundleFile,
    BundleIndex,
    FileHead,
    LevelListing,
    Run,
    StoredTile,
    run_here,
)
from .bytesource import ByteSource, Version
from .listed import NoBundles, VirtualListing
from .remote_file import RemoteFile
from .tile_index import IndexCache
from .tilejson import load_json, tile_size

HEADER_SIZE = 127
MAGIC = b"PMTiles"
VERSION = 7  # u8, after the 7-byte magic
ROOT_DIRECTORY = 8  # u64 offset, u64 length
METADATA = 24  # u64 offset, u64 length
LEAF_DIRECTORIES = 40  # u64 offset (of all leaf directories), u64 length
TILE_DATA = 56  # u64 offset, u64 length of the tile data section
TILE_ENTRIES = 80  # u64 number of tile entries in all directories (0: unknown)
INTERNAL_COMPRESSION = 97  # u8: 0 unknown, 1 none, 2 gzip, 3 brotli, 4 zstd
TILE_COMPRESSION = 98  # u8: the same values, for tile bodies
TILE_TYPE = 99  # u8: 0 unknown, 1 MVT, 2 PNG, 3 JPEG, 4 WebP, 5 AVIF
ZOOMS = 100  # u8 min_zoom, u8 max_zoom
BOUNDS = 102  # i32 min lon, min lat, max lon, max lat, in 1e-7 degrees
COMPRESSION_UNKNOWN, COMPRESSION_NONE, COMPRESSION_GZIP, COMPRESSION_BROTLI, COMPRESSION_ZSTD = (
    0,
    1,
    2,
    3,
    4,
)
COMPRESSION_NAMES = {1: "none", 2: "gzip", 3: "brotli", 4: "zstd"}
TILE_FORMATS = {1: "PBF", 2: "PNG", 3: "JPEG", 4: "WEBP", 5: "AVIF"}
#: Offsets and lengths from 2**63 up lie past any file (and past numpy's int64).
LARGEST = 2**63
#: The deepest zoom tile IDs can address in 64 bits.
#: Virtual bundles the runs of one zoom may cover beyond one per directory entry (every bundle of
#: zoom 15). Beyond, the zoom is a problem, not listed: each listed bundle is a row of the status,
#: and the time of a scan must grow with what the archive holds, not with what its runs claim.
MAX_RUN_BUNDLES = 2**16
MAX_ZOOM = grid.MAX_ZOOM
#: Tile IDs of all zooms 0-31: no tile ID (nor the end of a run) lies beyond.
LAST_TILE_ID = (4 ** (MAX_ZOOM + 1) - 1) // 3
#: Zooms below this are smaller than one bundle (2**7 = 128 tiles a side).
BUNDLE_ZOOM = 7
#: Tile IDs in one bundle-sized block of the Hilbert curve.
BLOCK = BUNDLE_SIZE * BUNDLE_SIZE
#: Most bytes one directory may decompress to (a root directory is at most 16 KiB compressed;
#: a leaf of a planet-wide archive holds a few hundred thousand entries, a few MiB).
DIRECTORY_CAP = 64 * 2**20
#: Most bytes all directories together may decompress to.
DIRECTORIES_CAP = 1024 * 2**20
#: Most bytes one entry takes: four varints of at most 10 bytes.
ENTRY_BYTES = 40
#: Root, leaves, leaves of leaves...: no writer nests deeper (readers stop at 4 lookups).
MAX_DEPTH = 4
#: Most bytes one tile body may decompress to (a 4096 x 4096 RGBA image is 64 MiB raw, but
#: tiles are PNG, JPEG, WebP or vector tiles: a few MiB at most).
TILE_CAP = 32 * 2**20
#: Largest window a zstd frame may ask for (zstd's own default limit is 128 MiB).
ZSTD_WINDOW = 2**26
#: Bytes of a remote archive's directories asked for at once. Leaf directories lie side by side
#: and are read near one another (from the last to the first under each directory), so aligned
#: blocks, the last few kept, cost a request per block, not one per leaf.
DIRECTORY_BLOCK = 4 * 2**20
#: Blocks kept while the directories are read.
DIRECTORY_BLOCKS_KEPT = 4
#: Decoded directories kept for tile reads (the root and the leaves tiles were looked up in; a
#: leaf of a planet-wide archive decodes to a few MiB).
KEPT_DIRECTORIES = 16


def first_tile_id(zoom: int) -> int:
    """The tile ID of zoom ``zoom``'s first tile: the number of tiles of all lower zooms."""
    return int((4**zoom - 1) // 3)


#: The first tile ID of each zoom, up to zoom 32 (the first ID past the last zoom).
_FIRST_TILE_IDS = np.array([first_tile_id(z) for z in range(MAX_ZOOM + 2)], dtype=np.int64)


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
    #: Tile entries in all directories, 0 when the writer did not count them.
    tile_entries: int = 0
    #: Offset and length of the JSON metadata (compressed as the directories are).
    metadata_offset: int = 0
    metadata_length: int = 0
    #: How tile bodies are compressed: 1 none, 2 gzip, 3 brotli, 4 zstd (0: unknown, read as
    #: stored).
    tile_compression: int = COMPRESSION_NONE


def decode_header(buf: bytes, source: str = "PMTiles", file_size: int | None = None) -> Header:
    """Read and check a PMTiles v3 header.

    Args:
        buf: the file's first bytes.
        source: the path to name in error messages.
        file_size: the file's size, to check that the root directory lies inside it.

    Raises:
        InvalidCacheConfig: no magic, another version, a short header, or a value no archive
            can hold (a zoom above 31, ``min_zoom`` above ``max_zoom``, bounds outside
            longitudes -180..180 and latitudes -90..90 or crossed, a root directory past the
            end of the file, a directory compression other than none, gzip, brotli, zstd).
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
    raw_bounds = struct.unpack_from("<iiii", buf, BOUNDS)
    data_offset, data_length = struct.unpack_from("<QQ", buf, TILE_DATA)
    metadata_offset, metadata_length = struct.unpack_from("<QQ", buf, METADATA)
    (tile_compression,) = struct.unpack_from("<B", buf, TILE_COMPRESSION)
    (tile_entries,) = struct.unpack_from("<Q", buf, TILE_ENTRIES)
    (tile_type,) = struct.unpack_from("<B", buf, TILE_TYPE)
    if max(root_offset, root_length, leaf_offset, data_offset, data_length) >= LARGEST:
        raise InvalidCacheConfig(f"{source}: a header offset or length lies past any file")
    if file_size is not None and root_offset + root_length > file_size:
        raise InvalidCacheConfig(
            f"{source}: the header's root directory (offset {root_offset:,}, length "
            f"{root_length:,}) runs past the end of the file ({file_size:,} bytes); "
            "the file is truncated"
        )
    if max_zoom > MAX_ZOOM or min_zoom > max_zoom:
        raise InvalidCacheConfig(
            f"{source}: header min_zoom {min_zoom}, max_zoom {max_zoom}; PMTiles zooms are "
            f"0-{MAX_ZOOM} with min_zoom <= max_zoom"
        )
    if compression not in COMPRESSION_NAMES:
        raise InvalidCacheConfig(
            f"{source}: directories compressed with method {compression}; PMTiles v3 "
            "compresses them with none (1), gzip (2), brotli (3) or zstd (4)"
        )
    bounds = _check_bounds(raw_bounds, source)
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
        tile_entries if tile_entries < LARGEST else 0,
        metadata_offset if metadata_offset < LARGEST else 0,
        metadata_length if metadata_length < LARGEST else 0,
        tile_compression if tile_compression in COMPRESSION_NAMES else COMPRESSION_UNKNOWN,
    )


def _check_bounds(raw: tuple[int, ...], source: str) -> tuple[float, float, float, float]:
    """The header's bounds in degrees; refused when off the globe or crossed."""
    west, south, east, north = (v / 1e7 for v in raw)
    names = ("min_lon_e7", "min_lat_e7", "max_lon_e7", "max_lat_e7")
    for name, value, limit in zip(
        names, (west, south, east, north), (180, 90, 180, 90), strict=True
    ):
        if abs(value) > limit:
            raise InvalidCacheConfig(
                f"{source}: header {name} is {value * 1e7:.0f} ({value} degrees), outside "
                f"-{limit}..{limit} degrees"
            )
    if west > east or south > north:
        raise InvalidCacheConfig(
            f"{source}: header bounds west {west}, south {south}, east {east}, north {north}: "
            "a minimum above its maximum"
        )
    return west, south, east, north


def inflate(data: bytes, compression: int, cap: int, what: str = "the directory") -> bytes:
    """Bytes compressed with ``compression`` (1 none, 2 gzip, 3 brotli, 4 zstd; others are
    read as stored), decompressed to at most ``cap`` bytes: each codec stops once past the cap,
    so a bomb costs at most ``cap`` bytes of memory.

    Args:
        data: the compressed bytes.
        compression: the header's compression value.
        cap: the most bytes the data may need decompressed.
        what: what the data is, for messages (``the directory``, ``the metadata``...).

    Raises:
        CorruptBundle: the data does not decompress, is truncated, or would decompress past
            ``cap``.
    """
    if compression == COMPRESSION_GZIP:
        out, finished = _gunzip(data, cap, what)
    elif compression == COMPRESSION_BROTLI:
        out, finished = _unbrotli(data, cap, what)
    elif compression == COMPRESSION_ZSTD:
        out, finished = _unzstd(data, cap, what)
    else:
        out, finished = data, True
    if len(out) > cap:
        raise CorruptBundle(
            f"{what} decompresses to more than {cap:,} bytes, more than it can need "
            "(a compression bomb, or a damaged file)"
        )
    if not finished:
        raise CorruptBundle(f"{what}'s compressed data is truncated")
    return out


def _gunzip(data: bytes, cap: int, what: str) -> tuple[bytes, bool]:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip
    try:
        out = inflater.decompress(data, cap + 1)
    except zlib.error as exc:
        raise CorruptBundle(f"{what} does not decompress (gzip: {exc})") from None
    return out, inflater.eof


def _unbrotli(data: bytes, cap: int, what: str) -> tuple[bytes, bool]:
    import brotli  # only archives compressed with brotli need it

    inflater = brotli.Decompressor()
    try:
        # The output stops growing once past the limit (brotli >= 1.2).
        out: bytes = inflater.process(data, output_buffer_limit=cap + 1)
    except brotli.error as exc:
        raise CorruptBundle(f"{what} does not decompress (brotli: {exc})") from None
    return out, bool(inflater.is_finished())


def _unzstd(data: bytes, cap: int, what: str) -> tuple[bytes, bool]:
    import zstandard  # only archives compressed with zstd need it

    context = zstandard.ZstdDecompressor(max_window_size=ZSTD_WINDOW)
    try:
        parts: list[bytes] = []
        got = 0
        with context.stream_reader(data) as stream:
            while got <= cap:
                part = stream.read(cap + 1 - got)  # never more than asked for
                if not part:
                    break
                parts.append(part)
                got += len(part)
        out = b"".join(parts)
        if len(out) > cap:
            return out, True
        # A truncated frame reads as fewer bytes, not as an error: check that the frame ends
        # (the output is known to be within the cap now).
        check = context.decompressobj()
        check.decompress(data)
        return out, bool(check.eof)
    except zstandard.ZstdError as exc:
        raise CorruptBundle(f"{what} does not decompress (zstd: {exc})") from None


def decode_varints(data: bytes, count: int, pos: int = 0) -> tuple[npt.NDArray[np.int64], int]:
    """``count`` unsigned LEB128 varints from byte ``pos`` of ``data``, and the position after.

    Raises:
        CorruptBundle: the data ends inside them, or one is 2**63 or more.
    """
    raw = np.frombuffer(data, dtype=np.uint8, offset=min(pos, len(data)))
    ends = np.flatnonzero(raw < 0x80)
    if len(ends) < count:
        raise CorruptBundle("directory ends inside a varint")
    ends = ends[:count]
    used = int(ends[-1]) + 1 if count else 0
    raw = raw[:used]
    starts = np.r_[0, ends[:-1] + 1] if count else np.zeros(0, np.int64)
    sizes = ends - starts + 1
    if count and int(sizes.max()) > 9:  # 9 bytes hold 63 bits
        raise CorruptBundle("a varint of 2**63 or more: past any file")
    group = np.repeat(np.arange(count), sizes)
    shift = (np.arange(used) - np.repeat(starts, sizes)) * 7
    parts = (raw & 0x7F).astype(np.uint64) << shift.astype(np.uint64)
    values = np.zeros(count, dtype=np.uint64)
    np.add.at(values, group, parts)
    return values.astype(np.int64), pos + used


def decode_directory(
    data: bytes, max_entries: int | None = None
) -> tuple[npt.NDArray[np.int64], ...]:
    """The entries of a decompressed directory: tile IDs, run lengths, lengths, offsets.

    Args:
        data: the decompressed directory.
        max_entries: most entries a directory of this archive can hold (the header's count of
            tile entries), ``None`` when unknown.

    Raises:
        CorruptBundle: truncated or inconsistent varints, more entries than the archive holds,
            tile IDs that wrap around or a run past the last tile of zoom 31.
    """
    (count,), pos = decode_varints(data, 1, 0)
    count = int(count)
    if count > len(data):
        raise CorruptBundle(f"directory claims {count:,} entries in {len(data):,} bytes")
    if max_entries is not None and count > max_entries:
        raise CorruptBundle(
            f"directory claims {count:,} entries; the header counts {max_entries:,} in all"
        )
    columns, pos = decode_varints(data, 4 * count, pos)
    deltas, runs, lengths, raw_offsets = columns.reshape(4, count)
    wide = np.cumsum(deltas.astype(np.uint64))  # a wrap past 2**64 shows as a decrease
    if count and (np.any(wide[1:] < wide[:-1]) or int(wide[-1]) >= LAST_TILE_ID):
        raise CorruptBundle("tile IDs past the last tile of zoom 31")
    ids = wide.astype(np.int64)
    if np.any(runs > LAST_TILE_ID - ids):
        i = int(np.argmax(runs > LAST_TILE_ID - ids))
        raise CorruptBundle(
            f"a run of {int(runs[i]):,} tiles from tile ID {int(ids[i]):,} runs past the last "
            "tile of zoom 31"
        )
    # Offset 0 after the first entry: right after the previous entry's body.
    explicit = raw_offsets > 0
    if count:
        explicit[0] = True
    segment = np.cumsum(explicit) - 1
    before = np.r_[0, np.cumsum(lengths[:-1])] if count else lengths
    starts = np.flatnonzero(explicit)
    offsets = (raw_offsets[starts] - 1)[segment] + before - before[starts][segment]
    return ids, runs.astype(np.int64), lengths.astype(np.int64), offsets.astype(np.int64)


def tile_zooms(tile_ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The zoom of each Hilbert tile ID (an ID of zoom 32 or beyond: 32)."""
    return np.searchsorted(_FIRST_TILE_IDS, tile_ids, side="right").astype(np.int64) - 1


def tile_zxy(tile_ids: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], ...]:
    """Zoom, column and row (downward) of Hilbert tile IDs, vectorised."""
    ids = tile_ids.astype(np.int64)
    z = tile_zooms(ids)
    x, y = np.zeros_like(ids), np.zeros_like(ids)
    for zoom in np.unique(z).tolist():
        here = z == zoom
        x[here], y[here] = hilbert_xy(zoom, ids[here] - first_tile_id(zoom))
    return z, x, y


#: Positions up to this many are turned into columns and rows one at a time, in Python ints.
FEW_POSITIONS = 16


def hilbert_xy(
    zoom: int, d: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Column and row (downward) of positions ``d`` along the Hilbert curve of one zoom."""
    d = d.astype(np.int64)
    if 0 < d.size <= FEW_POSITIONS:
        # A bundle of a sparse archive holds one or two runs: Python ints, one position at a
        # time, cost microseconds where each of the array steps below costs about as much.
        pairs = [_hilbert_xy_one(zoom, one) for one in d.reshape(-1).tolist()]
        xs, ys = (np.array(a, dtype=np.int64).reshape(d.shape) for a in zip(*pairs, strict=True))
        return xs, ys
    x = np.zeros_like(d)
    y = np.zeros_like(d)
    for bit in range(zoom):
        s = 1 << bit
        rx = (d >> 1) & 1
        ry = (d ^ rx) & 1
        flip = (ry == 0) & (rx == 1)
        x = np.where(flip, s - 1 - x, x)
        y = np.where(flip, s - 1 - y, y)
        swap = ry == 0
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        x += s * rx
        y += s * ry
        d >>= 2
    return x, y


def _hilbert_xy_one(zoom: int, d: int) -> tuple[int, int]:
    """:func:`hilbert_xy` of one position: the same steps on Python ints."""
    x = y = 0
    for bit in range(zoom):
        s = 1 << bit
        rx = (d >> 1) & 1
        ry = (d ^ rx) & 1
        if ry == 0:
            if rx == 1:
                x, y = s - 1 - x, s - 1 - y
            x, y = y, x
        x += s * rx
        y += s * ry
        d >>= 2
    return x, y


def tile_id(zoom: int, x: int, y: int) -> int:
    """The Hilbert tile ID of column ``x``, row ``y`` (downward) of ``zoom``."""
    n = 1 << zoom
    d = 0
    s = n >> 1
    while s > 0:
        rx = 1 if x & s else 0
        ry = 1 if y & s else 0
        d += s * s * ((3 * rx) ^ ry)
        if ry == 0:  # rotate the quadrant, as the curve does
            if rx == 1:
                x, y = s - 1 - x, s - 1 - y
            x, y = y, x
        s >>= 1
    return first_tile_id(zoom) + d


def tile_ids(
    zoom: int, x: npt.NDArray[np.int64], y: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """:func:`tile_id` of columns ``x`` and rows ``y`` of ``zoom``, vectorised."""
    x, y = x.astype(np.int64), y.astype(np.int64)
    d = np.zeros_like(x)
    s = (1 << zoom) >> 1
    while s > 0:
        rx = (x & s) > 0
        ry = (y & s) > 0
        d += s * s * ((3 * rx.astype(np.int64)) ^ ry.astype(np.int64))
        flip = ~ry & rx
        x, y = np.where(flip, s - 1 - x, x), np.where(flip, s - 1 - y, y)
        x, y = np.where(~ry, y, x), np.where(~ry, x, y)
        s >>= 1
    return first_tile_id(zoom) + d


def block_size(zoom: int) -> int:
    """Tile IDs of ``zoom`` in one bundle: 4**7, or the whole zoom below zoom 7."""
    return int(4 ** min(zoom, BUNDLE_ZOOM))


@dataclass
class ZoomRuns:
    """The tiles of one zoom as sorted, disjoint runs of tile IDs ``[start, end)``, each with
    the size and offset (in the tile data) of the one body its tiles share."""

    zoom: int
    start: npt.NDArray[np.int64]
    end: npt.NDArray[np.int64]
    size: npt.NDArray[np.int64]
    offset: npt.NDArray[np.int64]
    #: Bundles whose leaf directory is broken, and why.
    broken: dict[BundleKey, str] = field(default_factory=dict)

    @classmethod
    def clip(cls, zoom: int, runs: Directories) -> ZoomRuns:
        """The parts of the ``runs`` (of any zooms) inside ``zoom``; where runs overlap (a
        damaged archive), the earlier one keeps the tiles."""
        lo, hi = first_tile_id(zoom), first_tile_id(zoom + 1)
        start, end = np.maximum(runs.start, lo), np.minimum(runs.end, hi)
        keep = start < end
        start, end, size, offset = start[keep], end[keep], runs.size[keep], runs.offset[keep]
        order = np.argsort(start, kind="stable")
        start, end, size, offset = start[order], end[order], size[order], offset[order]
        if len(start) > 1:
            reach = np.maximum.accumulate(end)
            start = np.maximum(start, np.r_[start[0], reach[:-1]])
            keep = start < end
            start, end, size, offset = start[keep], end[keep], size[keep], offset[keep]
        return cls(zoom, start, end, size, offset)

    def _blocks(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Each run's first and last block (bundle-sized span of IDs), counted in the zoom."""
        lo, step = first_tile_id(self.zoom), block_size(self.zoom)
        return (self.start - lo) // step, (self.end - 1 - lo) // step

    def count(self) -> int:
        """How many bundles hold tiles, computed without listing them."""
        if not len(self.start):
            return 0
        first, last = self._blocks()
        shared = int(np.count_nonzero(first[1:] == last[:-1]))
        return int((last - first + 1).sum()) - shared

    def _held_blocks(self, chunk: int) -> Iterator[npt.NDArray[np.int64]]:
        """The blocks holding tiles (counted in the zoom), in the order of the curve, ``chunk``
        at a time."""
        if not len(self.start):
            return
        if self.zoom < BUNDLE_ZOOM:
            yield np.zeros(1, dtype=np.int64)  # the whole zoom is one bundle
            return
        done = -1  # the last block yielded: runs may share their edge blocks
        for first, last in zip(*(a.tolist() for a in self._blocks()), strict=True):
            first = max(first, done + 1)
            for block0 in range(first, last + 1, chunk):
                yield np.arange(block0, min(last + 1, block0 + chunk), dtype=np.int64)
            done = max(done, last)

    def _keys(self, blocks: npt.NDArray[np.int64]) -> list[BundleKey]:
        """The bundles of ``blocks``."""
        if self.zoom < BUNDLE_ZOOM:
            return [BundleKey(self.zoom, 0, 0)]
        x, y = hilbert_xy(self.zoom, blocks * BLOCK)
        rows = (y // BUNDLE_SIZE * BUNDLE_SIZE).tolist()
        cols = (x // BUNDLE_SIZE * BUNDLE_SIZE).tolist()
        return [BundleKey(self.zoom, row, col) for row, col in zip(rows, cols, strict=True)]

    def bundles(self, chunk: int = 65_536) -> Iterator[BundleKey]:
        """The bundles holding tiles, in the order of the curve, ``chunk`` at a time."""
        for blocks in self._held_blocks(chunk):
            yield from self._keys(blocks)

    def parts(self, chunk: int = 65_536) -> Iterator[tuple[BundleKey, ZoomRuns]]:
        """Every bundle with the runs that reading it needs: those whose leaf directory is
        broken first (with why), then those holding tiles, in the order of the curve."""
        nothing = np.zeros(0, dtype=np.int64)
        for key, reason in self.broken.items():
            yield key, ZoomRuns(self.zoom, nothing, nothing, nothing, nothing, {key: reason})
        first, step = first_tile_id(self.zoom), block_size(self.zoom)
        for blocks in self._held_blocks(chunk):
            lo = first + blocks * step
            i0 = np.searchsorted(self.end, lo, side="right").tolist()
            i1 = np.searchsorted(self.start, lo + step, side="left").tolist()
            for key, a, b in zip(self._keys(blocks), i0, i1, strict=True):
                if key not in self.broken:
                    yield (
                        key,
                        ZoomRuns(
                            self.zoom,
                            self.start[a:b],
                            self.end[a:b],
                            self.size[a:b],
                            self.offset[a:b],
                        ),
                    )

    def _span(self, key: BundleKey) -> tuple[int, int, int, int]:
        """The first tile ID of bundle ``key``'s block, the ID after it, and the runs
        ``[i0, i1)`` that share tiles with it."""
        lo = first_tile_id(self.zoom)
        if self.zoom >= BUNDLE_ZOOM:  # blocks count from the zoom's first tile ID
            lo += (tile_id(self.zoom, key.col, key.row) - lo) // BLOCK * BLOCK
        hi = lo + block_size(self.zoom)
        i0 = int(np.searchsorted(self.end, lo, side="right"))
        i1 = int(np.searchsorted(self.start, hi, side="left"))
        return lo, hi, i0, i1

    def sizes(self, key: BundleKey) -> npt.NDArray[np.uint64]:
        """The (128, 128) tile sizes of bundle ``key`` (0 where no tile); a bundle that one run
        fills is filled without listing its tiles."""
        lo, hi, i0, i1 = self._span(key)
        sizes = np.zeros((BUNDLE_SIZE, BUNDLE_SIZE), dtype=np.uint64)
        if i1 - i0 == 1 and self.start[i0] <= lo and self.end[i0] >= hi:
            side = 1 << min(self.zoom, BUNDLE_ZOOM)
            sizes[:side, :side] = self.size[i0]
            return sizes
        tiles = self.tiles(key)
        sizes[tiles[:, 0] - key.row, tiles[:, 1] - key.col] = tiles[:, 2]
        return sizes

    def tiles(self, key: BundleKey) -> npt.NDArray[np.int64]:
        """(row, col, size, offset) of every tile of bundle ``key``: at most 16,384."""
        lo, hi, i0, i1 = self._span(key)
        start = np.maximum(self.start[i0:i1], lo)
        end = np.minimum(self.end[i0:i1], hi)
        counts = end - start
        ids = np.repeat(start, counts) + (
            np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        )
        x, y = hilbert_xy(self.zoom, ids - first_tile_id(self.zoom))
        return np.column_stack(
            [y, x, np.repeat(self.size[i0:i1], counts), np.repeat(self.offset[i0:i1], counts)]
        ).astype(np.int64)


def declared_extent(bounds: tuple[float, float, float, float]) -> Extent | None:
    """The full extent of header bounds (WGS 84 degrees) in Web Mercator, the grid's CRS.

    Bounds that are a point or a line stay one: the tiles holding it are expected. All-zero
    bounds are fields never set: ``None``, no extent declared.
    """
    if not any(bounds):
        return None
    west, south, east, north = bounds
    (xmin, ymin), (xmax, ymax) = web_mercator(west, south), web_mercator(east, north)
    return Extent(xmin, ymin, xmax, ymax)


def _tile_body(data: bytes, compression: int) -> tuple[bytes, str]:
    """A tile's bytes decompressed (``tile_compression``), and what is wrong if they do not
    decompress."""
    if compression not in (COMPRESSION_GZIP, COMPRESSION_BROTLI, COMPRESSION_ZSTD):
        return data, ""
    try:
        return inflate(data, compression, TILE_CAP, "the tile"), ""
    except CorruptBundle as exc:
        return data, exc.reason


@dataclass
class Directories:
    """What all directories of an archive list: every run of tiles, and broken leaves."""

    #: First tile ID, end (after the last), body size and offset of every run of tiles.
    start: npt.NDArray[np.int64]
    end: npt.NDArray[np.int64]
    size: npt.NDArray[np.int64]
    offset: npt.NDArray[np.int64]
    #: (first tile ID, reason) of every leaf directory that could not be read.
    broken: list[tuple[int, str]]


class ZoomBundles:
    """The bundles of one zoom, each with the runs reading it needs (the
    :class:`~.listed.BundleSource` of a PMTiles listing)."""

    def __init__(self, runs: ZoomRuns) -> None:
        self.runs = runs

    def count(self) -> int:
        """From the runs, without listing them."""
        return self.runs.count() + len(self.runs.broken)

    def parts(self) -> Iterator[tuple[BundleKey, ZoomRuns]]:
        """Bundles whose leaf directory is broken first, then the others."""
        return self.runs.parts()


class DirectoryBlocks(ByteSource):
    """An archive's bytes read in aligned blocks of :data:`DIRECTORY_BLOCK` bytes, the last
    :data:`DIRECTORY_BLOCKS_KEPT` kept: its directories read from object storage or over HTTP
    with a request per block."""

    __slots__ = ("_blocks", "_source")

    def __init__(self, source: ByteSource) -> None:
        self._source = source
        self.size, self.version, self.modified = source.size, source.version, source.modified
        self._blocks: dict[int, bytes] = {}

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset``, from the blocks holding them."""
        if length <= 0 or offset >= self.size:
            return b""
        first, last = offset // DIRECTORY_BLOCK, (offset + length - 1) // DIRECTORY_BLOCK
        data = b"".join(self._block(i) for i in range(first, last + 1))
        start = offset - first * DIRECTORY_BLOCK
        return data[start : start + length]

    def _block(self, index: int) -> bytes:
        block = self._blocks.get(index)
        if block is None:
            block = self._source.read(index * DIRECTORY_BLOCK, DIRECTORY_BLOCK)
            if len(self._blocks) >= DIRECTORY_BLOCKS_KEPT:
                del self._blocks[next(iter(self._blocks))]  # the oldest
            self._blocks[index] = block
        return block

    def current_version(self) -> Version:
        """The source's version."""
        return self._source.current_version()

    def close(self) -> None:
        """Close the source."""
        self._source.close()


class PMTilesCache(RemoteFile):
    """A ``.pmtiles`` archive: its directories give every tile and its size (no extra read:
    sizes come free).

    Bundles are virtual 128 x 128 blocks, listed from the directories' runs in the calling
    process; each carries its runs, and reading it is a lookup in them.
    """

    name = "pmtiles"
    description = "PMTiles v3 archive (Hilbert tile IDs; directories only, never tile bodies)"
    suffix = ".pmtiles"
    parallel = False  # reading a bundle is a lookup in its runs

    @classmethod
    def recognise(cls, path: Path, found: FileHead) -> bool:
        """A file that starts with the ``PMTiles`` magic and version 3, whatever its name."""
        return found.head[:VERSION] == MAGIC and found.head[VERSION : VERSION + 1] == b"\x03"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        with self._reading() as archive:
            self._header = decode_header(archive.read(0, HEADER_SIZE), self.where, archive.size)
            #: The archive's JSON metadata (an empty dict when it has none).
            self.metadata = self._read_metadata(archive)
        h = self._header
        self._scheme = web_mercator_scheme(
            list(range(h.min_zoom, h.max_zoom + 1)),
            tile_size=tile_size(self.metadata, f"{self.where} metadata") or 256,
            tile_format=h.tile_format,
        )
        self._extent = declared_extent(h.bounds)
        #: Every directory's runs, read once (:meth:`_load`).
        self._directories: Directories | None = None
        #: Directories decoded for tile reads, by offset and length (:meth:`_bodies`).
        self._directories_kept: IndexCache[tuple[int, int], tuple[npt.NDArray[np.int64], ...]] = (
            IndexCache(KEPT_DIRECTORIES)
        )

    @contextlib.contextmanager
    def _reading(self) -> Iterator[ByteSource]:
        """:meth:`_file_source` for reading the header or the directories: an archive replaced
        meanwhile (an object whose ETag moved) is refused, as its directories would mix two
        states of it.

        Raises:
            InvalidCacheConfig: the archive changed while it was read.
        """
        try:
            with self._file_source() as archive:
                yield archive
        except BundleChanging as exc:
            raise InvalidCacheConfig(
                f"{self.where}: {exc.reason}; run again once it is written"
            ) from None

    def _read_metadata(self, archive: ByteSource) -> dict[str, Any]:
        """The JSON metadata, decompressed and parsed within the limits of configuration files.

        Raises:
            InvalidCacheConfig: it lies past the end of the file, does not decompress, is
                larger than a configuration file can be, or is not JSON.
        """
        h = self._header
        source = f"{self.where} metadata"
        file_size = archive.size
        if not h.metadata_length:
            return {}
        if h.metadata_offset + h.metadata_length > file_size:
            raise InvalidCacheConfig(
                f"{source} (offset {h.metadata_offset:,}, length {h.metadata_length:,}) runs "
                f"past the end of the file ({file_size:,} bytes); the file is truncated"
            )
        if h.metadata_length > CONFIG_CAP + 4096:  # no codec makes data much bigger
            raise InvalidCacheConfig(
                f"{source} is {h.metadata_length:,} bytes; metadata is kilobytes (at most "
                f"{CONFIG_CAP:,} bytes are read)"
            )
        compressed = archive.read(h.metadata_offset, h.metadata_length)
        try:
            data = inflate(compressed, h.internal_compression, CONFIG_CAP, "it")
        except CorruptBundle as exc:
            raise InvalidCacheConfig(f"{source}: {exc.reason}") from None
        found = load_json(data, source, "PMTiles metadata")
        # The specification makes it an object; anything else declares nothing.
        return found if isinstance(found, dict) else {}

    def unknown_levels(self) -> list[str]:
        """Zooms whose tiles the directories list outside the header's ``min_zoom``..``max_zoom``
        (not scanned: the header declares the levels)."""
        d = self._load()
        if not len(d.start):
            return []
        low, high = tile_zooms(d.start), tile_zooms(d.end - 1)
        zooms = set(np.unique(np.r_[low, high]).tolist())
        across = low < high  # runs spanning zooms (rare): every zoom between
        for lo, hi in zip(low[across].tolist(), high[across].tolist(), strict=True):
            zooms.update(range(lo, hi + 1))
        h = self._header
        return [f"z{z}" for z in sorted(zooms) if not h.min_zoom <= z <= h.max_zoom]

    def _read_directory(self, archive: ByteSource, offset: int, length: int, budget: int) -> bytes:
        """One directory, decompressed within the per-directory cap and what is left of the
        budget of all directories."""
        h = self._header
        cap = DIRECTORY_CAP
        if h.tile_entries:
            cap = min(cap, 16 + ENTRY_BYTES * h.tile_entries)
        cap = min(cap, budget)
        if offset + length > archive.size:
            raise CorruptBundle(
                f"the directory at offset {offset:,} ({length:,} bytes) runs past the end of "
                "the file"
            )
        if length > cap + 4096:  # gzip never makes data much bigger
            raise CorruptBundle(
                f"the directory at offset {offset:,} is {length:,} bytes, more than its "
                f"entries can need ({cap:,})"
            )
        return inflate(archive.read(offset, length), h.internal_compression, cap)

    def _load(self) -> Directories:
        """Read the root and leaf directories once: their runs of tiles and broken leaves."""
        if self._directories is not None:
            return self._directories
        h = self._header
        max_entries = h.tile_entries or None
        parts: list[tuple[npt.NDArray[np.int64], ...]] = []
        broken: list[tuple[int, str]] = []
        budget = DIRECTORIES_CAP
        # (offset, length, depth, first tile ID of the leaf; -1 for the root)
        todo = [(h.root_offset, h.root_length, 0, -1)]
        seen: set[tuple[int, int]] = set()
        with self._reading() as opened:
            archive = opened if self.location is None else DirectoryBlocks(opened)
            while todo:
                offset, length, depth, first = todo.pop()
                try:
                    if (offset, length) in seen:  # a leaf pointing back up would never end
                        raise CorruptBundle("the leaf directories form a loop")
                    if depth > MAX_DEPTH:
                        raise CorruptBundle(f"leaf directories nested over {MAX_DEPTH} deep")
                    seen.add((offset, length))
                    data = self._read_directory(archive, offset, length, budget)
                    budget -= len(data)
                    ids, runs, lengths, offsets = decode_directory(data, max_entries)
                except BundleChanging:
                    raise
                except CorruptBundle as exc:
                    if first < 0:
                        raise InvalidCacheConfig(
                            f"{self.where}: the root directory is broken ({exc.reason})"
                        ) from None
                    if "form a loop" in exc.reason:
                        raise InvalidCacheConfig(
                            f"{self.where}: its leaf directories form a loop"
                        ) from None
                    broken.append((first, f"its leaf directory at offset {offset:,}: {exc.reason}"))
                    continue
                leaves = runs == 0
                todo.extend(
                    zip(
                        (h.leaf_offset + offsets[leaves]).tolist(),
                        lengths[leaves].tolist(),
                        [depth + 1] * int(np.count_nonzero(leaves)),
                        ids[leaves].tolist(),
                        strict=True,
                    )
                )
                tiles = ~leaves
                parts.append((ids[tiles], ids[tiles] + runs[tiles], lengths[tiles], offsets[tiles]))
        c = [np.concatenate([np.zeros(0, np.int64), *(p[i] for p in parts)]) for i in range(4)]
        self._directories = Directories(c[0], c[1], c[2], c[3], broken)
        return self._directories

    def _zoom(self, level: int) -> ZoomRuns:
        """The runs of one zoom, clipped and sorted, and its bundles whose leaf directory is
        broken."""
        d = self._load()
        runs = ZoomRuns.clip(level, d)
        for first, reason in d.broken:
            z, x, y = (int(v[0]) for v in tile_zxy(np.array([first], dtype=np.int64)))
            if z == level:
                key = BundleKey(z, y - y % BUNDLE_SIZE, x - x % BUNDLE_SIZE)
                runs.broken.setdefault(key, reason)
        return runs

    def list_level(self, level: int, run: Run = run_here) -> LevelListing:
        """Virtual bundles holding tiles, in the order of the Hilbert curve; bundles whose leaf
        directory is broken first. A level whose runs cover more than :data:`MAX_RUN_BUNDLES`
        bundles is one problem, not listed: a few bytes of runs must not buy hours of rows."""
        runs = self._zoom(level)
        if not _too_many(runs):
            return VirtualListing(level, self.where, [], ZoomBundles(runs))
        left_out = Problem(
            f"L{level:02d}",
            TOO_MANY_BUNDLES,
            f"the runs of zoom {level} cover {runs.count():,} bundles, more than the "
            f"{MAX_RUN_BUNDLES:,} (or one per directory entry) a zoom is scanned for; it is "
            "left out (a damaged or crafted directory?)",
        )
        return VirtualListing(level, self.where, [left_out], NoBundles())

    def count_bundles(self, level: int) -> int:
        """From the runs, without listing them."""
        return self.list_level(level).count

    def read_bundle(self, bundle: BundleFile) -> BundleIndex:
        """From the runs the bundle carries: the sizes of its tiles.

        Raises:
            CorruptBundle: the leaf directory listing the bundle's first tile is broken.
        """
        sizes = _runs_of(bundle).sizes(bundle.key)
        return BundleIndex(sizes, int(np.count_nonzero(sizes)), int(sizes.sum()), 0, 0, None)

    def read_tiles(self, bundle: BundleFile) -> Iterator[StoredTile]:
        """The bundle's tile bodies, in file order, decompressed as ``tile_compression`` says; a
        body outside the tile data section, or that does not decompress within
        :data:`TILE_CAP`, is damage. The tiles of one run share one body, read once."""
        h = self._header
        tiles = _runs_of(bundle).tiles(bundle.key)
        with self._file_source() as archive:
            read = archive.read
            last: tuple[int, int] | None = None
            data, damage = b"", ""
            for row, col, size, offset in tiles[np.argsort(tiles[:, 3], kind="stable")].tolist():
                if offset < 0 or offset + size > h.tile_data_length:
                    yield StoredTile.past_end(row, col, offset, size, h.tile_data_length)
                    continue
                if (offset, size) != last:
                    data = read(h.tile_data_offset + offset, size)
                    damage = "" if len(data) == size else "the file ends inside the tile"
                    if not damage:
                        data, damage = _tile_body(data, h.tile_compression)
                    last = (offset, size)
                yield StoredTile(row, col, data, damage)

    def grid_size(self, level: int) -> tuple[int, int]:
        """The zoom's 2**level rows and columns."""
        return 1 << level, 1 << level

    def _read_tile(self, tile: Tile) -> bytes | None:
        """Looked up in the root directory and the leaves on the way to the tile
        (:meth:`_bodies`), not in every directory: a large or remote archive answers its
        first tile at once."""
        ids = np.array([tile_id(tile.level, tile.col, tile.row)], dtype=np.int64)
        lengths, offsets = self._bodies(ids)
        if not lengths[0]:
            return None
        return self._read_body(int(offsets[0]), int(lengths[0]))

    def presence(
        self, level: int, row: int, col: int, height: int, width: int
    ) -> npt.NDArray[np.bool_]:
        """From the root directory and the leaves the window's tile IDs fall in."""
        found, window = self.empty_window(level, row, col, height, width)
        if window.is_empty:
            return found
        rows, cols = np.mgrid[window.row0 : window.row1, window.col0 : window.col1]
        lengths, _ = self._bodies(tile_ids(level, cols.ravel(), rows.ravel()))
        found[window.row0 - row : window.row1 - row, window.col0 - col : window.col1 - col] = (
            lengths.reshape(rows.shape) > 0
        )
        return found

    def _bodies(
        self, ids: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The length and the offset in the tile data of the body of each tile ID (length 0:
        no tile), from the root directory and the leaf directories those IDs fall in, each
        decoded once and kept (:data:`KEPT_DIRECTORIES`).

        Raises:
            CorruptBundle: a directory on the way cannot be read or decoded, or leaves nest
                over :data:`MAX_DEPTH` deep (a loop).
        """
        h = self._header
        lengths, offsets = np.zeros_like(ids), np.zeros_like(ids)
        todo = [(h.root_offset, h.root_length, np.arange(len(ids)), 0)]
        while todo:
            offset, length, which, depth = todo.pop()
            if depth > MAX_DEPTH:
                raise CorruptBundle(f"leaf directories nested over {MAX_DEPTH} deep")
            try:
                first, runs, sizes, starts = self._directories_kept.get(
                    (offset, length), partial(self._decoded_directory, offset, length)
                )
            except CorruptBundle as exc:
                what = f"leaf directory at offset {offset:,}" if depth else "root directory"
                raise CorruptBundle(f"{self.where}: its {what} is broken ({exc.reason})") from None
            entry = np.searchsorted(first, ids[which], side="right") - 1
            which, entry = which[entry >= 0], entry[entry >= 0]
            leaf = runs[entry] == 0
            hit = ~leaf & (ids[which] < first[entry] + runs[entry])
            lengths[which[hit]], offsets[which[hit]] = sizes[entry[hit]], starts[entry[hit]]
            for i in np.unique(entry[leaf]).tolist():
                below = which[leaf][entry[leaf] == i]
                todo.append((h.leaf_offset + int(starts[i]), int(sizes[i]), below, depth + 1))
        return lengths, offsets

    def _decoded_directory(self, offset: int, length: int) -> tuple[npt.NDArray[np.int64], ...]:
        """The directory at ``offset``: tile IDs, run lengths, lengths, offsets.

        Raises:
            CorruptBundle: it cannot be read or decoded.
        """
        with self._file_source() as archive:
            data = self._read_directory(archive, offset, length, DIRECTORIES_CAP)
        return decode_directory(data, self._header.tile_entries or None)

    def _read_body(self, offset: int, size: int) -> bytes:
        """One body of the tile data section, as stored (compressed as ``tile_compression``
        says), never decompressed.

        Raises:
            CorruptBundle: it lies past the tile data, is larger than any tile, or the file
                ends inside it.
        """
        h = self._header
        if offset < 0 or offset + size > h.tile_data_length:
            raise CorruptBundle(
                f"a tile body at offset {offset:,} ({size:,} bytes) runs past the end of the "
                f"tile data ({h.tile_data_length:,} bytes)"
            )
        if size > TILE_CAP:
            raise CorruptBundle(f"a tile body of {size:,} bytes: more than any tile ({TILE_CAP:,})")
        with self._file_source() as archive:
            data = archive.read(h.tile_data_offset + offset, size)
        if len(data) != size:
            raise CorruptBundle("the file ends inside a tile body")
        return data


def _runs_of(bundle: BundleFile) -> ZoomRuns:
    """The runs a bundle of a listing carries.

    Raises:
        CorruptBundle: the leaf directory listing the bundle's first tile is broken.
    """
    runs: ZoomRuns = bundle.payload
    if bundle.key in runs.broken:
        raise CorruptBundle(runs.broken[bundle.key])
    return runs


def _too_many(runs: ZoomRuns) -> bool:
    """Whether a zoom's runs cover more bundles than its directory entries can honestly make."""
    return runs.count() > max(MAX_RUN_BUNDLES, len(runs.start))
