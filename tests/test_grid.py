"""Grid arithmetic: round trips between tiles, bundles and map coordinates."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from cachestatus import grid
from cachestatus.models import (
    LOD,
    BundleKey,
    Extent,
    SpatialReference,
    Tile,
    TileRange,
    TilingScheme,
)
from tests.helpers import WEB_MERCATOR_HALF, web_mercator_scheme

WEB_MERCATOR = web_mercator_scheme(24)
# A scheme whose scales do not halve, with non-square tiles and an odd origin.
ODD = TilingScheme(
    SpatialReference(2056),
    2420000.0,
    1350000.0,
    512,
    256,
    96.0,
    (
        LOD(0, 4000000, 1058.33),
        LOD(1, 1500000, 396.875),
        LOD(2, 625000, 165.36),
        LOD(3, 333.3, 0.0882),
    ),
)

levels = st.integers(0, 23)
schemes_levels = st.one_of(
    st.tuples(st.just(WEB_MERCATOR), levels), st.tuples(st.just(ODD), st.integers(0, 3))
)


@given(schemes_levels, st.integers(0, 2**23), st.integers(0, 2**23))
def test_tile_center_maps_back_to_the_tile(scheme_level, row, col):
    scheme, level = scheme_level
    b = grid.tile_bounds(scheme, Tile(level, row, col))
    x, y = (b.xmin + b.xmax) / 2, (b.ymin + b.ymax) / 2
    assert grid.tile_at(scheme, level, x, y) == Tile(level, row, col)


@given(
    schemes_levels,
    st.integers(0, 2**20),
    st.integers(0, 2**20),
    st.integers(1, 300),
    st.integers(1, 300),
)
def test_range_bounds_round_trip(scheme_level, row, col, height, width):
    scheme, level = scheme_level
    tiles = TileRange(row, row + height, col, col + width)
    assert grid.tiles_in_extent(scheme, level, grid.range_bounds(scheme, level, tiles)) == tiles


@given(levels, st.integers(0, 2**20), st.integers(0, 2**20))
def test_bundle_holds_its_tiles(level, row, col):
    key = BundleKey.of_tile(Tile(level, row, col))
    assert key.row % 128 == 0 and key.col % 128 == 0
    assert key.row <= row < key.row + 128 and key.col <= col < key.col + 128
    square = grid.bundle_bounds(WEB_MERCATOR, key)
    tile = grid.tile_bounds(WEB_MERCATOR, Tile(level, row, col))
    assert square.xmin <= tile.xmin and tile.xmax <= square.xmax
    assert square.ymin <= tile.ymin and tile.ymax <= square.ymax


@given(st.integers(0, 5000), st.integers(0, 5000), st.integers(0, 700), st.integers(0, 700))
def test_bundle_count_matches_iteration(row, col, height, width):
    tiles = TileRange(row, row + height, col, col + width)
    found = list(grid.bundles_of_range(3, tiles))
    assert len(found) == grid.bundle_count(tiles)
    covered = sum(grid.bundle_range(b).intersect(tiles).tiles for b in found)
    assert covered == tiles.tiles
    # The range of bundle rows and columns spans exactly the bundles found.
    spans = tiles.bundles
    assert {(b.row // 128, b.col // 128) for b in found} == {
        (r, c) for r in range(spans.row0, spans.row1) for c in range(spans.col0, spans.col1)
    }


def test_edge_touching_tiles_are_not_in_the_extent():
    # The extent of exactly tile (row 1, col 1): its neighbours only touch its edges.
    b = grid.tile_bounds(WEB_MERCATOR, Tile(5, 1, 1))
    assert grid.tiles_in_extent(WEB_MERCATOR, 5, b) == TileRange(1, 2, 1, 2)
    # Slightly inside on each side: still one tile; slightly outside: its neighbours too.
    w = b.xmax - b.xmin
    inner = Extent(b.xmin + w / 1e3, b.ymin + w / 1e3, b.xmax - w / 1e3, b.ymax - w / 1e3)
    outer = Extent(b.xmin - w / 1e3, b.ymin - w / 1e3, b.xmax + w / 1e3, b.ymax + w / 1e3)
    assert grid.tiles_in_extent(WEB_MERCATOR, 5, inner).tiles == 1
    assert grid.tiles_in_extent(WEB_MERCATOR, 5, outer) == TileRange(0, 3, 0, 3)


def test_world_extent_gives_the_whole_pyramid():
    world = Extent(-WEB_MERCATOR_HALF, -WEB_MERCATOR_HALF, WEB_MERCATOR_HALF, WEB_MERCATOR_HALF)
    for level in (0, 1, 7, 18):
        n = 2**level
        assert grid.tiles_in_extent(WEB_MERCATOR, level, world) == TileRange(0, n, 0, n)


def test_extent_left_of_and_above_the_origin_is_clamped():
    outside = Extent(-3e7, 0, -2.5e7, 3e7)
    assert grid.tiles_in_extent(WEB_MERCATOR, 3, outside).is_empty


def test_grid_extent_mirrors_a_centred_origin():
    assert grid.grid_extent(WEB_MERCATOR) == Extent(
        -WEB_MERCATOR_HALF, -WEB_MERCATOR_HALF, WEB_MERCATOR_HALF, WEB_MERCATOR_HALF
    )


def test_grid_extent_from_the_crs_area_of_use():
    extent = grid.grid_extent(ODD)  # EPSG:2056, Swiss CH1903+/LV95
    assert extent is not None
    # Switzerland: about 2.48e6..2.84e6 east, 1.07e6..1.30e6 north, below the origin's 1.35e6.
    assert 2.42e6 <= extent.xmin < 2.5e6 and 2.8e6 < extent.xmax < 2.9e6
    assert 1.0e6 < extent.ymin < 1.1e6 and 1.25e6 < extent.ymax <= 1.35e6
    assert math.isfinite(extent.xmax)


def test_bundle_names_grow_past_four_digits():
    assert BundleKey(17, 0, 0).name == "R0000C0000"
    assert BundleKey(17, 0x10000, 0x1FF80).name == "R10000C1ff80"
    assert BundleKey(5, 128, 256).label == "L05/R0080C0100"
    assert str(Tile(5, 130, 260)) == "L5/R130/C260"


# Bundles' top-left corners near a window (most of them bundle-aligned, some not), and windows.
_corner = st.one_of(st.integers(0, 24).map(lambda i: i * 128), st.integers(0, 3100))
_window = st.one_of(
    st.none(),
    st.tuples(_corner, st.integers(1, 2000), _corner, st.integers(1, 2000)).map(
        lambda w: TileRange(w[0], w[0] + w[1], w[2], w[2] + w[3])
    ),
)


@given(
    st.lists(st.tuples(st.integers(0, 2**24), st.integers(0, 2**24)), max_size=60),
    st.tuples(st.integers(0, 2**24), st.integers(0, 2**24)),
    _window,
)
def test_bundle_set_is_a_set(pairs, probe, window):
    _check_bundle_set(pairs, probe, window)


@given(st.lists(st.tuples(_corner, _corner), max_size=80), st.tuples(_corner, _corner), _window)
def test_bundle_set_with_a_bitmap_is_a_set(pairs, probe, window):
    """Bundles inside the window's grid go to its bitmap, the others beside it: the same set."""
    _check_bundle_set(pairs, probe, window)


def _check_bundle_set(pairs, probe, window):
    from cachestatus.models import BundleSet

    found = BundleSet(window)
    half = len(pairs) // 2
    for part in (pairs[:half], pairs[half:], pairs[: half // 2]):
        found.add(
            np.array([r for r, _ in part], dtype=np.int64),
            np.array([c for _, c in part], dtype=np.int64),
        )
    assert len(found) == len(set(pairs))
    assert (probe in found) == (probe in set(pairs))
    assert all(p in found for p in pairs)
    for size in (8, 2**18):
        pieces = [np.column_stack(c) for c in found.chunks(size=size)]
        got = np.concatenate([np.zeros((0, 2), np.int64), *pieces]).tolist()
        assert sorted(map(tuple, got)) == sorted(set(pairs))
