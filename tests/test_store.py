"""The status store read back through GDAL: layers, fields, types, CRS, polygons, history."""

from __future__ import annotations

import json
import os

import numpy as np
import pyogrio
import pytest
import shapely
from pyogrio.raw import read

from cachestatus import operations
from cachestatus.errors import StatusNotFound, UsageError
from cachestatus.models import Extent, RowBatch
from cachestatus.store.geometry import rectangles_wkb
from cachestatus.store.schema import (
    BUNDLE_FILES_LAYER,
    JOBS_LAYER,
    LEVEL_STATUS_LAYER,
    MISSING_AREAS_LAYER,
    TASK_STATUS_LAYER,
)
from cachestatus.store.writer import StatusWriter, xy_domain
from tests.helpers import WEB_MERCATOR_HALF, changing_while_read, mapproxy_v2_cache

GDAL_TYPES = {
    "object": "object",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "float64": "float64",
    "datetime64[ms]": "datetime64[ms]",
}


@pytest.mark.parametrize(("fmt", "big_integer"), [("gdb", False), ("gdb", True), ("gpkg", False)])
def test_layers_fields_types_and_crs(sample, fmt, big_integer):
    report = operations.rebuild(sample, store_format=fmt, workers=1, big_integer=big_integer)
    # A geodatabase for every reader holds 64-bit counts as Double, unless Big Integer is asked.
    types = {**GDAL_TYPES, "int64": "float64"} if fmt == "gdb" and not big_integer else GDAL_TYPES
    path = sample / f"Status.{fmt}"
    assert report.status_path == str(path) and path.exists()
    layers = dict(pyogrio.list_layers(str(path)).tolist())
    assert set(layers) == {"TaskStatus", "LevelStatus", "Jobs", "MissingAreas", "BundleFiles"}
    assert layers["TaskStatus"] in ("Polygon", "MultiPolygon")
    assert not layers["BundleFiles"]  # a table without geometry
    for layer, declared in (
        ("TaskStatus", TASK_STATUS_LAYER),
        ("LevelStatus", LEVEL_STATUS_LAYER),
        ("Jobs", JOBS_LAYER),
        ("MissingAreas", MISSING_AREAS_LAYER),
        ("BundleFiles", BUNDLE_FILES_LAYER),
    ):
        info = pyogrio.read_info(str(path), layer=layer)
        assert list(info["fields"]) == [c.name for c in declared.columns]
        assert list(info["dtypes"]) == [types[c.dtype] for c in declared.columns], layer
    assert pyogrio.read_info(str(path), layer="TaskStatus")["crs"] == "EPSG:3857"


@pytest.mark.parametrize(("fmt", "big_integer"), [("gpkg", False), ("gdb", True)])
def test_modified_times_to_the_millisecond_where_the_store_holds_them(sample, fmt, big_integer):
    store = sample.parent / f"s.{fmt}"
    operations.rebuild(sample, store, workers=1, big_integer=big_integer)
    _, _, _, values = read(
        str(store), layer="TaskStatus", read_geometry=False, columns=["bundleName", "modified"]
    )
    stored = dict(zip(values[0].tolist(), values[1], strict=True))["L02/R0000C0000"]
    mtime_ms = os.path.getmtime(sample / "_alllayers/L02/R0000C0000.bundle") * 1000
    assert abs(int(stored.astype("datetime64[ms]").astype(np.int64)) - mtime_ms) <= 1


def test_sample_rows_and_polygons(sample):
    operations.rebuild(sample, workers=1)
    meta, _, geometry, values = read(str(sample / "Status.gdb"), layer="TaskStatus")
    rows = {
        row[0]: dict(zip(meta["fields"], row, strict=True)) for row in zip(*values, strict=True)
    }
    assert set(rows) == {"L00/R0000C0000", "L01/R0000C0000", "L02/R0000C0000"}
    l02 = rows["L02/R0000C0000"]
    assert (l02["tilesExpected"], l02["tilesPresent"], l02["tileBytes"], l02["deadBytes"]) == (
        16,
        16,
        320629,
        136540,
    )
    assert l02["status"] == "COMPLETE" and l02["percentComplete"] == 100.0
    assert l02["fileBytes"] == os.path.getsize(sample / "_alllayers/L02/R0000C0000.bundle")
    mtime_ms = os.path.getmtime(sample / "_alllayers/L02/R0000C0000.bundle") * 1000
    stored_ms = l02["modified"].astype("datetime64[ms]").astype(np.int64)
    # UTC, to the second: the classic Date type every ArcGIS reads (see the next test for ms).
    assert abs(int(stored_ms) - mtime_ms) < 1000 and stored_ms % 1000 == 0
    # At L02 a bundle is 128 x 128 tiles of 9.8e6 m: the polygon is clipped to the 4 x 4 tiles
    # that cover the full extent, i.e. the Web Mercator square, not 1.25e9 m of nothing.
    for polygon in shapely.from_wkb(geometry):
        assert polygon.bounds == pytest.approx(
            (-WEB_MERCATOR_HALF, -WEB_MERCATOR_HALF, WEB_MERCATOR_HALF, WEB_MERCATOR_HALF)
        )
        assert polygon.area == pytest.approx((2 * WEB_MERCATOR_HALF) ** 2)


def test_level_status_has_every_lod_and_jobs_keep_history(sample):
    first = operations.rebuild(sample, workers=1)
    second = operations.rebuild(sample, workers=1)
    status = str(sample / "Status.gdb")
    _, _, _, levels = read(status, layer="LevelStatus")
    assert levels[0].tolist() == list(range(20))
    assert levels[4].tolist()[:4] == [1, 4, 16, 64]  # tilesExpected, arithmetic for level 3
    assert levels[7][19] == 0.0  # percentComplete: expected but none present
    assert set(levels[9].tolist()) == {second.job_id}
    _, _, _, jobs = read(status, layer="Jobs")
    assert jobs[0].tolist() == [first.job_id, second.job_id]
    assert set(jobs[1].tolist()) == {"REBUILD_CACHE_STATUS"}
    params = json.loads(jobs[6][1])
    assert params["workers"] == 1 and params["status"] == status
    assert jobs[8][1] == "succeeded"


def test_null_percent_where_nothing_is_expected(tmp_path):
    # A tile stored outside the full extent: its bundle expects nothing.
    extent = (-WEB_MERCATOR_HALF, 0.0, 0.0, WEB_MERCATOR_HALF)  # the north-west quarter
    root = mapproxy_v2_cache(
        tmp_path / "c", {(8, 200, 200): b"stray tile"}, levels=9, extent=extent
    )
    report = operations.rebuild(root, workers=1)
    meta, _, geometry, values = read(
        report.status_path, layer="TaskStatus", where="bundleName = 'L08/R0080C0080'"
    )
    row = dict(zip(meta["fields"], [v[0] for v in values], strict=True))
    assert row["tilesExpected"] == 0 and row["tilesStray"] == 1 and row["status"] == "EMPTY"
    assert np.isnan(row["percentComplete"])
    # The polygon of a bundle outside the expected area covers its stored tiles.
    assert shapely.from_wkb(geometry[0]).area == pytest.approx((256 * 611.4962262813797) ** 2)


def test_summary_reads_back_without_rescanning(sample):
    built = operations.rebuild(sample, workers=1)
    for bundle in (sample / "_alllayers").rglob("*.bundle"):
        bundle.unlink()  # a rescan would now find nothing
    stored = operations.summary(sample)
    assert [(lv.level, lv.bundles, lv.tiles_present, lv.tile_bytes) for lv in stored.levels] == [
        (lv.level, lv.bundles, lv.tiles_present, lv.tile_bytes) for lv in built.levels
    ]
    assert stored.job_id == built.job_id and stored.mode == "REBUILD_CACHE_STATUS"


def test_summary_without_a_store_is_a_usage_error(sample):
    with pytest.raises(StatusNotFound, match="run `cachestatus rebuild` first"):
        operations.summary(sample)


def test_status_elsewhere_and_bad_suffix(sample, tmp_path):
    target = tmp_path / "elsewhere" / "Mine.gdb"
    operations.rebuild(sample, target, workers=1)
    assert target.exists() and not (sample / "Status.gdb").exists()
    with pytest.raises(UsageError, match=r"must end in \.gdb .* or \.gpkg"):
        operations.rebuild(sample, tmp_path / "status.shp", workers=1)
    with pytest.raises(UsageError, match=r"ends in \.gdb but --format is gpkg"):
        operations.rebuild(sample, target, store_format="gpkg", workers=1)


def test_delete_removes_and_is_idempotent(sample):
    operations.rebuild(sample, workers=1)
    operations.rebuild(sample, store_format="gpkg", workers=1)
    removed = operations.delete(sample)
    assert sorted(p.name for p in removed) == ["Status.gdb", "Status.gpkg"]
    assert operations.delete(sample) == []
    assert not any(p.name.startswith((".Status", "Status")) for p in sample.iterdir())


def test_rectangles_wkb_matches_shapely():
    xmin, ymin = np.array([0.0, -5.5]), np.array([1.0, -7.25])
    xmax, ymax = np.array([2.0, 3.0]), np.array([4.0, 1e7])
    polygons = shapely.from_wkb(rectangles_wkb(xmin, ymin, xmax, ymax))
    for polygon, box in zip(polygons, shapely.box(xmin, ymin, xmax, ymax), strict=True):
        assert polygon.equals(box) and polygon.exterior.is_ccw is False


def test_xy_domain_holds_the_extent_at_gdal_precision():
    world = Extent(-WEB_MERCATOR_HALF, -WEB_MERCATOR_HALF, WEB_MERCATOR_HALF, WEB_MERCATOR_HALF)
    options = xy_domain(world, geographic=False)
    assert float(options["XORIGIN"]) < world.xmin and float(options["YORIGIN"]) < world.ymin
    assert float(options["XYSCALE"]) == 1e4
    huge = Extent(0, 0, 1e13, 1e13)  # coarse levels of an odd scheme
    scale = float(xy_domain(huge, geographic=False)["XYSCALE"])
    assert 3e13 * scale < 2**53
    assert float(xy_domain(Extent(-180, -90, 180, 90), geographic=True)["XYSCALE"]) == 1e9


def test_lock_directory_and_corrupt_rows(sample):
    (sample / "_alllayers/L01/R0000C0000.lock").write_bytes(b"")  # a caching job at work
    (sample / "_alllayers/L02/R0080C0000.bundle").mkdir()  # a directory named like a bundle
    report = operations.rebuild(sample, workers=1)
    meta, _, _, values = read(report.status_path, layer="TaskStatus", read_geometry=False)
    rows = {
        row[0]: dict(zip(meta["fields"], row, strict=True)) for row in zip(*values, strict=True)
    }
    locked = rows["L01/R0000C0000"]
    assert locked["status"] == "IN_PROGRESS" and locked["tilesPresent"] == 4
    assert ".lock" in locked["detail"]
    folder = rows["L02/R0080C0000"]
    assert folder["status"] == "CORRUPT"
    assert folder["detail"] == "not a file: a directory named like a bundle"
    assert folder["tilesExpected"] == 0  # row 128 lies outside the 4 x 4 tiles of level 2
    assert [p.bundle for p in report.problems] == ["L02/R0080C0000"]
    assert rows["L00/R0000C0000"]["status"] == "COMPLETE"  # the scan went on


def test_scattered_missing_tiles_get_an_exact_polygon(tmp_path):
    from tests.helpers import synthetic_bundle, write_conf

    rng = np.random.default_rng(5)
    root = write_conf(tmp_path / "sparse", 10)  # no conf.cdi: the whole grid is expected
    sizes = rng.integers(100, 200, (128, 128))
    lacking = rng.random((128, 128)) < 0.5  # an on-demand cache: tiles here and there
    sizes[lacking] = 0
    synthetic_bundle(root / "_alllayers/L09/R0000C0000.bundle", sizes)
    report = operations.rebuild(root, workers=1)
    assert not any("scattered" in w for w in report.warnings)
    _, _, geometry, values = read(report.status_path, layer="MissingAreas")
    levels, _, counts, exacts = values
    rows = dict(zip(levels.tolist(), zip(geometry, counts, exacts, strict=True), strict=True))
    shape, count, exact = rows[9]
    tile = 2 * WEB_MERCATOR_HALF / 2**9
    expected_missing = 512 * 512 - 128 * 128 + int(lacking.sum())
    assert count == expected_missing and exact == 1
    area = shapely.from_wkb(shape)
    assert area.is_valid
    assert area.area == pytest.approx(expected_missing * tile * tile, rel=1e-9)
    assert 8 in rows  # the other levels still get their polygons


def test_a_bundle_written_while_read_is_in_progress(sample, monkeypatch):
    changing_while_read(monkeypatch, sample / "_alllayers/L02/R0000C0000.bundle")
    report = operations.rebuild(sample, workers=1)
    _, _, _, values = read(
        report.status_path,
        layer="TaskStatus",
        read_geometry=False,
        columns=["bundleName", "status", "detail"],
    )
    rows = {n: (s, d) for n, s, d in zip(*values, strict=True)}
    assert rows["L02/R0000C0000"][0] == "IN_PROGRESS"
    assert "changed while being read" in rows["L02/R0000C0000"][1]
    assert rows["L01/R0000C0000"][0] == "COMPLETE" and report.problems == []


def _png(colour: tuple[int, int, int, int]) -> bytes:
    from io import BytesIO

    from PIL import Image

    out = BytesIO()
    Image.new("RGBA", (256, 256), colour).save(out, "PNG")
    return out.getvalue()


def _rebuild_collecting(monkeypatch, cache, store, blank):
    """Rebuild ``cache`` into ``store``; the rows the scan handed to the store's writer, and the
    missing areas it committed."""
    sent, committed = [], []
    add, commit = StatusWriter.add, StatusWriter.commit

    def collecting(writer, batch):
        sent.append(batch)
        add(writer, batch)

    def committing(writer, levels, jobs, missing_areas):
        committed.extend(missing_areas)
        commit(writer, levels, jobs, missing_areas)

    monkeypatch.setattr(StatusWriter, "add", collecting)
    monkeypatch.setattr(StatusWriter, "commit", committing)
    operations.rebuild(cache, store, workers=1, blank=blank)
    return RowBatch.concat(sent), committed


def _sorted(rows):
    order = np.lexsort((rows.col, rows.row, rows.level))
    return {
        name: [column[i] for i in order] if isinstance(column, list) else column[order]
        for name in RowBatch.COLUMNS
        for column in [getattr(rows, name)]
    }


@pytest.mark.parametrize(("fmt", "blank"), [("gdb", True), ("gpkg", True), ("gdb", False)])
def test_rows_and_missing_areas_read_back_as_the_scan_gave_them(tmp_path, monkeypatch, fmt, blank):
    from cachestatus.formats import open_cache
    from cachestatus.store import read_missing_areas, read_rows

    half = WEB_MERCATOR_HALF
    tiles = {(2, r, c): _png((0, 0, 0, 0)) for r in range(2) for c in range(2)}  # complete
    tiles |= {(8, 5, 7): _png((10, 20, 30, 255)), (8, 200, 200): b"stray tile"}
    tiles |= {(9, 3, 4): _png((0, 0, 0, 0))}  # three bundles of L09 have no file: MISSING
    root = mapproxy_v2_cache(tmp_path / "c", tiles, levels=10, extent=(-half, 0.0, 0.0, half))
    (root / "_alllayers/L09/R0080C0080.bundle").write_bytes(b"not a bundle")  # CORRUPT
    store = tmp_path / f"Status.{fmt}"
    sent, missing_areas = _rebuild_collecting(monkeypatch, root, store, blank)
    assert {"COMPLETE", "PARTIAL", "EMPTY", "MISSING", "CORRUPT"} <= set(sent.state)
    assert (sent.tiles_blank >= 0).any() == blank and np.isnan(sent.mtime).any()

    with open_cache(root) as reader:
        stored = read_rows(store, scheme=reader.scheme)
    got, want = _sorted(stored.rows), _sorted(sent)
    assert len(stored.geometry) == len(sent)
    for name in RowBatch.COLUMNS:
        if name == "mtime":  # to the millisecond, or the second (a FileGDB's classic dates)
            assert np.isnan(got[name]).tolist() == np.isnan(want[name]).tolist()
            known = ~np.isnan(want[name])
            precision = 1.0 if fmt == "gdb" else 0.001
            assert got[name][known] == pytest.approx(want[name][known], abs=precision)
        else:
            assert np.array_equal(got[name], want[name]), name
    without = read_rows(store, where="status = 'CORRUPT'")
    assert without.rows.state == ["CORRUPT"] and (without.rows.tiles == -1).all()
    assert len(without.geometry) == 1

    areas = read_missing_areas(store)
    assert [(a.level, a.scale, a.tiles_missing, a.exact) for a in areas] == [
        (a.level, a.scale, a.tiles_missing, a.exact) for a in missing_areas
    ]
    for area, found in zip(areas, missing_areas, strict=True):
        assert area.geometry.symmetric_difference(found.geometry).area < 1e-6 * found.geometry.area


def test_a_store_written_before_tiles_blank_existed_reads_back(sample, tmp_path):
    import sqlite3

    from cachestatus.store import read_rows, read_status

    store = tmp_path / "Status.gpkg"
    operations.rebuild(sample, store, workers=1, blank=True)
    with sqlite3.connect(store) as db:
        for table in ("TaskStatus", "LevelStatus"):
            db.execute(f"ALTER TABLE {table} DROP COLUMN tilesBlank")
    db.close()
    assert {lv.tiles_blank for lv in read_status(store).levels} == {None}
    rows = read_rows(store).rows
    assert len(rows) == 3 and rows.tiles_blank.tolist() == [-1, -1, -1]
