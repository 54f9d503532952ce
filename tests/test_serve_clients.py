"""Real clients of ``cachestatus serve`` running in a subprocess: GDAL (through rasterio) by WMTS
on a custom scheme and by the ArcGIS ``MapServer?f=json`` path on Web Mercator, MapProxy's
``tile`` source on the custom scheme, and a burst of concurrent tile requests. Pixels read back
are compared with the stored tiles decoded by Pillow.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from tests.builders import WORLD
from tests.helpers import WEB_MERCATOR_HALF, mapproxy_v2_cache
from tests.serving import (
    UTM_EXTENT,
    UTM_ORIGIN,
    UTM_RESOLUTIONS,
    burst,
    decoded,
    png_tile,
    serving,
    utm_cache,
    utm_tiles,
)

rasterio = pytest.importorskip("rasterio")


@pytest.fixture(scope="module")
def utm(tmp_path_factory) -> tuple[Path, dict]:
    tiles = utm_tiles()
    return utm_cache(tmp_path_factory.mktemp("utm") / "Utm", tiles), tiles


def assert_tiles_drawn(
    pixels: np.ndarray,
    tiles: dict,
    level: int,
    top_left: tuple[float, float],
    origin: tuple[float, float],
    res: float,
    holes: slice = slice(None),
) -> int:
    """Every tile of ``level`` (and every hole) within a read raster equals the stored tile (or
    is zero in the bands ``holes`` picks: all, or only alpha); how many tiles were compared.
    ``pixels`` is (bands, rows, cols), its top-left corner at map coordinates ``top_left``."""
    bands, height, width = pixels.shape
    x0 = round((top_left[0] - origin[0]) / res)  # the raster's first pixel, in the level's grid
    y0 = round((origin[1] - top_left[1]) / res)
    compared = 0
    for row in range(y0 // 256, (y0 + height - 1) // 256 + 1):
        for col in range(x0 // 256, (x0 + width - 1) // 256 + 1):
            px, py = col * 256 - x0, row * 256 - y0
            window = pixels[:, max(py, 0) : py + 256, max(px, 0) : px + 256]
            data = tiles.get((level, row, col))
            if data is None:
                assert not window[holes].any(), f"hole L{level}/R{row}/C{col} drawn"
                continue
            stored = decoded(data)[:bands, max(-py, 0) :, max(-px, 0) :]
            stored = stored[:, : window.shape[1], : window.shape[2]]
            assert np.array_equal(window, stored), f"L{level}/R{row}/C{col} differs"
            compared += 1
    return compared


def test_gdal_reads_a_custom_scheme_through_wmts(utm, tmp_path):
    cache, tiles = utm
    with (
        serving([str(cache)]) as server,
        rasterio.Env(GDAL_DEFAULT_WMS_CACHE_PATH=str(tmp_path / "gdal-cache")),
    ):
        with rasterio.open("WMTS:" + server.wmts) as ds:
            assert ds.crs.to_epsg() == 25832
            assert ds.res == (UTM_RESOLUTIONS[-1], UTM_RESOLUTIONS[-1])
            assert tuple(ds.bounds) == pytest.approx(UTM_EXTENT)
            assert len(ds.overviews(1)) == len(UTM_RESOLUTIONS) - 1
            pixels = ds.read()
        top_left = (UTM_EXTENT[0], UTM_EXTENT[3])
        compared = assert_tiles_drawn(pixels, tiles, 3, top_left, UTM_ORIGIN, 400.0)
        assert compared == sum(1 for key in tiles if key[0] == 3)
        # A coarser LOD, 2.5 times coarser (not a power of two): GDAL's first overview.
        with rasterio.open("WMTS:" + server.wmts, overview_level=0) as ds:
            assert ds.res == pytest.approx((1000.0, 1000.0))
            assert assert_tiles_drawn(ds.read(), tiles, 2, top_left, UTM_ORIGIN, 1000.0) > 0


def test_gdal_reads_web_mercator_through_the_map_server_json(tmp_path):
    tiles = {
        (0, 0, 0): png_tile(1),
        **{(1, r, c): png_tile(10 + 2 * r + c) for r in (0, 1) for c in (0, 1)},
    }
    tiles.update(
        {(2, r, c): png_tile(100 + 4 * r + c) for r in range(4) for c in range(4) if (r + c) % 3}
    )
    cache = mapproxy_v2_cache(tmp_path / "Mercator", tiles, 20, WORLD)
    origin = (-WEB_MERCATOR_HALF, WEB_MERCATOR_HALF)
    # GDAL's ArcGIS path fails on any 404: a partly built cache is read with --blank-tiles.
    with (
        serving([str(cache), "--blank-tiles"]) as server,
        rasterio.Env(GDAL_DEFAULT_WMS_CACHE_PATH=str(tmp_path / "gdal-cache")),
    ):
        url = "WMS:" + server.map_server + "?f=json"
        with rasterio.open(url) as ds:
            assert ds.crs.to_epsg() == 3857
            assert len(ds.overviews(1)) == 19
        for level in (1, 2):
            # Overview i halves the size i + 1 times; the full size is that of level 19.
            with rasterio.open(url, overview_level=18 - level) as ds:
                assert ds.width == 256 * 2**level
                res = 2 * WEB_MERCATOR_HALF / ds.width
                compared = assert_tiles_drawn(ds.read(), tiles, level, origin, origin, res)
                assert compared == sum(1 for key in tiles if key[0] == level)


def test_a_burst_of_concurrent_tile_requests_gets_the_right_bytes(utm):
    cache, tiles = utm
    rng = random.Random(5)
    keys = [*tiles, (3, 38, 52), (3, 40, 53), (3, 0, 0), (9, 0, 0)]  # and holes, and a non-LOD
    asked = [rng.choice(keys) for _ in range(2000)]
    with serving([str(cache)]) as server:
        map_server = server.map_server.removeprefix(server.base)
        paths = [f"{map_server}/tile/{level}/{row}/{col}" for level, row, col in asked]
        answers = burst(server.base, paths, 32)
    for key, (status, body) in zip(asked, answers, strict=True):
        if key in tiles:
            assert (status, body) == (200, tiles[key]), key
        else:
            assert status == 404, key


def test_mapproxy_reads_a_custom_scheme_through_the_tile_endpoint(utm, tmp_path):
    """MapProxy's ``tile`` source on ``…/MapServer/tile/{z}/{y}/{x}`` with the cache's grid: a
    WMS GetMap at the finest resolution draws the stored tiles and leaves the holes empty."""
    yaml = pytest.importorskip("yaml")
    from wsgiref.util import setup_testing_defaults

    from mapproxy.wsgiapp import make_wsgi_app

    cache, tiles = utm
    ox, oy = UTM_ORIGIN
    span = 256 * UTM_RESOLUTIONS[-1]
    with serving([str(cache)]) as server:
        config = {
            "services": {"wms": {"srs": ["EPSG:25832"], "image_formats": ["image/png"]}},
            "layers": [{"name": "utm", "title": "utm", "sources": ["served"]}],
            "caches": {
                "served": {
                    "grids": ["utm"],
                    "sources": ["tiles"],
                    "disable_storage": True,
                    "format": "image/png",
                }
            },
            "sources": {
                "tiles": {
                    "type": "tile",
                    "url": server.map_server + "/tile/%(z)s/%(y)s/%(x)s",
                    "grid": "utm",
                    "transparent": True,
                    "on_error": {404: {"response": "transparent", "cache": False}},
                }
            },
            "grids": {
                "utm": {
                    "srs": "EPSG:25832",
                    "origin": "nw",
                    "res": list(UTM_RESOLUTIONS),
                    # Anchored at the tiling origin, whole tiles of every level.
                    "bbox": [ox, oy - 50 * span, ox + 60 * span, oy],
                    "tile_size": [256, 256],
                }
            },
            "globals": {"image": {"paletted": False}},
        }
        (tmp_path / "mapproxy.yaml").write_text(yaml.safe_dump(config))
        app = make_wsgi_app(str(tmp_path / "mapproxy.yaml"))
        (col0, col1), (row0, row1) = (53, 57), (38, 44)
        box = (ox + col0 * span, oy - row1 * span, ox + col1 * span, oy - row0 * span)
        environ: dict = {}
        setup_testing_defaults(environ)
        environ["PATH_INFO"] = "/service"
        environ["QUERY_STRING"] = (
            "SERVICE=WMS&REQUEST=GetMap&VERSION=1.1.1&LAYERS=utm&STYLES=&SRS=EPSG:25832"
            f"&BBOX={','.join(map(str, box))}&WIDTH={(col1 - col0) * 256}"
            f"&HEIGHT={(row1 - row0) * 256}&FORMAT=image/png&TRANSPARENT=true"
        )
        answered: list[str] = []
        body = b"".join(app(environ, lambda status, headers, *_: answered.append(status)))
    assert answered == ["200 OK"], body[:300]
    # MapProxy's transparent answer to a 404 is white with alpha 0.
    pixels = decoded(body)
    compared = assert_tiles_drawn(
        pixels, tiles, 3, (box[0], box[3]), UTM_ORIGIN, 400.0, holes=slice(3, 4)
    )
    assert compared == sum(
        1 for (lv, r, c) in tiles if lv == 3 and row0 <= r < row1 and col0 <= c < col1
    )
