"""GeoPackages and MBTiles written by other software: NGA's GeoPackage library (bounds in another
CRS than the tile matrix set, bounds that are a point), MapProxy (a CRS whose definition is not
WKT, a gpkg_contents row without its table) and BKG's MBTiles distribution (``02.mbtile``).

The oracle of the real files is tests/data/realworld/README.md: figures computed with the sqlite3
command line and pyproj, never with cachestatus. The families each file stands for are also run
on files made here by independent writers (MapProxy, GDAL through rasterio, the pmtiles package).
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from io import BytesIO
from pathlib import Path

import pytest
from click.testing import CliRunner
from pyogrio import read_info

from cachestatus import formats, operations
from cachestatus.cli import main
from cachestatus.formats.geopackage import resolve_srs
from cachestatus.grid import HALF_WORLD, web_mercator
from cachestatus.models import StatusReport, TileRange
from cachestatus.plan import plan_levels

DATA = Path(__file__).parent / "data" / "realworld"

#: Oracle (README, denver_tile.gpkg): z16, 42 tiles stored, all inside the contents bounds once
#: reprojected into EPSG:3857 (cols 13680-13685 x rows 24888-24894), 1,099,986 tile bytes.
DENVER = {16: (42, 42)}
DENVER_BYTES = 1_099_986
DENVER_BLOCK = TileRange(24888, 24895, 13680, 13686)
#: Oracle (README, 3857.gpkg): z4, a 2 x 6 matrix of 450 px tiles, 12 stored, 12 expected.
IMAGERY = {4: (12, 12)}
IMAGERY_BYTES = 1_003_525
#: Oracle (README, super.gpkg point1_tiles): z17..z21 one tile each, 1 expected a level (the
#: tile holding the point).
POINT1 = {level: (1, 1) for level in range(17, 22)}
#: Oracle (README, super.gpkg geometry2_tiles): stored z14:2 z15:2 z16:3 z17:5 z18:6, 20,244 bytes.
GEOMETRY2_STORED = {14: 2, 15: 2, 16: 3, 17: 5, 18: 6}
GEOMETRY2_BYTES = 20_244
#: Oracle (README, mapproxy_cache.gpkg): z1: 1 tile of 5,398 bytes; tile matrix levels 0-18.
MAPPROXY_STORED = {1: 1}
MAPPROXY_BYTES = 5_398
#: Oracle (README, 02.mbtile): z2: 16 tiles, 1,681,776 bytes, no bounds.
BKG_STORED = {2: 16}
BKG_BYTES = 1_681_776


def _copy(name: str, tmp_path: Path, target: str | None = None) -> Path:
    """A real file copied into ``tmp_path`` (the repository's copy stays as it is)."""
    path = tmp_path / (target or Path(name).name)
    shutil.copyfile(DATA / name, path)
    return path


def _counts(report: StatusReport) -> dict[int, tuple[int, int]]:
    """(expected, present) of each level that expects or holds tiles."""
    return {
        lv.level: (lv.tiles_expected, lv.tiles_present)
        for lv in report.levels
        if lv.tiles_expected or lv.tiles_present or lv.tiles_stray
    }


def _stored(report: StatusReport) -> dict[int, int]:
    return {
        lv.level: lv.tiles_present + lv.tiles_stray
        for lv in report.levels
        if lv.tiles_present + lv.tiles_stray
    }


# --- Item 1: bounds in another CRS than the grid ---------------------------------------------


def test_denver_contents_bounds_in_wgs84_are_put_into_the_grids_crs(tmp_path):
    """Oracle: README, denver_tile.gpkg (z16: 42 stored, 42 expected, 1,099,986 bytes; cols
    13680-13685 x rows 24888-24894)."""
    path = _copy("gpkg/denver_tile.gpkg", tmp_path)
    with formats.open_cache(path) as reader:
        (plan,) = plan_levels(reader)
        assert plan.expected.bounds == DENVER_BLOCK
    report = operations.rebuild(path, tmp_path / "s.gdb", workers=1, sizes=True)
    assert report.format == "geopackage"
    assert _counts(report) == DENVER
    assert report.totals.tiles_stray == 0 and report.totals.tile_bytes == DENVER_BYTES
    assert report.totals.percent_complete == 100.0


def test_3857_gpkg_of_450_px_tiles_is_complete(tmp_path):
    """Oracle: README, 3857.gpkg (z4: 12 stored, 12 expected, 1,003,525 bytes)."""
    path = _copy("gpkg/3857.gpkg", tmp_path)
    result = CliRunner().invoke(
        main, ["rebuild", str(path), "--status", str(tmp_path / "s.gdb"), "--sizes", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert "beyond its tile matrix set" not in result.stderr  # 85.0511 degrees is its edge
    (level,) = json.loads(result.stdout)["levels"]
    assert (level["level"], level["tiles_expected"], level["tiles_present"]) == (4, 12, 12)
    assert level["tiles_stray"] == 0 and level["tile_bytes"] == IMAGERY_BYTES


def test_mbtiles_bounds_are_put_into_web_mercator_as_pyproj_does():
    """MBTiles bounds are WGS 84 by definition; pyproj is the oracle of EPSG:4326 -> 3857, and
    latitudes beyond Web Mercator's square are kept to its edge (85.0511 degrees)."""
    from pyproj import Transformer

    to_3857 = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    for lon, lat in [(-104.8, 39.72), (0.0, 0.0), (179.9, -60.5), (-180.0, 85.0511287798066)]:
        assert web_mercator(lon, lat) == pytest.approx(to_3857.transform(lon, lat), abs=1e-6)
    assert web_mercator(180.0, 90.0) == pytest.approx((HALF_WORLD, HALF_WORLD), abs=1e-6)
    assert web_mercator(-180.0, -89.0) == pytest.approx((-HALF_WORLD, -HALF_WORLD), abs=1e-6)


def _gdal_geopackage(path: Path, crs: str, origin: tuple[float, float], pixel: float) -> Path:
    """A GeoPackage tile pyramid that GDAL (rasterio) writes from a 600 x 400 raster: its
    gpkg_contents bounds are in the raster's CRS."""
    import numpy as np

    rasterio = pytest.importorskip("rasterio")
    from rasterio.shutil import copy as gdal_copy
    from rasterio.transform import from_origin

    tif = path.with_suffix(".tif")
    with rasterio.open(
        tif,
        "w",
        driver="GTiff",
        width=600,
        height=400,
        count=3,
        dtype="uint8",
        crs=crs,
        transform=from_origin(*origin, pixel, pixel),
    ) as dst:
        dst.write(np.full((3, 400, 600), 90, dtype="uint8"))
    gdal_copy(tif, path, driver="GPKG")
    return path


def test_contents_bounds_in_wgs84_over_a_utm_pyramid_cover_every_stored_tile(tmp_path):
    """The family of denver_tile.gpkg on another grid: GDAL writes a UTM pyramid; its contents
    bounds are then rewritten as NGA's library writes them, in WGS 84 (srs_id 4326). Every tile
    GDAL stored lies inside them once they are put into UTM: none stray (0.1.0: all stray)."""
    from pyproj import Transformer

    path = _gdal_geopackage(tmp_path / "utm.gpkg", "EPSG:32633", (500_000.0, 5_300_000.0), 10.0)
    with sqlite3.connect(path) as db:
        (xmin, ymin, xmax, ymax) = db.execute(
            "SELECT min_x, min_y, max_x, max_y FROM gpkg_contents"
        ).fetchone()
        to_wgs84 = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
        west, south, east, north = to_wgs84.transform_bounds(xmin, ymin, xmax, ymax)
        db.execute(
            "INSERT OR IGNORE INTO gpkg_spatial_ref_sys VALUES ('WGS 84', 4326, 'EPSG', 4326, "
            "'undefined', '')"
        )
        db.execute(
            "UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ?, srs_id = 4326",
            (west, south, east, north),
        )
        stored = dict(db.execute("SELECT zoom_level, count(*) FROM utm GROUP BY 1"))
    db.close()
    report = operations.rebuild(path, tmp_path / "s.gdb", workers=1)
    assert _stored(report) == stored
    assert report.totals.tiles_stray == 0
    assert all(lv.tiles_expected >= lv.tiles_present for lv in report.levels)
    with formats.open_cache(path) as reader:
        extent = reader.full_extent
        assert extent is not None  # in UTM metres, holding the raster's own extent
        assert extent.xmin <= xmin + 1e-6 and extent.ymin <= ymin + 1e-6
        assert extent.xmax >= xmax - 1e-6 and extent.ymax >= ymax - 1e-6


def test_contents_bounds_in_a_crs_nobody_knows_are_ignored_with_a_warning(tmp_path, caplog):
    path = _gdal_geopackage(tmp_path / "w.gpkg", "EPSG:3857", (1e6, 6e6), 600.0)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE gpkg_contents SET srs_id = 424242")
    db.close()
    with formats.open_cache(path) as reader:
        assert reader.full_extent is None
    assert "srs_id 424242" in caplog.text and "ignored" in caplog.text


# --- Item 2: a point or a line is not the whole grid -----------------------------------------


def test_super_gpkg_point_bounds_expect_the_tile_holding_the_point(tmp_path):
    """Oracle: README, super.gpkg point1_tiles (z17..z21: 1 stored, 1 expected each; 0.1.0:
    821,465,881,896 expected)."""
    path = _copy("gpkg/super.gpkg", tmp_path)
    report = operations.rebuild(path, tmp_path / "p.gdb", workers=1, table="point1_tiles")
    assert _counts(report) == POINT1
    assert report.totals.tiles_stray == 0


def test_super_gpkg_geometry2_is_read_right(tmp_path):
    """Oracle: README, super.gpkg geometry2_tiles (z14:2 z15:2 z16:3 z17:5 z18:6, 20,244 bytes)."""
    path = _copy("gpkg/super.gpkg", tmp_path)
    report = operations.rebuild(
        path, tmp_path / "g.gdb", workers=1, sizes=True, table="geometry2_tiles"
    )
    assert _stored(report) == GEOMETRY2_STORED
    assert report.totals.tile_bytes == GEOMETRY2_BYTES
    assert report.totals.tiles_stray == 0


def _mbtiles(path: Path, tiles: dict[tuple[int, int, int], bytes], **metadata: str) -> Path:
    """MapProxy's MBTiles cache (tiles keyed zoom, row down, col), with metadata rows added."""
    from mapproxy.cache.mbtiles import MBTilesCache
    from mapproxy.cache.tile import Tile
    from mapproxy.image import ImageResult

    cache = MBTilesCache(str(path))
    for (level, row, col), data in tiles.items():
        tile = Tile((col, (1 << level) - 1 - row, level), ImageResult(BytesIO(data)))
        assert cache.store_tile(tile)
    cache.update_metadata(name="t", format="png")
    cache.cleanup()
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO metadata VALUES (?, ?)", metadata.items())
    db.close()
    return path


@pytest.mark.parametrize(
    ("bounds", "per_level"),
    [
        ("7.1,50.7,7.1,50.7", 1),  # a point (Bonn): the tile holding it
        ("7.1,50.7,7.1,50.7001", 1),  # a north-south line shorter than a tile
        ("-180,50.7,180,50.7", None),  # a line across the world: one row of tiles
    ],
)
def test_mbtiles_bounds_that_are_a_point_or_a_line(tmp_path, bounds, per_level):
    west, south, _, _ = (float(v) for v in bounds.split(","))
    x, y = web_mercator(west, south)
    tiles = {}
    for level in (3, 8, 12):
        side = 2 * HALF_WORLD / 2**level
        tiles[(level, math.floor((HALF_WORLD - y) / side), math.floor((x + HALF_WORLD) / side))] = (
            b"\x89PNG\r\n\x1a\n"
        )
    path = _mbtiles(tmp_path / "p.mbtiles", tiles, bounds=bounds)
    report = operations.rebuild(path, tmp_path / "s.gdb", workers=1)
    for lv in report.levels:
        assert lv.tiles_expected == (per_level or 2**lv.level), lv.level
        assert (lv.tiles_present, lv.tiles_stray) == (1, 0), lv.level


def test_geopackage_contents_that_are_a_line_expect_the_tiles_it_crosses(tmp_path):
    """A line of contents bounds in the grid's CRS: a row of tiles at each level, not the grid."""
    path = _gdal_geopackage(tmp_path / "l.gpkg", "EPSG:3857", (1e6, 6e6), 600.0)
    with sqlite3.connect(path) as db:
        min_x, max_x = db.execute("SELECT min_x, max_x FROM gpkg_contents").fetchone()
        db.execute("UPDATE gpkg_contents SET min_y = 5.9e6, max_y = 5.9e6")
    db.close()
    with formats.open_cache(path) as reader:
        assert reader.full_extent is not None
        assert reader.full_extent.ymin == reader.full_extent.ymax == 5.9e6
        assert (reader.full_extent.xmin, reader.full_extent.xmax) == (min_x, max_x)
        for plan in plan_levels(reader):
            b = plan.expected.bounds
            assert b.row1 - b.row0 == 1 and b.col1 > b.col0, plan.lod.level


# --- Item 3: a CRS that is not WKT -----------------------------------------------------------


def test_mapproxy_gpkg_of_srs_900913_is_rebuilt_with_epsg_3857(tmp_path, caplog):
    """Oracle: README, mapproxy_cache.gpkg (z1: 1 tile of 5,398 bytes, levels 0-18). srs_id
    900913 whose definition is "Added via Mapproxy."; a second gpkg_contents tile row names a
    table the file does not hold."""
    path = _copy("gpkg/mapproxy_cache.gpkg", tmp_path)
    status = tmp_path / "s.gdb"
    result = CliRunner().invoke(
        main, ["rebuild", str(path), "--status", str(status), "--sizes", "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [lv["level"] for lv in doc["levels"]] == list(range(19))
    stored = {lv["level"]: lv["tiles_present"] for lv in doc["levels"] if lv["tiles_present"]}
    assert stored == MAPPROXY_STORED
    assert doc["totals"]["tile_bytes"] == MAPPROXY_BYTES
    assert "no_spatial_ref_sys" in caplog.text  # the row without a table is named, left out
    assert "EPSG" in read_info(status, layer="TaskStatus")["crs"]
    assert read_info(status, layer="TaskStatus")["crs"].endswith("3857")


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ((900913, "epsg", 900913, "Added via Mapproxy."), "EPSG:3857"),
        ((3785, "EPSG", 3785, "Added via Mapproxy."), "EPSG:3857"),
        ((102100, "ESRI", 102100, "undefined"), "EPSG:3857"),
        ((102113, "NONE", 102113, ""), "EPSG:3857"),
        ((25832, "epsg", 25832, "Added via Mapproxy."), "EPSG:25832"),
        ((4326, None, None, None), "EPSG:4326"),  # no row: the srs_id as an EPSG code
        ((7, "ESRI", 54030, ""), "Robinson"),  # another authority pyproj knows
        ((9, "nobody", 1, "Added via Mapproxy."), None),
    ],
)
def test_a_crs_is_resolved_from_what_the_file_says(row, expected):
    found = resolve_srs(*row)
    if expected is None:
        assert found is None
        return
    assert found is not None
    text = found.user_input()
    assert text is not None and expected in text


@pytest.mark.parametrize(
    ("srs", "bbox", "crs"),
    [
        (900913, None, "EPSG:3857"),
        (25832, (280_000, 5_235_000, 921_000, 6_101_000), "EPSG:25832"),
    ],
)
def test_a_mapproxy_gpkg_of_any_grid_is_rebuilt_with_its_crs(tmp_path, srs, bbox, crs):
    """MapProxy writes "Added via Mapproxy." as the definition of every grid but 3857 and 4326:
    the organization's code resolves it, and 900913 is Web Mercator."""
    from mapproxy.cache.geopackage import GeopackageCache
    from mapproxy.cache.tile import Tile
    from mapproxy.grid.tile_grid import tile_grid
    from mapproxy.image import ImageResult

    grid = tile_grid(srs, bbox=bbox, origin="nw")
    cache = GeopackageCache(str(tmp_path / "mp.gpkg"), grid, "tiles")
    for col, row in [(0, 0), (1, 0), (1, 1)]:
        cache.store_tile(Tile((col, row, 2), ImageResult(BytesIO(b"\x89PNG\r\n\x1a\n"))))
    cache.cleanup()
    with sqlite3.connect(tmp_path / "mp.gpkg") as db:
        (definition,) = db.execute(
            "SELECT definition FROM gpkg_spatial_ref_sys WHERE srs_id = ?", (srs,)
        ).fetchone()
    db.close()
    assert "Added via Mapproxy." in definition
    result = CliRunner().invoke(
        main, ["rebuild", str(tmp_path / "mp.gpkg"), "--status", str(tmp_path / "s.gdb")]
    )
    assert result.exit_code == 0, result.output
    assert "coordinate system" not in result.stderr  # no "written without a CRS" warning
    assert read_info(tmp_path / "s.gdb", layer="TaskStatus")["crs"] == crs


# --- Item 6: found by content ----------------------------------------------------------------


def test_bkg_02_mbtile_is_detected_and_read_right(tmp_path):
    """Oracle: README, 02.mbtile (z2: 16 tiles, 1,681,776 bytes, no bounds; no metadata rows,
    only a non-unique index on tile_column, an extra last_modified column)."""
    path = _copy("mbtiles/02.mbtile", tmp_path)
    assert formats.detect(path).name == "mbtiles"
    with formats.open_cache(path) as reader:
        assert reader.full_extent is None
    report = operations.rebuild(path, workers=1, sizes=True)
    assert report.format == "mbtiles"
    assert report.status_path == str(tmp_path / "02.Status.gdb")
    assert _stored(report) == BKG_STORED
    assert report.totals.tile_bytes == BKG_BYTES
    assert report.totals.percent_complete == 100.0  # the whole z2 grid: 16 tiles
