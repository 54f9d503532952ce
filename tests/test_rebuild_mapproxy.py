"""Rebuild against caches written by MapProxy: every bundle compared with what MapProxy stored.

MapProxy (an independent writer) stores random tiles over several levels, including 17 and 18
whose bundle names have five hex digits. Expected tiles are counted here by brute force over tile
squares, independently of the grid module.
"""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
import pyogrio
import pytest
import shapely
from pyogrio.raw import read

from cachestatus import operations
from tests.helpers import WEB_MERCATOR_HALF, mapproxy_v2_cache, web_mercator_lods
from tests.status_rows import task_rows

EXTENT = (-9.5e6, -4.2e6, 1.31e7, 7.7e6)  # an irregular box, not tile-aligned
MAX_MISSING = 3000
RES = {lv: res for lv, _, res in web_mercator_lods(20)}


def _axis_hits(level: int, lo: float, hi: float, downward: bool) -> np.ndarray:
    """Indices of tile columns (or rows) whose open interval overlaps (lo, hi), by brute force."""
    size = 256 * RES[level]
    idx = np.arange(2**level)
    if downward:
        t_hi = WEB_MERCATOR_HALF - idx * size
        t_lo = t_hi - size
    else:
        t_lo = -WEB_MERCATOR_HALF + idx * size
        t_hi = t_lo + size
    return idx[(t_lo < hi) & (t_hi > lo)]


def _expected(level: int) -> tuple[np.ndarray, np.ndarray]:
    xmin, ymin, xmax, ymax = EXTENT
    return (
        _axis_hits(level, ymin, ymax, downward=True),
        _axis_hits(level, xmin, xmax, downward=False),
    )


def _random_tiles(seed: int) -> dict[tuple[int, int, int], bytes]:
    rng = random.Random(seed)
    tiles: dict[tuple[int, int, int], bytes] = {}
    plan = [
        (2, 0, 0, 4),
        (5, 0, 0, 32),
        (9, 100, 120, 200),
        (17, 65400, 70000, 260),
        (18, 131000, 131300, 300),
    ]
    for level, row0, col0, span in plan:
        n = 2**level
        for _ in range(min(60, span * span)):
            row = min(n - 1, row0 + rng.randrange(span))
            col = min(n - 1, col0 + rng.randrange(span))
            tiles[(level, row, col)] = rng.randbytes(rng.randrange(1, 400))
    return tiles


@pytest.fixture(scope="module", params=[1, 7])
def rebuilt(request, tmp_path_factory):
    tiles = _random_tiles(request.param)
    root = mapproxy_v2_cache(tmp_path_factory.mktemp("mp") / "cache", tiles, extent=EXTENT)
    report = operations.rebuild(root, workers=1, max_missing_rows=MAX_MISSING)
    return tiles, root, report


def test_every_bundle_matches_what_mapproxy_stored(rebuilt):
    tiles, root, report = rebuilt
    by_bundle: dict[tuple[int, int, int], list] = defaultdict(list)
    for (level, row, col), data in tiles.items():
        by_bundle[(level, row - row % 128, col - col % 128)].append((row, col, len(data)))
    rows = task_rows(report.status_path)
    files = {k: v for k, v in rows.items() if v["status"] != "MISSING"}
    assert len(files) == len(by_bundle)
    for (level, brow, bcol), stored in by_bundle.items():
        name = f"L{level:02d}/R{brow:04x}C{bcol:04x}"
        row = files[name]
        exp_rows, exp_cols = _expected(level)
        in_rows = exp_rows[(exp_rows >= brow) & (exp_rows < brow + 128)]
        in_cols = exp_cols[(exp_cols >= bcol) & (exp_cols < bcol + 128)]
        inside = [(r, c) for r, c, _ in stored if r in set(in_rows) and c in set(in_cols)]
        assert row["tilesExpected"] == len(in_rows) * len(in_cols), name
        assert row["tilesPresent"] == len(inside), name
        assert row["tilesStray"] == len(stored) - len(inside), name
        assert row["tileBytes"] == sum(size for _, _, size in stored), name
        bundle_file = root / "_alllayers" / f"L{level:02d}" / f"R{brow:04x}C{bcol:04x}.bundle"
        assert row["fileBytes"] == bundle_file.stat().st_size
        # MapProxy appends each tile after a 4-byte size prefix and never leaves holes.
        assert row["deadBytes"] == 0
        assert row["bundleRow"] == brow and row["bundleCol"] == bcol and row["levelID"] == level
        expected_status = (
            "COMPLETE"
            if len(inside) == len(in_rows) * len(in_cols) and inside
            else "PARTIAL"
            if inside
            else "EMPTY"
        )
        assert row["status"] == expected_status, name


def test_five_digit_bundle_names_are_read(rebuilt):
    _, root, report = rebuilt
    names = {p.name for p in (root / "_alllayers/L18").iterdir()}
    assert any(len(n.split("C")[0]) == 6 for n in names), names  # R + 5 hex digits
    level18 = next(lv for lv in report.levels if lv.level == 18)
    assert level18.bundles == len(names)


def test_level_totals_are_exact_for_every_lod(rebuilt):
    tiles, _, report = rebuilt
    assert [lv.level for lv in report.levels] == list(range(20))
    for lv in report.levels:
        exp_rows, exp_cols = _expected(lv.level)
        assert lv.tiles_expected == len(exp_rows) * len(exp_cols)
        stored = [(r, c) for (level, r, c) in tiles if level == lv.level]
        rows, cols = set(exp_rows.tolist()), set(exp_cols.tolist())
        assert lv.tiles_present == sum(1 for r, c in stored if r in rows and c in cols)
        assert lv.tiles_present + lv.tiles_stray == len(stored)
        assert lv.tile_bytes == sum(
            len(d) for (level, _, _), d in tiles.items() if level == lv.level
        )


def test_missing_rows_cover_absent_bundles_of_built_levels(rebuilt):
    _, _, report = rebuilt
    rows = task_rows(report.status_path)
    missing = {k for k, v in rows.items() if v["status"] == "MISSING"}
    total_missing = 0
    for lv in report.levels:
        exp_rows, exp_cols = _expected(lv.level)
        level_missing = {k for k in missing if k.startswith(f"L{lv.level:02d}/")}
        if lv.bundles == 0:
            assert not level_missing  # never-built levels get totals only
            continue
        n_bundles = len({r // 128 for r in exp_rows}) * len({c // 128 for c in exp_cols})
        level_rows = {k for k in rows if k.startswith(f"L{lv.level:02d}/")}
        files_inside = {k for k in level_rows - level_missing if rows[k]["tilesExpected"] > 0}
        total_missing += n_bundles - len(files_inside)
        if lv.level < 17:  # levels scanned before the cap ran out: every bundle has a row
            assert len(level_missing) == n_bundles - len(files_inside)
    # Levels 17 and 18 expect hundreds of thousands of bundles: the cap holds, totals do not.
    assert len(missing) == MAX_MISSING
    assert f"{total_missing - MAX_MISSING:,} MISSING bundle rows were left out" in " ".join(
        report.warnings
    )
    for name in missing:
        assert rows[name]["tilesPresent"] == 0 and rows[name]["fileBytes"] == 0
        assert rows[name]["tilesExpected"] > 0


def test_store_reads_back_through_gdal(rebuilt):
    _, _, report = rebuilt
    path = report.status_path
    layers = dict(pyogrio.list_layers(path).tolist())
    assert set(layers) == {"TaskStatus", "LevelStatus", "Jobs", "MissingAreas", "BundleFiles"}
    info = pyogrio.read_info(path, layer="TaskStatus")
    assert info["crs"] == "EPSG:3857"
    assert info["geometry_type"] in ("Polygon", "MultiPolygon")
    assert pyogrio.read_info(path, layer="LevelStatus")["features"] == 20


def test_missing_areas_cover_exactly_the_missing_tiles(rebuilt):
    tiles, _, report = rebuilt
    _, _, geometry, values = read(report.status_path, layer="MissingAreas")
    rows = dict(
        zip(values[0].tolist(), zip(values[2].tolist(), geometry, strict=True), strict=True)
    )
    for lv in report.levels:
        missing = lv.tiles_expected - lv.tiles_present
        if missing == 0:
            assert lv.level not in rows
            continue
        count, wkb = rows[lv.level]
        assert count == missing
        tile_area = (256 * RES[lv.level]) ** 2
        area = shapely.from_wkb(wkb)
        assert area.area == pytest.approx(missing * tile_area, rel=1e-9)
        # No stored expected tile lies in the missing area; a tile centre proves it.
        exp_rows, exp_cols = _expected(lv.level)
        rows_set, cols_set = set(exp_rows.tolist()), set(exp_cols.tolist())
        size = 256 * RES[lv.level]
        for level, r, c in tiles:
            if level == lv.level and r in rows_set and c in cols_set:
                x = -WEB_MERCATOR_HALF + (c + 0.5) * size
                y = WEB_MERCATOR_HALF - (r + 0.5) * size
                assert not area.contains(shapely.Point(x, y))
