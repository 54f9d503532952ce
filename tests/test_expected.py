"""Expected tiles of an area of interest, checked against a brute-force count over tile squares."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from cachestatus import grid
from cachestatus.expected import AreaExpectation, ExtentExpectation
from cachestatus.models import BundleKey, TileRange
from tests.helpers import web_mercator_scheme

SCHEME = web_mercator_scheme(20)


def brute_force(area, level: int) -> set[tuple[int, int]]:
    """Every tile of the area's bounding block whose square shares interior with the area.

    Each square is shrunk by the documented tolerance, a billionth of a tile: an overlap
    thinner than that (a sliver's tip across a tile edge) is float noise and does not count.
    """
    bounds = grid.tiles_in_extent(SCHEME, level, grid.Extent(*area.bounds))
    rows, cols = np.mgrid[bounds.row0 : bounds.row1, bounds.col0 : bounds.col1]
    rows, cols = rows.ravel(), cols.ravel()
    w, h = grid.tile_span(SCHEME, level)
    dx, dy = w * grid.SNAP, h * grid.SNAP
    boxes = shapely.box(
        SCHEME.origin_x + cols * w + dx,
        SCHEME.origin_y - (rows + 1) * h + dy,
        SCHEME.origin_x + (cols + 1) * w - dx,
        SCHEME.origin_y - rows * h - dy,
    )
    shared = shapely.area(shapely.intersection(area, boxes)) > 0
    return set(zip(rows[shared].tolist(), cols[shared].tolist(), strict=True))


def from_expectation(exp) -> set[tuple[int, int]]:
    found = set()
    for key in exp.bundles():
        block, mask = exp.window(key)
        rows, cols = np.mgrid[block.row0 : block.row1, block.col0 : block.col1]
        keep = np.ones(rows.shape, bool) if mask is None else mask
        found |= set(zip(rows[keep].tolist(), cols[keep].tolist(), strict=True))
    return found


def assert_brute_force(area, level: int) -> None:
    """The area's expected tiles are the brute force's, unless it is a sliver (whose overlaps
    with tiles underflow to area 0)."""
    if area.is_empty or area.area < 1e4:
        return
    exp = AreaExpectation(level, SCHEME, area)
    truth = brute_force(area, level)
    assert exp.total() == len(truth)
    assert from_expectation(exp) == truth


# An irregular polygon with a hole and a concave bay, spanning several bundles at level 10.
IRREGULAR = shapely.Polygon(
    [(-3.1e6, 1.2e6), (2.9e6, 2.3e6), (3.3e6, -1.7e6), (0.4e6, -0.2e6), (-2.2e6, -2.6e6)],
    holes=[[(-0.5e6, 0.4e6), (0.6e6, 0.5e6), (0.1e6, 1.1e6)]],
)


@pytest.mark.parametrize("level", [3, 6, 9, 10])
def test_irregular_area_matches_brute_force(level):
    exp = AreaExpectation(level, SCHEME, IRREGULAR)
    truth = brute_force(IRREGULAR, level)
    assert from_expectation(exp) == truth
    assert exp.total() == len(truth)
    keys = list(exp.bundles())
    assert len(keys) == len(set(keys)) == exp.bundle_count()
    assert {BundleKey.of_tile(grid.Tile(level, r, c)) for r, c in truth} == set(keys)


def test_tile_aligned_area_does_not_count_touching_tiles():
    block = TileRange(10, 14, 20, 25)
    area = shapely.box(*grid.range_bounds(SCHEME, 8, block))
    exp = AreaExpectation(8, SCHEME, area)
    assert exp.total() == 20
    assert from_expectation(exp) == {(r, c) for r in range(10, 14) for c in range(20, 25)}


# Vertices on a 1 km grid: no float slivers whose overlap with a tile underflows to area 0.
coordinate = st.integers(-4000, 4000).map(lambda v: v * 1000.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(coordinate, coordinate), min_size=3, max_size=7), st.integers(4, 9))
def test_random_polygons_match_brute_force(points, level):
    area = shapely.make_valid(shapely.Polygon(points))
    area = shapely.union_all(
        [g for g in shapely.get_parts(area) if g.geom_type in ("Polygon", "MultiPolygon")]
    )
    assert_brute_force(area, level)


def test_extent_expectation_is_the_block():
    exp = ExtentExpectation(5, TileRange(3, 300, 100, 140))
    assert exp.total() == 297 * 40
    assert exp.bundle_count() == len(list(exp.bundles())) == 3 * 2
    assert exp.window(BundleKey(5, 128, 128)) == (TileRange(128, 256, 128, 140), None)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 15), st.integers(0, 15)), max_size=30),
    st.tuples(st.integers(0, 2047), st.integers(0, 2047), st.integers(1, 900)),
)
def test_bundles_holding_expected_tiles_count_as_one_by_one(bundles, block):
    """The vectorised count of bundles holding expected tiles, for a block and for an area,
    equals asking each bundle on its own."""
    scheme = web_mercator_scheme(12)
    r0, c0, side = block
    bounds = TileRange(r0, min(r0 + side, 2048), c0, min(c0 + side, 2048))
    rows = np.array([r * 128 for r, _ in bundles], dtype=np.int64)
    cols = np.array([c * 128 for _, c in bundles], dtype=np.int64)
    extent = ExtentExpectation(11, bounds)
    box = grid.range_bounds(scheme, 11, bounds)
    area = AreaExpectation(11, scheme, shapely.box(*box).buffer(-1.0))
    for exp in (extent, area):
        one_by_one = sum(
            exp.holds(BundleKey(11, r, c))
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
        )
        assert exp.count_holding(rows, cols) == one_by_one


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(coordinate, coordinate, coordinate, coordinate), min_size=1, max_size=3),
    st.booleans(),
    st.integers(4, 9),
)
def test_areas_of_straight_edges_match_brute_force(corners, holed, level):
    """Unions of boxes (an extent, an L, a frame when ``holed``): bands whose part is a
    rectangle take their rows without a cut, the others are cut; both as tile squares say."""
    boxes = [shapely.box(min(a, c), min(b, d), max(a, c), max(b, d)) for a, b, c, d in corners]
    area = shapely.union_all(boxes)
    if holed:
        area = area.difference(area.centroid.buffer(150_000, cap_style="square"))
    assert_brute_force(area, level)


@pytest.mark.parametrize("level", [17, 20])
def test_a_box_at_deep_levels_gives_the_runs_the_cuts_give(level, monkeypatch):
    """Rows of rectangular bands taken without a cut are the rows that cutting them gives,
    where the grid is too fine for the brute force: an extent off the tile edges."""
    scheme = web_mercator_scheme(21)
    area = shapely.box(-2_000_003.7, 1_000_000.3, -1_990_001.1, 1_004_999.9)
    fast = AreaExpectation(level, scheme, area)
    # No band is taken for a rectangle: every row is cut from the area.
    monkeypatch.setattr(shapely, "equals", lambda a, b: np.zeros(np.shape(a), dtype=bool))
    cut = AreaExpectation(level, scheme, area)
    assert fast.total() == cut.total() > 0
    runs = [(exp._row.tolist(), exp._col0.tolist(), exp._col1.tolist()) for exp in (fast, cut)]
    assert runs[0] == runs[1]
