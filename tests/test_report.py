"""REPORT_BUNDLE_STATUS: levels by scale or ID, an area of interest or an extent, exact counts.

Caches are written by MapProxy; expected tiles are counted by brute force over every tile square
with shapely (intersection area > 0), independently of the quadtree that the report uses.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from click.testing import CliRunner
from pyogrio.raw import read, write

import cachestatus
from cachestatus import operations
from cachestatus.cli import main
from cachestatus.errors import InvalidAOI, OutputExists, ScaleNotInCache
from cachestatus.selection import parse_levels, parse_scales
from tests.helpers import WEB_MERCATOR_HALF, mapproxy_v2_cache, web_mercator_lods

LODS = web_mercator_lods(12)
RES = {lv: res for lv, _, res in LODS}
# An irregular polygon with a hole and a bay, about the size of a country at these levels.
AREA_3857 = shapely.Polygon(
    [(-3.1e6, 1.2e6), (2.9e6, 2.3e6), (3.3e6, -1.7e6), (0.4e6, -0.2e6), (-2.2e6, -2.6e6)],
    holes=[[(-0.5e6, 0.4e6), (0.6e6, 0.5e6), (0.1e6, 1.1e6)]],
)
# A staircase of meridians and parallels: straight in EPSG:4326 and in Web Mercator alike, so the
# brute force needs no reprojection of its own.
STAIRS_4326 = shapely.Polygon([(-20, -10), (15, -10), (15, 5), (30, 5), (30, 25), (-20, 25)])


def tiles_of(area, level: int) -> set[tuple[int, int]]:
    size = 256 * RES[level]
    n = 2**level
    rows, cols = np.mgrid[0:n, 0:n]
    rows, cols = rows.ravel(), cols.ravel()
    boxes = shapely.box(
        -WEB_MERCATOR_HALF + cols * size,
        WEB_MERCATOR_HALF - (rows + 1) * size,
        -WEB_MERCATOR_HALF + (cols + 1) * size,
        WEB_MERCATOR_HALF - rows * size,
    )
    keep = shapely.area(shapely.intersection(area, boxes)) > 0
    return set(zip(rows[keep].tolist(), cols[keep].tolist(), strict=True))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> tuple[Path, dict]:
    rng = random.Random(3)
    tiles = {}
    for level in (6, 9, 10):
        n = 2**level
        for _ in range(250):
            row = rng.randrange(n // 4, 3 * n // 4)
            col = rng.randrange(n // 4, 3 * n // 4)
            tiles[(level, row, col)] = rng.randbytes(rng.randrange(1, 200))
    root = mapproxy_v2_cache(
        tmp_path_factory.mktemp("rep") / "cache",
        tiles,
        levels=12,
        extent=(-WEB_MERCATOR_HALF, -WEB_MERCATOR_HALF, WEB_MERCATOR_HALF, WEB_MERCATOR_HALF),
    )
    return root, tiles


def rows_by_bundle(status: str) -> dict[str, dict]:
    meta, _, _, values = read(status, layer="TaskStatus", read_geometry=False)
    return {
        row[0]: dict(zip(meta["fields"], row, strict=True)) for row in zip(*values, strict=True)
    }


def check_against_brute_force(report, tiles, area, levels):
    rows = rows_by_bundle(report.status_path)
    for level in levels:
        truth = tiles_of(area, level)
        stored = {(r, c) for (lv, r, c) in tiles if lv == level}
        bundles = {(r - r % 128, c - c % 128) for r, c in truth}
        level_rows = {k: v for k, v in rows.items() if v["levelID"] == level}
        # A row for every bundle of the area, and none for bundle files outside it.
        assert all(v["tilesExpected"] > 0 for v in level_rows.values())
        assert len(level_rows) == len(bundles)
        for brow, bcol in bundles:
            name = f"L{level:02d}/R{brow:04x}C{bcol:04x}"
            inside = {(r, c) for r, c in truth if brow <= r < brow + 128 and bcol <= c < bcol + 128}
            here = {(r, c) for r, c in stored if brow <= r < brow + 128 and bcol <= c < bcol + 128}
            row = level_rows[name]
            assert row["tilesExpected"] == len(inside), name
            assert row["tilesPresent"] == len(inside & here), name
            assert row["tilesStray"] == len(here - inside), name
            assert row["status"] == (
                "MISSING"
                if not here
                else "COMPLETE"
                if inside <= here
                else "PARTIAL"
                if inside & here
                else "EMPTY"
            ), name
        summary = next(lv for lv in report.levels if lv.level == level)
        assert summary.tiles_expected == len(truth)
        assert summary.tiles_present == len(truth & stored)


def test_irregular_aoi_in_the_cache_crs(cache, tmp_path):
    root, tiles = cache
    aoi = tmp_path / "area.geojson"
    write(
        str(aoi),
        shapely.to_wkb(np.array([AREA_3857])),
        [],
        [],
        driver="GeoJSON",
        geometry_type="Polygon",
        crs="EPSG:3857",
    )
    report = operations.report(root, tmp_path / "out", levels=[6, 9, 10], aoi=aoi, workers=1)
    assert report.mode == "REPORT_BUNDLE_STATUS" and [lv.level for lv in report.levels] == [
        6,
        9,
        10,
    ]
    check_against_brute_force(report, tiles, AREA_3857, (6, 9, 10))
    assert not (root / "Status.gdb").exists()  # the cache's own status is not touched


def test_aoi_in_epsg_4326_is_reprojected(cache, tmp_path):
    root, tiles = cache
    aoi = tmp_path / "stairs.gpkg"
    write(
        str(aoi),
        shapely.to_wkb(np.array([STAIRS_4326])),
        [],
        [],
        driver="GPKG",
        geometry_type="Polygon",
        crs="EPSG:4326",
        layer="stairs",
    )
    report = operations.report(root, tmp_path / "out", levels=[9, 10], aoi=aoi, workers=1)
    from pyproj import Transformer

    to_3857 = Transformer.from_crs(4326, 3857, always_xy=True)
    area = shapely.transform(
        STAIRS_4326, lambda xy: np.column_stack(to_3857.transform(xy[:, 0], xy[:, 1]))
    )
    check_against_brute_force(report, tiles, area, (9, 10))


def test_curved_edges_stay_curved():
    from cachestatus.aoi import reproject

    diagonal = shapely.Polygon([(-60, 10), (60, 70), (60, 10)])
    projected = reproject(diagonal, "EPSG:4326", "EPSG:3857")
    assert len(shapely.get_coordinates(projected)) > 100  # densified before reprojection
    straight = shapely.Polygon([(-60, 10), (60, 70), (60, 10)])
    from pyproj import Transformer

    t = Transformer.from_crs(4326, 3857, always_xy=True)
    naive = shapely.transform(straight, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
    assert abs(projected.area - naive.area) / naive.area > 0.01  # the curve matters


def test_extent_with_and_without_crs(cache, tmp_path):
    root, _ = cache
    size = 256 * RES[6] * 10
    extent = (-size, -size, size, size)
    plain = operations.report(root, tmp_path / "a", levels=[6], extent=extent, workers=1)
    assert plain.levels[0].tiles_expected == 20 * 20
    lonlat = operations.report(
        root, tmp_path / "b", levels=[6], extent="-10 -10 10 10", extent_crs="EPSG:4326", workers=1
    )
    x = 10 / 360 * 2**6  # tiles per 10 degrees of longitude
    assert lonlat.levels[0].tiles_expected == (2 * int(np.ceil(x))) * (2 * int(np.ceil(x)))


def test_aoi_wins_over_extent_with_a_warning(cache, tmp_path):
    root, _ = cache
    report = operations.report(
        root, tmp_path / "out", levels=[6], aoi=AREA_3857, extent=(0, 0, 1, 1), workers=1
    )
    assert any("area of interest is used" in w for w in report.warnings)
    assert report.levels[0].tiles_expected == len(tiles_of(AREA_3857, 6))


def test_scales_match_within_one_percent(cache, tmp_path):
    root, _ = cache
    scale6 = LODS[6][1]
    report = operations.report(
        root,
        tmp_path / "out",
        scales=f"{scale6 * 1.009};{LODS[9][1]}",
        extent=(-1e6, -1e6, 1e6, 1e6),
        workers=1,
    )
    assert [lv.level for lv in report.levels] == [6, 9]
    with pytest.raises(
        ScaleNotInCache,
        match=r"scale 9429560\.71 is not a scale of this cache.*"
        r"591658710\.91 \(level 0\)",
    ):
        operations.report(root, tmp_path / "x", scales=[scale6 * 1.02])


def test_selection_parsing():
    assert parse_levels("0-3,7, 9-10") == [0, 1, 2, 3, 7, 9, 10]
    assert parse_scales("1000;2000,3000") == [1000.0, 2000.0, 3000.0]
    assert parse_scales([5, "6"]) == [5.0, 6.0]
    with pytest.raises(cachestatus.CacheStatusError, match="'a' is not a level or a range"):
        parse_levels("1,a")
    with pytest.raises(cachestatus.CacheStatusError, match="not a number"):
        parse_scales("big")


def test_output_is_kept_unless_overwrite(cache, tmp_path):
    root, _ = cache
    operations.report(root, tmp_path / "out", levels=[6], workers=1)
    with pytest.raises(OutputExists, match="add --overwrite"):
        operations.report(root, tmp_path / "out", levels=[6], workers=1)
    operations.report(root, tmp_path / "out", levels=[6], overwrite=True, workers=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--levels", "1-x"], "'1-x' is not a level or a range"),
        (["--levels", "30"], "level 30 is not a level of this cache"),
        (["--scales", "12345"], "scale 12345.00 is not a scale of this cache"),
        (["--aoi", "{tmp}/none.geojson"], "none.geojson: no such file"),
        (["--aoi", "{points}"], "holds Point, not polygons"),
        (["--extent", "5,5,1,1"], "has no area"),
        (["--extent", "1,2,3"], "give four numbers"),
        (["--extent", "3e7,3e7,4e7,4e7"], "misses the cache's tiling grid"),
        (["--extent", "0,0,1,1", "--extent-crs", "EPSG:999999"], "unknown CRS"),
    ],
)
def test_bad_report_input_exits_2(cache, tmp_path, args, message):
    root, _ = cache
    points = tmp_path / "points.geojson"
    write(
        str(points),
        shapely.to_wkb(np.array([shapely.Point(0, 0)])),
        [],
        [],
        driver="GeoJSON",
        geometry_type="Point",
        crs="EPSG:3857",
    )
    args = [a.format(tmp=tmp_path, points=points) for a in args]
    result = CliRunner().invoke(main, ["report", str(root), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr.replace("\n", " ")
    assert "Traceback" not in result.stderr


def test_aoi_without_crs_is_taken_as_the_caches(cache, tmp_path):
    root, _ = cache
    aoi = tmp_path / "nocrs.shp"  # a shapefile without .prj: no CRS at all
    with pytest.warns(UserWarning, match="'crs' was not provided"):
        write(
            str(aoi),
            shapely.to_wkb(np.array([AREA_3857])),
            [],
            [],
            driver="ESRI Shapefile",
            geometry_type="Polygon",
        )
    assert pyogrio.read_info(str(aoi))["crs"] is None
    report = operations.report(root, tmp_path / "out", levels=[6], aoi=aoi, workers=1)
    assert any("has no CRS; it is taken to be the cache's" in w for w in report.warnings)
    assert report.levels[0].tiles_expected == len(tiles_of(AREA_3857, 6))


def test_cli_report_json(cache, tmp_path):
    root, _ = cache
    result = CliRunner().invoke(
        main,
        [
            "report",
            str(root),
            "--out",
            str(tmp_path / "o"),
            "--levels",
            "6",
            "--extent",
            "-1e6,-1e6,1e6,1e6",
            "--json",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["mode"] == "REPORT_BUNDLE_STATUS"
    assert doc["status_path"] == str(tmp_path / "o" / "Status.gdb")
    assert [lv["level"] for lv in doc["levels"]] == [6]


@pytest.mark.parametrize("order", ["pro", "10x"])
def test_arcpy_call_in_both_orders(cache, tmp_path, order):
    root, _ = cache
    scales = f"{LODS[6][1]};{LODS[9][1]}"
    if order == "pro":
        result = cachestatus.ManageMapServerCacheStatus(
            input_service=str(root),
            manage_mode="REPORT_BUNDLE_STATUS",
            scales=scales,
            num_of_caching_service_instances=1,
            report_folder=str(tmp_path / "pro"),
            area_of_interest=AREA_3857,
        )
    else:
        result = cachestatus.ManageMapServerCacheStatus(
            report_extent="-3100000 -2600000 3300000 2300000",
            area_of_interest="#",
            report_folder=str(tmp_path / "10x"),
            num_of_caching_service_instances="1",
            scales=[LODS[6][1], LODS[9][1]],
            manage_mode="REPORT_BUNDLE_STATUS",
            input_service=str(root),
        )
    assert result.status == 4
    assert result.getOutput(0) == str(tmp_path / order / "Status.gdb")
    assert [lv.level for lv in result.report.levels] == [6, 9]


def test_shapely_aoi_must_be_polygonal(cache, tmp_path):
    root, _ = cache
    with pytest.raises(InvalidAOI, match="holds LineString, not polygons"):
        operations.report(
            root, tmp_path / "out", levels=[6], aoi=shapely.LineString([(0, 0), (1e6, 1e6)])
        )


def test_report_missing_areas_are_the_missing_tiles(cache, tmp_path):
    root, tiles = cache
    report = operations.report(root, tmp_path / "out", levels=[6, 9], aoi=AREA_3857, workers=1)
    _, _, geometry, values = read(report.status_path, layer="MissingAreas")
    areas = dict(zip(values[0].tolist(), geometry, strict=True))
    for level in (6, 9):
        truth = tiles_of(AREA_3857, level)
        stored = {(r, c) for (lv, r, c) in tiles if lv == level}
        missing = truth - stored
        area = shapely.from_wkb(areas[level])
        assert area.area == pytest.approx(len(missing) * (256 * RES[level]) ** 2, rel=1e-9)


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".shp"])
def test_missing_command_exports_polygons_and_tiles(cache, tmp_path, suffix):
    root, tiles = cache
    out = tmp_path / f"todo{suffix}"
    listing = tmp_path / "todo.txt"
    result = CliRunner().invoke(
        main,
        [
            "missing",
            str(root),
            "--levels",
            "6",
            "--aoi-layer",
            "x",
            "--extent",
            "-1e7,-1e7,1e7,1e7",
            "--out",
            str(out),
            "--tiles",
            str(listing),
            "--workers",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    area = shapely.box(-1e7, -1e7, 1e7, 1e7)
    truth = tiles_of(area, 6) - {(r, c) for (lv, r, c) in tiles if lv == 6}
    assert doc["levels"] == [
        {"level": 6, "scale": LODS[6][1], "tiles_missing": len(truth), "exact": True}
    ]
    _, _, geometry, values = read(str(out))  # read back through GDAL
    assert values[0].tolist() == [6] and values[2].tolist() == [len(truth)]
    assert values[3].tolist() == [1]  # the polygon is exactly the missing tiles
    assert pyogrio.read_info(str(out))["crs"] == "EPSG:3857"
    polygon = shapely.from_wkb(geometry[0])
    assert polygon.area == pytest.approx(len(truth) * (256 * RES[6]) ** 2, rel=1e-9)
    listed = {tuple(map(int, line.split("/"))) for line in listing.read_text().splitlines()}
    assert listed == {(6, c, r) for r, c in truth}  # z/x/y: x is the column, y the row
    again = CliRunner().invoke(main, ["missing", str(root), "--levels", "6", "--out", str(out)])
    assert again.exit_code == 2 and "add --overwrite" in again.stderr


def test_aoi_from_a_filegdb_feature_class_and_gpkg_output(cache, tmp_path):
    root, _ = cache
    gdb = tmp_path / "areas.gdb"
    for layer, polygon in (("other", shapely.box(0, 0, 1, 1)), ("county", AREA_3857)):
        write(
            str(gdb),
            shapely.to_wkb(np.array([polygon])),
            [],
            [],
            layer=layer,
            driver="OpenFileGDB",
            geometry_type="Polygon",
            crs="EPSG:3857",
        )
    by_path = operations.report(
        root, tmp_path / "a", levels=[6], aoi=gdb / "county", store_format="gpkg", workers=1
    )
    assert by_path.status_path == str(tmp_path / "a" / "Status.gpkg")
    assert by_path.levels[0].tiles_expected == len(tiles_of(AREA_3857, 6))
    by_option = operations.report(
        root, tmp_path / "b", levels=[6], aoi=gdb, aoi_layer="county", workers=1
    )
    assert by_option.levels == by_path.levels
    layers = dict(pyogrio.list_layers(by_path.status_path).tolist())
    assert set(layers) == {"TaskStatus", "LevelStatus", "Jobs", "MissingAreas"}


def test_empty_aoi_is_refused(cache, tmp_path):
    root, _ = cache
    aoi = tmp_path / "empty.gpkg"
    write(
        str(aoi),
        np.array([None], dtype=object),
        [np.array([1])],
        ["id"],
        driver="GPKG",
        geometry_type="Polygon",
        crs="EPSG:3857",
    )
    result = CliRunner().invoke(
        main, ["report", str(root), "--out", str(tmp_path / "o"), "--aoi", str(aoi)]
    )
    assert result.exit_code == 2
    assert "empty.gpkg: its features have no geometry (empty)" in result.stderr
    with pytest.raises(InvalidAOI, match="area_of_interest: the geometry is empty"):
        operations.report(root, tmp_path / "o", aoi=shapely.Polygon())


def test_report_leaves_the_cache_untouched(cache, tmp_path):
    root, _ = cache
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*")}
    operations.report(root, tmp_path / "out", levels=[9], aoi=AREA_3857, workers=1)
    after = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*")}
    assert after == before
