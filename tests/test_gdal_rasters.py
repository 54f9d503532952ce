"""MBTiles and GeoPackage tiles written by GDAL (rasterio) from a raster, read as written."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from cachestatus import formats, operations

rasterio = pytest.importorskip("rasterio")
from rasterio.shutil import copy as gdal_copy  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402


@pytest.fixture(scope="module")
def raster(tmp_path_factory):
    path = tmp_path_factory.mktemp("gdal") / "image.tif"
    data = (np.random.default_rng(0).random((3, 512, 512)) * 255).astype("uint8")
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=512,
        height=512,
        count=3,
        dtype="uint8",
        crs="EPSG:3857",
        transform=from_origin(1e6, 6e6, 600, 600),
    ) as dst:
        dst.write(data)
    return path


def test_gdal_mbtiles(raster, tmp_path):
    target = tmp_path / "image.mbtiles"
    gdal_copy(raster, target, driver="MBTiles")
    with sqlite3.connect(target) as db:
        written = dict(db.execute("SELECT zoom_level, count(*) FROM tiles GROUP BY 1"))
        meta = dict(db.execute("SELECT name, value FROM metadata"))
    report = operations.rebuild(target, tmp_path / "s.gdb", workers=1, sizes=True)
    assert [lv.level for lv in report.levels] == sorted(written)
    for lv in report.levels:
        # GDAL writes every tile of the raster's bounds at its zoom: complete, nothing stray.
        assert lv.tiles_present == written[lv.level] and lv.tiles_stray == 0
        assert lv.percent_complete == 100.0
    assert meta["bounds"]  # GDAL records the raster's bounds in WGS 84...
    with formats.open_cache(target) as reader:
        # ...which, back in Web Mercator, are the raster's own extent, to one pixel of the zoom
        # GDAL resampled it to (611 m at zoom 8).
        expected = (1e6, 6e6 - 512 * 600, 1e6 + 512 * 600, 6e6)
        assert reader.full_extent == pytest.approx(expected, abs=612)


def test_gdal_geopackage_with_its_own_tile_matrix_set(raster, tmp_path):
    target = tmp_path / "image.gpkg"
    gdal_copy(raster, target, driver="GPKG")
    with rasterio.open(target) as src:
        overviews = src.overviews(1)
        width, height = src.width, src.height
    with formats.open_cache(target) as reader:
        scheme = reader.scheme
        assert (scheme.origin_x, scheme.origin_y) == (1e6, 6e6)  # the raster's own corner
        finest = scheme.lods[-1]
        assert finest.resolution == 600.0
    report = operations.rebuild(target, tmp_path / "g.gdb", workers=1, sizes=True)
    levels = {lv.level: lv for lv in report.levels}
    full = levels[finest.level]
    tiles = -(-width // 256) * -(-height // 256)
    assert (full.tiles_expected, full.tiles_present) == (tiles, tiles)
    # Coarser matrices hold tiles only where GDAL built overviews: here it built none.
    assert overviews == []
    assert all(lv.tiles_present == 0 for lv in report.levels if lv.level != finest.level)
