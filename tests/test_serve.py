"""``cachestatus serve``: its ArcGIS REST and WMTS documents, tiles and tilemaps for every format,
its refusals (malformed numbers, paths outside the cache), damage, and the command itself.

Documents are checked against the scheme the reader reports and against ArcGIS's own figures
(the Web Mercator level-0 scale denominator of ``default028mm``, the OGC well-known scale set);
tiles and tilemaps against the bytes the independent writers were given (tests/builders.py).
"""

from __future__ import annotations

import http.client
import io
import json
import math
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from cachestatus import formats, open_cache, operations
from cachestatus.formats.base import CacheReader
from cachestatus.serve.app import App
from cachestatus.serve.server import Server
from cachestatus.serve.service import describe
from tests.builders import WORLD, build
from tests.helpers import SAMPLE_CACHE, conf_xml, mapproxy_v2_cache, web_mercator_lods
from tests.serving import UTM_EXTENT, UTM_ORIGIN, UTM_RESOLUTIONS, png_tile, serving, utm_cache
from tests.serving import utm_tiles as make_utm_tiles
from tests.status_rows import task_rows

WMTS = "{http://www.opengis.net/wmts/1.0}"
OWS = "{http://www.opengis.net/ows/1.1}"
LEVEL = 8  # 256 x 256 tiles in Web Mercator: bundle edges at 128, the grid's edge at 256


class Reply:
    """A server's answer: status, headers (names in lower case), body."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {name.lower(): value for name, value in response.getheaders()}
        self.body = response.read()

    def json(self) -> dict:
        return json.loads(self.body)


def fetch(url: str, method: str = "GET", **headers: str) -> Reply:
    """One request of ``url``, sent as written (no normalisation of ``..``)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target, headers=headers)
        return Reply(connection.getresponse())
    finally:
        connection.close()


@contextmanager
def served(
    path: Path,
    app_options: dict | None = None,
    server_options: dict | None = None,
    host: str = "127.0.0.1",
    **opening: str,
) -> Iterator[tuple[str, CacheReader]]:
    """The cache served in this process on a free port of ``host``: its ``.../MapServer`` URL
    and reader; ``app_options`` and ``server_options`` are further arguments of :class:`App`
    and :class:`Server`."""
    with open_cache(path, **opening) as reader:
        service = describe(reader)
        app = App(reader, service, **(app_options or {}))
        options = {"access_log": None, **(server_options or {})}
        server = Server(app, host, 0, **options)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"{server.base_url}/arcgis/rest/services/{service.name}/MapServer", reader
        finally:
            server.shutdown()
            server.server_close()


def jpeg_tile(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (seed % 256, 80, 160)).save(out, format="JPEG")
    return out.getvalue()


def webp_tile(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (16, 16), (seed % 256, 10, 20, 255)).save(out, format="WEBP")
    return out.getvalue()


@pytest.fixture(scope="module")
def edge_tiles() -> dict[tuple[int, int, int], bytes]:
    """Tiles of level 8 around the bundle edges at 128 and along the grid's edge at 255, in
    three kinds (PNG, JPEG, WebP), and a coarse tile."""
    rng = random.Random(14)
    kinds = (lambda s: png_tile(s, 16), jpeg_tile, webp_tile)
    out = {}
    for row in (*range(124, 133), 250, 255):
        for col in (*range(124, 133), 251, 255):
            if rng.random() < 0.6:
                out[(LEVEL, row, col)] = kinds[(row + col) % 3](row * 1000 + col)
    out[(2, 1, 2)] = png_tile(7, 16)
    return out


@pytest.fixture(scope="module")
def utm(tmp_path_factory) -> tuple[Path, dict]:
    tiles = make_utm_tiles()
    return utm_cache(tmp_path_factory.mktemp("utm") / "Utm_Cache", tiles), tiles


# --- Documents ------------------------------------------------------------------------------


def test_root_json_has_every_lod_and_the_spatial_reference():
    with served(SAMPLE_CACHE, {"jsonp": True}) as (url, reader):
        root = fetch(url + "?f=json").json()
        lods = reader.scheme.lods
        assert [lod["level"] for lod in root["tileInfo"]["lods"]] == [lod.level for lod in lods]
        assert [lod["resolution"] for lod in root["tileInfo"]["lods"]] == [
            lod.resolution for lod in lods
        ]
        assert [lod["scale"] for lod in root["tileInfo"]["lods"]] == [lod.scale for lod in lods]
        assert root["tileInfo"]["origin"] == {
            "x": reader.scheme.origin_x,
            "y": reader.scheme.origin_y,
        }
        assert root["tileInfo"]["rows"] == root["tileInfo"]["cols"] == 256
        assert root["tileInfo"]["format"] == "JPEG"
        assert root["spatialReference"]["latestWkid"] == 3857
        assert root["singleFusedMapCache"] is True
        assert root["capabilities"] == "Map,TilesOnly,Tilemap"
        assert root["currentVersion"] >= 10.2
        assert (root["minLOD"], root["maxLOD"]) == (lods[0].level, lods[-1].level)
        assert (root["minScale"], root["maxScale"]) == (lods[0].scale, lods[-1].scale)
        declared = list(reader.full_extent)
        full = root["fullExtent"]
        assert [full[k] for k in ("xmin", "ymin", "xmax", "ymax")] == declared
        assert root["initialExtent"] == full
        assert root["layers"][0]["id"] == 0

        # What clients send: a trailing slash, GDAL's pretty=true, JSONP, pjson.
        assert fetch(url + "/?f=json&pretty=true").json() == root
        pretty = fetch(url + "?f=pjson")
        assert pretty.body.startswith(b"{\n  ") and json.loads(pretty.body) == root
        jsonp = fetch(url + "?f=json&callback=dojo.io.script.jsonp_0")
        assert jsonp.body.startswith(b"dojo.io.script.jsonp_0(") and jsonp.body.endswith(b");")
        assert json.loads(jsonp.body[len(b"dojo.io.script.jsonp_0(") : -2]) == root
        assert fetch(url + "?f=json&callback=alert(1)").status == 400

        layer = fetch(url + "/0?f=json").json()
        assert layer["id"] == 0 and layer["extent"] == full
        assert fetch(url + "/layers?f=json").json()["layers"] == [layer]
        assert fetch(url + "/legend?f=json").json() == {"layers": []}
        base = url.split("/arcgis/")[0]
        assert fetch(base + "/arcgis/rest/info?f=json").json()["currentVersion"] >= 10.2
        services = fetch(base + "/arcgis/rest/services?f=json").json()["services"]
        assert services == [{"name": "sample_cache", "type": "MapServer"}]


def test_a_wkt_only_reference_is_given_as_wkt(tmp_path):
    from pyproj import CRS

    wkt = CRS.from_epsg(25832).to_wkt("WKT1_ESRI")
    cache = mapproxy_v2_cache(tmp_path / "c", {(0, 0, 0): png_tile(1, 16)}, levels=3)
    lods = [(lv, res / 0.0254 * 96, res) for lv, res in enumerate(UTM_RESOLUTIONS[:3])]
    (cache / "conf.xml").write_text(
        conf_xml(lods, origin=UTM_ORIGIN, wkid=None, latest_wkid=None, wkt=wkt)
    )
    with served(cache) as (url, _):
        root = fetch(url + "?f=json").json()
        assert root["spatialReference"] == {"wkt": wkt}
        assert root["tileInfo"]["spatialReference"] == {"wkt": wkt}
        capabilities = ET.fromstring(fetch(url + "/WMTS/1.0.0/WMTSCapabilities.xml").body)
        crs = capabilities.find(f"{WMTS}Contents/{WMTS}TileMatrixSet/{OWS}SupportedCRS")
        assert crs is not None and crs.text == "urn:ogc:def:crs:EPSG::25832"


def _matrix_sets(document: bytes) -> dict[str, list[dict[str, str]]]:
    root = ET.fromstring(document)
    sets = {}
    for matrix_set in root.iter(f"{WMTS}TileMatrixSet"):
        identifier = matrix_set.find(f"{OWS}Identifier")
        if identifier is None:
            continue  # a layer's link to a set
        sets[identifier.text] = [
            {child.tag.split("}")[1]: child.text for child in matrix}
            for matrix in matrix_set.findall(f"{WMTS}TileMatrix")
        ]
    return sets


def test_wmts_capabilities_of_a_custom_scheme(utm):
    cache, _ = utm
    with served(cache, host="0.0.0.0") as (url, _):  # any Host answered (behind a proxy)
        reply = fetch(url + "/WMTS/1.0.0/WMTSCapabilities.xml")
        assert reply.status == 200 and reply.headers["content-type"].startswith("application/xml")
        assert fetch(url + "/WMTS?SERVICE=WMTS&REQUEST=GetCapabilities").body == reply.body
        sets = _matrix_sets(reply.body)
        assert list(sets) == ["default028mm"]  # not Web Mercator: no GoogleMapsCompatible
        matrices = sets["default028mm"]
        assert [m["Identifier"] for m in matrices] == ["0", "1", "2", "3"]
        xmin, ymin, xmax, _ = UTM_EXTENT
        for matrix, res in zip(matrices, UTM_RESOLUTIONS, strict=True):
            assert float(matrix["ScaleDenominator"]) == pytest.approx(res / 0.00028, rel=1e-12)
            assert [float(v) for v in matrix["TopLeftCorner"].split()] == list(UTM_ORIGIN)
            assert (matrix["TileWidth"], matrix["TileHeight"]) == ("256", "256")
            span = 256 * res
            assert int(matrix["MatrixWidth"]) == math.ceil((xmax - UTM_ORIGIN[0]) / span)
            assert int(matrix["MatrixHeight"]) == math.ceil((UTM_ORIGIN[1] - ymin) / span)
        root = ET.fromstring(reply.body)
        layer = root.find(f"{WMTS}Contents/{WMTS}Layer")
        assert layer is not None and layer.findtext(f"{OWS}Identifier") == "Utm_Cache"
        box = layer.find(f"{OWS}BoundingBox")
        assert box is not None and box.get("crs") == "urn:ogc:def:crs:EPSG::25832"
        assert box.findtext(f"{OWS}LowerCorner") == f"{xmin!r} {ymin!r}"
        template = layer.find(f"{WMTS}ResourceURL")
        assert template is not None and template.get("template", "").startswith(url + "/WMTS/")
        # URLs name the host the client asked for; a Host header that is not one is not echoed.
        path = urlsplit(url).path
        proxied = fetch(url + "/WMTS/1.0.0/WMTSCapabilities.xml", Host="tiles.example:81").body
        assert f'template="http://tiles.example:81{path}/WMTS/tile/'.encode() in proxied
        hostile = fetch(url + "/WMTS/1.0.0/WMTSCapabilities.xml", Host='x"><a b="').body
        assert b"<a b" not in hostile and ET.fromstring(hostile) is not None


def test_wmts_capabilities_of_web_mercator():
    with served(SAMPLE_CACHE) as (url, reader):
        sets = _matrix_sets(fetch(url + "/WMTS/1.0.0/WMTSCapabilities.xml").body)
        assert list(sets) == ["default028mm", "GoogleMapsCompatible"]
        own = sets["default028mm"]
        assert [m["Identifier"] for m in own] == [str(lv) for lv in reader.scheme.levels]
        # ArcGIS Server's figure for level 0 of its Web Mercator default028mm set.
        assert float(own[0]["ScaleDenominator"]) == pytest.approx(5.59082264028501e8, rel=1e-9)
        assert own[0]["MatrixWidth"] == own[0]["MatrixHeight"] == "1"
        google = sets["GoogleMapsCompatible"]
        for zoom, matrix in enumerate(google):
            assert matrix["Identifier"] == str(zoom)
            # OGC WMTS 1.0.0 annex E.4: 559082264.0287178 at zoom 0, halving per zoom.
            assert float(matrix["ScaleDenominator"]) == pytest.approx(559082264.0287178 / 2**zoom)
            assert matrix["MatrixWidth"] == matrix["MatrixHeight"] == str(2**zoom)


# --- Tiles and tilemaps, for every format ----------------------------------------------------


@pytest.mark.parametrize("kind", formats.names())
def test_tiles_and_tilemaps_of_every_format(kind, edge_tiles, tmp_path):
    removed = [(LEVEL, 131, 131)] if (LEVEL, 131, 131) not in edge_tiles else []
    built = build(kind, tmp_path, edge_tiles, levels=15, removed=removed)
    with served(built.path, **built.opening) as (url, reader):
        media = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"RIFF": "image/webp"}
        for (level, row, col), data in edge_tiles.items():
            reply = fetch(f"{url}/tile/{level}/{row}/{col}")
            assert reply.status == 200, (level, row, col, reply.body)
            assert reply.body == data == reader.read_tile(level, row, col)
            assert reply.headers["content-type"] == next(
                m for sig, m in media.items() if data.startswith(sig)
            )
        for row, col in [(124, 125), (131, 131), (0, 0), (256, 3), (3, 256), (10**9, 0)]:
            if (LEVEL, row, col) not in edge_tiles:
                assert fetch(f"{url}/tile/{LEVEL}/{row}/{col}").status == 404
        assert fetch(f"{url}/tile/99/0/0").status == 404  # not a level of the cache

        # HEAD: the GET's headers, no body; the ETag answers a repeated request with 304.
        key, data = next(iter(edge_tiles.items()))
        tile_url = f"{url}/tile/{key[0]}/{key[1]}/{key[2]}"
        head = fetch(tile_url, "HEAD")
        assert head.status == 200 and head.body == b""
        assert head.headers["content-length"] == str(len(data))
        assert head.headers["etag"] and "max-age" in head.headers["cache-control"]
        again = fetch(tile_url, **{"If-None-Match": head.headers["etag"]})
        assert again.status == 304 and again.body == b""

        # Windows across bundle edges and past the grid's edge, and a non-LOD level.
        for row, col, width, height in [(120, 122, 12, 11), (250, 249, 10, 9), (0, 0, 1, 1)]:
            reply = fetch(f"{url}/tilemap/{LEVEL}/{row}/{col}/{width}/{height}?f=json").json()
            assert reply["location"] == {"left": col, "top": row, "width": width, "height": height}
            assert reply["adjusted"] is False
            expected = [
                int((LEVEL, r, c) in edge_tiles)
                for r in range(row, row + height)
                for c in range(col, col + width)
            ]
            assert reply["data"] == expected
            window = reader.presence(LEVEL, row, col, height, width)
            assert reply["data"] == window.astype(int).ravel().tolist()
        big = fetch(f"{url}/tilemap/{LEVEL}/0/0/300/257").json()
        assert big["adjusted"] is True
        assert big["location"] == {"left": 0, "top": 0, "width": 256, "height": 256}
        assert len(big["data"]) == 256 * 256
        assert sum(big["data"]) == sum(1 for k in edge_tiles if k[0] == LEVEL)
        assert fetch(f"{url}/tilemap/99/0/0/32/32").status == 422


def test_xyz_and_wmts_tiles_are_the_stored_tiles(utm):
    cache, tiles = utm
    with served(cache) as (url, _):
        base = url.split("/arcgis/")[0]
        name = "Utm_Cache"
        for (level, row, col), data in list(tiles.items())[::7]:
            rest = f"{url}/WMTS/tile/1.0.0/{name}/default/default028mm/{level}/{row}/{col}"
            kvp = (
                f"{url}/WMTS?service=WMTS&request=GetTile&version=1.0.0&layer={name}"
                f"&style=default&format=image/png&TileMatrixSet=default028mm"
                f"&TileMatrix={level}&TileRow={row}&TileCol={col}"
            )
            for tile_url in (rest, rest + ".png", kvp, f"{base}/xyz/{level}/{col}/{row}"):
                reply = fetch(tile_url)
                assert (reply.status, reply.body) == (200, data), tile_url
        hole = next(
            (3, r, c) for r in range(37, 47) for c in range(52, 59) if (3, r, c) not in tiles
        )
        assert fetch(f"{base}/xyz/3/{hole[2]}/{hole[1]}").status == 404
        assert fetch(f"{base}/xyz/4/0/0").status == 404  # no fifth LOD
        other_layer = f"{url}/WMTS/tile/1.0.0/Other/default/default028mm/3/40/55"
        assert fetch(other_layer).status == 404


def test_google_maps_compatible_tiles_map_zooms_to_levels():
    with served(SAMPLE_CACHE) as (url, reader):
        stored = reader.read_tile(1, 0, 1)
        assert stored is not None
        reply = fetch(f"{url}/WMTS/tile/1.0.0/sample_cache/default/GoogleMapsCompatible/1/0/1")
        assert (reply.status, reply.body) == (200, stored)


def test_xyz_and_tilejson_use_web_mercator_zooms_where_levels_are_zooms(tmp_path, utm):
    """A Compact cache whose LODs 0-3 are Web Mercator zooms 2-5: ``/xyz/{z}`` takes the zoom
    (as GoogleMapsCompatible does), ``/tiles.json`` names the zooms; LOD indexes stay for
    other grids (test_xyz_and_wmts_tiles_are_the_stored_tiles)."""
    tiles = {(0, 1, 2): png_tile(1, 16), (2, 9, 20): png_tile(2, 16), (3, 30, 7): png_tile(3, 16)}
    cache = mapproxy_v2_cache(tmp_path / "From_Zoom_2", tiles, levels=4, extent=WORLD)
    lods = [(i, scale, res) for i, (_, scale, res) in enumerate(web_mercator_lods(6)[2:])]
    (cache / "conf.xml").write_text(conf_xml(lods))
    with served(cache) as (url, _):
        base = url.split("/arcgis/")[0]
        for (level, row, col), data in tiles.items():
            zoom = level + 2
            for tile_url in (
                f"{base}/xyz/{zoom}/{col}/{row}",
                f"{base}/xyz/{zoom}/{col}/{row}.png",
                f"{url}/WMTS/tile/1.0.0/From_Zoom_2/default/GoogleMapsCompatible/{zoom}/{row}/{col}",
            ):
                reply = fetch(tile_url)
                assert (reply.status, reply.body) == (200, data), tile_url
        assert fetch(f"{base}/xyz/0/2/1").status == 404  # zoom 0 is no level
        assert fetch(f"{base}/xyz/1/2/1").status == 404
        doc = fetch(f"{base}/tiles.json").json()
        assert doc["tilejson"] == "3.0.0" and doc["scheme"] == "xyz"
        assert (doc["minzoom"], doc["maxzoom"]) == (2, 5)
        assert doc["tiles"] == [f"{base}/xyz/{{z}}/{{x}}/{{y}}"]
        west, south, east, north = doc["bounds"]
        assert west == pytest.approx(-180) and east == pytest.approx(180)
        assert -85.06 < south < north < 85.06
    with served(utm[0]) as (url, _):
        assert fetch(url.split("/arcgis/")[0] + "/tiles.json").status == 404


# --- Refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "tile/a/0/0",
        "tile/-1/0/0",
        "tile/1/0/0x1",
        "tile/1/0/99999999999",
        "tile/1/0/%31",
        "tilemap/1/0/0/0/4",
        "tilemap/1/0/0/4/x",
        "WMTS?REQUEST=GetTile&LAYER=sample_cache",
        "WMTS?REQUEST=GetMap",
        "WMTS/tile/1.0.0/sample_cache/default/default028mm/1/0/-1",
        "WMTS/tile/1.0.0/sample_cache/default/Other/1/0/1",
    ],
)
def test_malformed_numbers_and_parameters_are_400(path):
    with served(SAMPLE_CACHE) as (url, _):
        reply = fetch(f"{url}/{path}")
        assert reply.status == 400 and reply.body.startswith(b"bad request: ")
        assert reply.body.count(b"\n") == 1


def test_no_path_outside_the_cache_can_be_reached(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    cache = shutil.copytree(SAMPLE_CACHE, tmp_path / "cache")
    with served(cache) as (url, _):
        base = url.split("/arcgis/")[0]
        attempts = [
            f"{url}/tile/../../../../secret.txt",
            f"{url}/tile/%2e%2e/%2e%2e/secret.txt",
            f"{url}/tile/0/0/..%2f..%2f..%2fsecret.txt",
            f"{url}/../../../secret.txt",
            f"{url}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt",
            f"{url}/WMTS/tile/1.0.0/cache/default/default028mm/../../secret.txt",
            f"{base}/arcgis/rest/services/..%2F..%2Fsecret.txt/MapServer",
            f"{base}/../secret.txt",
            f"{base}/%2e%2e/secret.txt",
            f"{base}/xyz/0/0/..%2f..%2fsecret.txt",
            f"{base}/{tmp_path}/secret.txt",
            f"{base}//etc/passwd",
            f"{base}/etc/passwd",
            f"{base}/_alllayers/L00/R0000C0000.bundle",
            f"{base}/conf.xml",
        ]
        for attempt in attempts:
            reply = fetch(attempt)
            assert reply.status in (400, 404), attempt
            assert b"TOPSECRET" not in reply.body and b"root:" not in reply.body


# --- Damage, and the command --------------------------------------------------------------------


def test_a_corrupt_bundle_answers_500_and_the_server_goes_on(tmp_path):
    tiles = {(9, 5, 5): png_tile(1, 16), (9, 200, 200): png_tile(2, 16)}
    cache = mapproxy_v2_cache(tmp_path / "Damaged", tiles, 12, WORLD)
    bundle = cache / "_alllayers" / "L09" / "R0000C0000.bundle"
    data = bytearray(bundle.read_bytes())
    data[0:4] = struct.pack("<I", 2)  # version 2: not a V2 bundle
    bundle.write_bytes(bytes(data))
    log = tmp_path / "serve.log"
    with log.open("w") as err, serving([str(cache)], err) as server:
        damaged = fetch(f"{server.map_server}/tile/9/5/5")
        assert damaged.status == 500 and damaged.body.count(b"\n") == 1
        assert b"L09/R5/C5" in damaged.body and b"corrupt" in damaged.body  # as verify says
        assert fetch(f"{server.map_server}/tilemap/9/0/0/8/8").status == 500
        healthy = fetch(f"{server.map_server}/tile/9/200/200")
        assert (healthy.status, healthy.body) == (200, tiles[(9, 200, 200)])
    assert server.process.returncode == 0
    lines = log.read_text().splitlines()
    assert any(line.startswith("Error: L09/R5/C5: corrupt bundle") for line in lines)
    assert sum('"GET /arcgis/' in line for line in lines) == 3  # one line per request


def test_the_command_prints_its_urls_and_stops_cleanly_on_ctrl_c(tmp_path):
    cache = shutil.copytree(SAMPLE_CACHE, tmp_path / "Roads_Roads" / "Layers")
    log = tmp_path / "serve.log"
    with log.open("w") as err, serving([str(cache), "--cors", "*"], err) as server:
        port = urlsplit(server.page).port
        assert port and port != 0
        assert server.page == f"http://127.0.0.1:{port}/report"
        assert (
            server.map_server
            == f"http://127.0.0.1:{port}/arcgis/rest/services/Roads_Roads/MapServer"
        )
        assert server.wmts == server.map_server + "/WMTS/1.0.0/WMTSCapabilities.xml"
        root = fetch(server.map_server + "?f=json")
        assert root.status == 200 and root.headers["access-control-allow-origin"] == "*"
        redirect = fetch(server.base + "/")
        assert redirect.status == 302 and redirect.headers["location"] == "/report"
    assert server.process.returncode == 0
    assert log.read_text().splitlines()[-1] == "Stopped serving Roads_Roads"


def test_blank_tiles_and_names(tmp_path):
    with serving([str(SAMPLE_CACHE), "--blank-tiles", "--name", "Sample"]) as server:
        assert "/services/Sample/MapServer" in server.map_server
        blank = fetch(f"{server.map_server}/tile/5/3/3")
        assert blank.status == 200 and blank.headers["blank-tile"] == "true"
        with Image.open(io.BytesIO(blank.body)) as image:
            assert image.size == (256, 256)
            assert np.asarray(image.convert("RGBA"))[..., 3].max() == 0
        assert fetch(f"{server.map_server}/tile/5/3/3?blankTile=false").status == 404
        assert "access-control-allow-origin" not in fetch(server.map_server).headers
    bad = serving([str(SAMPLE_CACHE), "--name", "no/slashes"])
    with pytest.raises(AssertionError, match="exited with 2"), bad:
        pass


def test_the_live_report_page_and_its_json(tmp_path):
    store = tmp_path / "sample.Status.gpkg"
    with serving([str(SAMPLE_CACHE), "--status", str(store)]) as server:
        absent = fetch(server.page)
        assert absent.status == 404 and b"cachestatus rebuild" in absent.body
        operations.rebuild(SAMPLE_CACHE, store, workers=1)  # while serving: shown at once
        page = fetch(server.page)
        assert page.status == 200 and page.headers["content-type"].startswith("text/html")
        assert b"arcgis/rest/services/sample_cache/MapServer/tile/{z}/{y}/{x}" in page.body
        data = fetch(f"{server.base}/api/page").json()
        stored = task_rows(store, ["levelID", "status"])
        levels = sorted({row["levelID"] for row in stored.values()})
        for level in levels:
            bundles = fetch(f"{server.base}/api/bundles?level={level}").json()
            assert bundles["count"] == sum(r["levelID"] == level for r in stored.values())
            states = sorted(bundles["states"][i] for i in bundles["status"])
            assert states == sorted(r["status"] for r in stored.values() if r["levelID"] == level)
        assert {row["level"] for row in data["levels"]} >= set(levels)
        assert fetch(f"{server.base}/api/bundles").status == 400
        assert fetch(f"{server.base}/api/bundles?level=x").status == 400
        assert fetch(f"{server.base}/api/other").status == 404


def test_the_live_page_holds_the_data_its_table_was_written_from(tmp_path):
    """``/report`` reads the store once and embeds what it read (the page asks for no
    ``api/page``): the same document ``api/page`` answers, and after a rebuild that changes the
    store, the next ``/report`` holds the new one."""
    import re

    cache = shutil.copytree(SAMPLE_CACHE, tmp_path / "cache")
    store = tmp_path / "s.gpkg"
    operations.rebuild(cache, store, workers=1)

    def embedded(app: App) -> dict:
        page = app.answer("/report", {}, "http://here").body.decode()
        found = re.search(r'id="cachestatus-data">(.*?)</script>', page, re.S)
        assert found is not None
        return json.loads(found.group(1))

    with open_cache(cache) as reader:
        app = App(reader, describe(reader), store)
        before = embedded(app)
        assert before == {"page": json.loads(app.answer("/api/page", {}, "").body)}
        assert before["page"]["totals"]["tilesPresent"] == sum(
            row["tilesPresent"] for row in task_rows(store, ["tilesPresent"]).values()
        )
        bundle = cache / "_alllayers" / "L02" / "R0000C0000.bundle"
        bundle.write_bytes(bundle.read_bytes()[:40])
        operations.rebuild(cache, store, workers=1)
        after = embedded(app)["page"]
    stored = task_rows(store, ["levelID", "status"])
    assert [r["status"] for r in stored.values() if r["levelID"] == 2] == ["CORRUPT"]
    assert after["totals"]["states"].get("CORRUPT") == 1
    assert [p["bundle"] for p in after["problems"]] == ["L02/R0000C0000"]
    assert after["totals"]["tilesPresent"] < before["page"]["totals"]["tilesPresent"]


def test_a_port_in_use_is_a_usage_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "cachestatus.cli",
                "serve",
                str(SAMPLE_CACHE),
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port}: ")
    assert done.stderr.count("\n") == 1


def test_wmts_of_a_geographic_scheme_in_degrees(tmp_path):
    cache = mapproxy_v2_cache(tmp_path / "World", {(0, 0, 0): png_tile(1, 16)}, levels=3)
    lods = [(lv, 295828763.7957775 / 2**lv, 0.703125 / 2**lv) for lv in range(3)]
    (cache / "conf.xml").write_text(
        conf_xml(lods, origin=(-180.0, 90.0), wkid=4326, latest_wkid=4326)
    )
    with served(cache) as (url, _):
        sets = _matrix_sets(fetch(url + "/WMTS/1.0.0/WMTSCapabilities.xml").body)
        assert list(sets) == ["default028mm"]
        for level, matrix in enumerate(sets["default028mm"]):
            # OGC WMTS 1.0.0 annex E.3, GoogleCRS84Quad: 279541132.0143589 at level 0.
            scale = float(matrix["ScaleDenominator"])
            assert scale == pytest.approx(279541132.0143589 / 2**level, rel=1e-9)
            # EPSG:4326 lists latitude first: so does the corner.
            assert matrix["TopLeftCorner"] == "90.0 -180.0"
        assert fetch(url + "?f=json").json()["units"] == "esriDecimalDegrees"


_SEGMENTS = st.sampled_from(
    [
        "arcgis",
        "rest",
        "services",
        "sample_cache",
        "MapServer",
        "tile",
        "tilemap",
        "WMTS",
        "xyz",
        "1.0.0",
        "api",
        "report",
        "0",
        "1",
        "2",
        "255",
        "..",
        "%2e%2e",
        "%2f",
        "-1",
        "1e3",
        "",
        " ",
        "\x00",
        "default028mm",
        "GoogleMapsCompatible",
        "default",
        "conf.xml",
        "99999999999",
    ]
)
_QUERIES = st.sampled_from(
    [
        "",
        "?f=json",
        "?f=pjson",
        "?callback=x",
        "?callback=%3Cscript%3E",
        "?REQUEST=GetTile",
        "?request=gettile&layer=sample_cache&tilematrixset=default028mm&tilematrix=1&tilerow=0"
        "&tilecol=a",
        "?SERVICE=WMTS&REQUEST=GetCapabilities",
        "?level=1",
        "?%zz=%",
        "?blankTile=false",
    ]
)


@pytest.fixture(scope="module")
def no_store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("store") / "Status.gdb"


@given(segments=st.lists(_SEGMENTS | st.text(max_size=8), max_size=10), query=_QUERIES)
@example(segments=["", "["], query="")  # "//[": urlsplit reads a host there, and refuses it
@example(segments=["", "x]", "y"], query="")
@settings(max_examples=300, deadline=None)
def test_any_url_gets_a_deliberate_answer(no_store, segments, query):
    """Whatever the path, the answer is one of the statuses the server means to give: never an
    error of its own on a healthy cache."""
    with open_cache(SAMPLE_CACHE) as reader:
        app = App(reader, describe(reader), status=no_store)
        answer = app.answer("/" + "/".join(segments) + query, {}, "http://127.0.0.1:1")
    assert answer.status in (200, 301, 302, 400, 404, 422), (segments, query, answer)
