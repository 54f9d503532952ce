"""Grid arithmetic: tiles and bundles to map coordinates and back.

Rows count downward from the tiling scheme's origin (spec §2)::

    col = floor((x - originX) / (tileCols * res))
    row = floor((originY - y) / (tileRows * res))

A tile is *in* an extent when its square shares interior area with it: a tile that only touches the
extent's edge is not. Coordinates within a billionth of a tile of a tile edge are snapped to it,
so that extents written with float noise (``20037508.342789244``) land on the intended tiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from .errors import InvalidCacheConfig, LimitExceeded, UsageError
from .models import (
    BUNDLE_SIZE,
    LOD,
    BundleKey,
    Extent,
    SpatialReference,
    Tile,
    TileRange,
    TilingScheme,
)

#: Tolerance, in tiles, when snapping a coordinate onto a tile edge.
SNAP = 1e-9
#: The snap grows with the tile position (float noise grows with the coordinate) up to this
#: many tiles: at deep levels a relative billionth would be hundreds of tiles.
MAX_SNAP = 1e-3


def _snap(v: float) -> float:
    return min(SNAP * max(1.0, abs(v)), MAX_SNAP)


def tile_span(scheme: TilingScheme, level: int) -> tuple[float, float]:
    """Width and height of one tile of ``level`` in map units."""
    res = scheme.lod(level).resolution
    w, h = scheme.tile_cols * res, scheme.tile_rows * res
    if not (math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0):
        raise InvalidCacheConfig(
            f"level {level}: resolution {res!r} and tile size {scheme.tile_cols} x "
            f"{scheme.tile_rows} give no tile span; resolutions must be finite positive numbers"
        )
    return w, h


#: The deepest zoom of the grids whose levels are zooms (XYZ/TMS folders, PMTiles, Web Mercator):
#: 2**31 tiles a side, the most a status's 32-bit rows and columns hold.
MAX_ZOOM = 31
#: Half the side of the Web Mercator square, in metres.
HALF_WORLD = 20037508.342789244
EARTH_RADIUS = 6378137.0
#: Latitude where Web Mercator's square ends.
MAX_LATITUDE = 85.0511287798066


def web_mercator(lon: float, lat: float) -> tuple[float, float]:
    """Spherical Mercator coordinates (EPSG:3857) of a WGS 84 point, latitude clamped to the
    square (+-:data:`MAX_LATITUDE`)."""
    lat = max(-MAX_LATITUDE, min(MAX_LATITUDE, lat))
    x = math.radians(lon) * EARTH_RADIUS
    y = math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) * EARTH_RADIUS
    return x, y


def web_mercator_scheme(
    levels: list[int], tile_size: int = 256, tile_format: str = "PNG"
) -> TilingScheme:
    """The GoogleMapsCompatible tiling scheme for ``levels`` (96 DPI scales), as MBTiles,
    PMTiles and XYZ/TMS folders use it."""
    lods = []
    for level in levels:
        res = 2 * HALF_WORLD / tile_size / 2**level
        lods.append(LOD(level, res * 96 / 0.0254, res))
    return TilingScheme(
        SpatialReference(3857, 3857),
        -HALF_WORLD,
        HALF_WORLD,
        tile_size,
        tile_size,
        96.0,
        tuple(lods),
        tile_format=tile_format,
        storage_format="MBTiles",
    )


#: Tile positions beyond this are not counted (and are not exact in map coordinates).
_MAX_POSITION = 2.0**62


def _position(v: float) -> float:
    if not math.isfinite(v) or abs(v) > _MAX_POSITION:
        raise LimitExceeded(
            f"a tile position of {v!r} cannot be counted: the level's tiles are too small for "
            "its extent (check its scale and resolution)"
        )
    return v


def _floor(v: float) -> int:
    return math.floor(_position(v) + _snap(v))


def _ceil(v: float) -> int:
    return math.ceil(_position(v) - _snap(v))


def tile_at(scheme: TilingScheme, level: int, x: float, y: float) -> Tile:
    """The tile of ``level`` whose square holds the point ``(x, y)``."""
    w, h = tile_span(scheme, level)
    return Tile(level, _floor((scheme.origin_y - y) / h), _floor((x - scheme.origin_x) / w))


def tile_bounds(scheme: TilingScheme, tile: Tile) -> Extent:
    """The square of ``tile`` in map units."""
    return range_bounds(
        scheme, tile.level, TileRange(tile.row, tile.row + 1, tile.col, tile.col + 1)
    )


def range_bounds(scheme: TilingScheme, level: int, tiles: TileRange) -> Extent:
    """The rectangle covered by a block of tiles of ``level``."""
    w, h = tile_span(scheme, level)
    return Extent(
        scheme.origin_x + tiles.col0 * w,
        scheme.origin_y - tiles.row1 * h,
        scheme.origin_x + tiles.col1 * w,
        scheme.origin_y - tiles.row0 * h,
    )


def tiles_in_extent(scheme: TilingScheme, level: int, extent: Extent) -> TileRange:
    """The tiles of ``level`` that share interior area with ``extent`` (rows, cols >= 0).

    An extent that is a point or a line (no width, or no height) has no interior: its tiles are
    those holding it, as :func:`tile_at` finds them (one a level for a point), never none.
    """
    w, h = tile_span(scheme, level)
    ox, oy = scheme.origin_x, scheme.origin_y
    if not all(math.isfinite(v) for v in (*extent, ox, oy)):
        raise UsageError(
            f"extent {tuple(extent)} or tile origin ({ox}, {oy}) is not finite: no tiles can be "
            "counted in it"
        )
    row0, row1 = _cells((oy - extent.ymax) / h, (oy - extent.ymin) / h)
    col0, col1 = _cells((extent.xmin - ox) / w, (extent.xmax - ox) / w)
    found = TileRange(max(0, row0), row1, max(0, col0), col1)
    return TileRange(0, 0, 0, 0) if found.is_empty else found


def _cells(low: float, high: float) -> tuple[int, int]:
    """The first cell and the cell after the last whose interior overlaps ``[low, high]`` (in
    cells); when ``low == high``, the cell holding that coordinate."""
    first = _floor(low)
    return first, (first + 1 if low == high else _ceil(high))


RowT = TypeVar("RowT", int, npt.NDArray[np.int64])


def tms_row(level: int, row: RowT) -> RowT:
    """The TMS row (counted up from the bottom, as MBTiles stores it) of an XYZ row, or back:
    ``2**level - 1 - row``."""
    return (1 << level) - 1 - row


def bundle_range(bundle: BundleKey) -> TileRange:
    """The 128 x 128 tiles of ``bundle``."""
    return TileRange(bundle.row, bundle.row + BUNDLE_SIZE, bundle.col, bundle.col + BUNDLE_SIZE)


def bundle_bounds(scheme: TilingScheme, bundle: BundleKey) -> Extent:
    """The full square of ``bundle`` in map units (it can be far larger than the world)."""
    return range_bounds(scheme, bundle.level, bundle_range(bundle))


def bundles_of_range(level: int, tiles: TileRange) -> Iterator[BundleKey]:
    """Every bundle of ``level`` that holds at least one tile of ``tiles``, row by row."""
    if tiles.is_empty:
        return
    for row in range(tiles.row0 - tiles.row0 % BUNDLE_SIZE, tiles.row1, BUNDLE_SIZE):
        for col in range(tiles.col0 - tiles.col0 % BUNDLE_SIZE, tiles.col1, BUNDLE_SIZE):
            yield BundleKey(level, row, col)


def bundle_count(tiles: TileRange) -> int:
    """How many bundles :func:`bundles_of_range` yields, computed without iterating."""
    return tiles.bundles.tiles


def blocks_bounds(
    scheme: TilingScheme, level: int, blocks: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float64], ...]:
    """Map coordinates (xmin, ymin, xmax, ymax arrays) of blocks ``(row0, row1, col0, col1)``."""
    w, h = tile_span(scheme, level)
    b = blocks.astype(np.float64).reshape(-1, 4)
    ox, oy = scheme.origin_x, scheme.origin_y
    return ox + b[:, 2] * w, oy - b[:, 1] * h, ox + b[:, 3] * w, oy - b[:, 0] * h


def mask_runs(mask: npt.NDArray[np.bool_], row0: int, col0: int) -> npt.NDArray[np.int64]:
    """The runs of ``True`` in each row of a mask whose top-left tile is ``(row0, col0)``, as
    one-row blocks ``(row, row + 1, first col, col after the last)``, shape (n, 4)."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    steps = np.diff(padded, axis=1)
    rows, cols = np.nonzero(steps)  # row by row, a run's start (+1) then its end (-1)
    rows = rows[::2].astype(np.int64) + row0
    return np.column_stack([rows, rows + 1, cols[::2] + col0, cols[1::2] + col0]).astype(np.int64)


def mask_blocks(
    mask: npt.NDArray[np.bool_], row0: int, col0: int, limit: int | None = None
) -> npt.NDArray[np.int64] | None:
    """Blocks ``(row0, row1, col0, col1)`` covering exactly the ``True`` cells of a mask whose
    top-left tile is ``(row0, col0)``: one block when they form a rectangle (the common case of
    an unbuilt corner), else runs merged down the rows. ``None`` when the cells fall in more
    than ``limit`` runs (scattered cells: counted in one pass, never split into runs)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not rows.size:
        return np.zeros((0, 4), dtype=np.int64)
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(mask[r0:r1].any(axis=0))  # only the rows holding cells
    c0, c1 = int(cols[0]), int(cols[-1]) + 1
    if np.count_nonzero(mask) == (r1 - r0) * (c1 - c0):
        return np.array([[row0 + r0, row0 + r1, col0 + c0, col0 + c1]], dtype=np.int64)
    inner = mask[r0:r1, c0:c1]
    if limit is not None:
        starts = np.count_nonzero(inner[:, 1:] & ~inner[:, :-1]) + np.count_nonzero(inner[:, 0])
        if starts > limit:
            return None
    # Rows whose every cell is True (most rows of a mostly empty bundle's holes) go as stretches
    # of rows: only the other rows are cut into runs.
    full = inner.all(axis=1)
    partial = np.flatnonzero(~full)
    runs = mask_runs(inner[partial], 0, col0 + c0)
    runs[:, 0] = partial[runs[:, 0]] + row0 + r0
    runs[:, 1] = runs[:, 0] + 1
    steps = np.diff(np.r_[0, full.astype(np.int8), 0])
    first, after = np.flatnonzero(steps == 1), np.flatnonzero(steps == -1)
    stretches = np.column_stack(
        [
            first + row0 + r0,
            after + row0 + r0,
            np.full(len(first), col0 + c0),
            np.full(len(first), col0 + c1),
        ]
    ).astype(np.int64)
    return np.concatenate([stretches, merge_blocks(runs)])


def merge_blocks(blocks: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Merge blocks ``(row0, row1, col0, col1)`` that span the same columns and follow each other
    down the rows (one-row runs into rectangles): fewer, larger blocks covering the same tiles."""
    if len(blocks) < 2:
        return blocks
    order = np.lexsort((blocks[:, 0], blocks[:, 3], blocks[:, 2]))
    b = blocks[order]
    new = np.r_[True, (b[1:, 2] != b[:-1, 2]) | (b[1:, 3] != b[:-1, 3]) | (b[1:, 0] != b[:-1, 1])]
    starts = np.flatnonzero(new)
    return np.column_stack(
        [b[starts, 0], np.maximum.reduceat(b[:, 1], starts), b[starts, 2], b[starts, 3]]
    )


def grid_extent(scheme: TilingScheme) -> Extent | None:
    """The extent of the whole grid, for caches that declare no full extent.

    A grid whose origin mirrors around (0, 0) (Web Mercator, WGS 84) covers the rectangle between
    the origin and its mirror; otherwise the CRS's area of use (pyproj) right of and below the
    origin. ``None`` when neither can be known.
    """
    ox, oy = scheme.origin_x, scheme.origin_y
    if ox < 0 < oy:
        return Extent(ox, -oy, -ox, oy)
    crs_input = scheme.spatial_reference.user_input()
    if crs_input is None:
        return None
    try:
        from pyproj import CRS, Transformer

        crs = CRS.from_user_input(crs_input)
        area = crs.area_of_use
        if area is None:
            return None
        to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        xmin, ymin, xmax, ymax = to_crs.transform_bounds(
            area.west, area.south, area.east, area.north, densify_pts=21
        )
    except Exception:  # pyproj raises several types for unknown or odd CRSs
        return None
    found = Extent(max(xmin, ox), ymin, xmax, min(ymax, oy))
    return None if found.is_empty else found
