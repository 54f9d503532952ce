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

from .models import BUNDLE_SIZE, BundleKey, Extent, Tile, TileRange, TilingScheme

#: Tolerance, in tiles, when snapping a coordinate onto a tile edge.
SNAP = 1e-9


def tile_span(scheme: TilingScheme, level: int) -> tuple[float, float]:
    """Width and height of one tile of ``level`` in map units."""
    res = scheme.lod(level).resolution
    return scheme.tile_cols * res, scheme.tile_rows * res


def _floor(v: float) -> int:
    return math.floor(v + SNAP * max(1.0, abs(v)))


def _ceil(v: float) -> int:
    return math.ceil(v - SNAP * max(1.0, abs(v)))


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
    """The tiles of ``level`` that share interior area with ``extent`` (rows, cols >= 0)."""
    w, h = tile_span(scheme, level)
    ox, oy = scheme.origin_x, scheme.origin_y
    found = TileRange(
        max(0, _floor((oy - extent.ymax) / h)),
        _ceil((oy - extent.ymin) / h),
        max(0, _floor((extent.xmin - ox) / w)),
        _ceil((extent.xmax - ox) / w),
    )
    return TileRange(0, 0, 0, 0) if found.is_empty else found


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
    if tiles.is_empty:
        return 0
    rows = (tiles.row1 - 1) // BUNDLE_SIZE - tiles.row0 // BUNDLE_SIZE + 1
    cols = (tiles.col1 - 1) // BUNDLE_SIZE - tiles.col0 // BUNDLE_SIZE + 1
    return rows * cols


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
