"""What ``cachestatus serve`` refuses or guards against: control characters from URLs in its log,
Host names a DNS-rebinding page would send, JSONP without ``--cors``, connections that never
finish a request; and the small HTTP points of its answers (``/report/``, ``If-None-Match: *``,
``Vary: Origin``)."""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from collections import Counter

import pytest

from cachestatus import open_cache, operations
from cachestatus.serve.app import App
from cachestatus.serve.server import Server
from cachestatus.serve.service import describe
from tests.builders import WORLD
from tests.helpers import SAMPLE_CACHE, mapproxy_v2_cache
from tests.serving import png_tile, serving
from tests.status_rows import task_rows
from tests.test_serve import fetch, served

ROOT = "/arcgis/rest/services/sample_cache/MapServer"


def raw_exchange(url: str, request: bytes, wait: float = 10.0) -> bytes:
    """Send ``request`` as it is on a new connection to the server of ``url`` and read until
    the server closes it (or ``wait`` seconds pass without a byte: socket.timeout)."""
    host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=wait) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        return received


def test_control_characters_of_a_url_never_reach_the_log(caplog):
    log = io.StringIO()
    with served(SAMPLE_CACHE, server_options={"access_log": log}) as (url, _):
        raw_exchange(url, b"GET /\x1b[2J\x1b]0;owned\x07 HTTP/1.0\r\n\r\n")
    written = log.getvalue()
    assert "\x1b" not in written and "\x07" not in written
    assert "\\x1b[2J" in written  # escaped, still readable

    with open_cache(SAMPLE_CACHE) as reader:
        app = App(reader, describe(reader))

        def fail(*_: object) -> None:
            raise RuntimeError("boom")

        app.answer = fail  # type: ignore[method-assign]
        server = Server(app, "127.0.0.1", 0, access_log=None)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with caplog.at_level(logging.ERROR, logger="cachestatus.serve.server"):
                reply = raw_exchange(server.base_url, b"GET /\x1b[31mred HTTP/1.0\r\n\r\n")
        finally:
            server.shutdown()
            server.server_close()
    assert reply.startswith(b"HTTP/1.1 500")
    messages = [record.getMessage() for record in caplog.records]
    assert messages and all("\x1b" not in message for message in messages)
    assert any("\\x1b[31mred" in message for message in messages)


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost", 200),
        ("LOCALHOST:8000", 200),
        ("127.0.0.1", 200),
        ("127.0.0.1:1234", 200),
        ("[::1]:80", 200),
        ("attacker.example", 421),
        ("attacker.example:8000", 421),
        ("127.0.0.1.nip.io", 421),
        ("10.0.0.1", 421),
    ],
)
def test_a_loopback_server_answers_only_loopback_host_names(host, status):
    with served(SAMPLE_CACHE) as (url, _):
        reply = fetch(url + "?f=json", Host=host)
        assert reply.status == status, host
        if status == 421:
            assert reply.body.count(b"\n") == 1 and b"Host" in reply.body
            base = url.split("/arcgis/")[0]
            assert fetch(base + "/api/page", Host=host).status == 421
            assert fetch(url + "/tile/1/0/1", Host=host).status == 421


def test_a_server_on_another_address_answers_any_host():
    with served(SAMPLE_CACHE, host="0.0.0.0") as (url, _):
        assert fetch(url + "?f=json", Host="tiles.example:8000").status == 200


def test_jsonp_is_answered_only_with_cors():
    with served(SAMPLE_CACHE) as (url, _):
        refused = fetch(url + "?f=json&callback=cb")
        assert refused.status == 400 and b"--cors" in refused.body
        assert refused.body.count(b"\n") == 1
        assert fetch(url + "?f=json").status == 200
    with served(SAMPLE_CACHE, {"jsonp": True}) as (url, _):
        answered = fetch(url + "?f=json&callback=cb")
        assert answered.status == 200 and answered.body.startswith(b"cb(")


def test_a_half_sent_request_is_closed_after_the_timeout():
    with served(SAMPLE_CACHE, server_options={"request_timeout": 0.5}) as (url, _):
        started = time.monotonic()
        received = raw_exchange(url, f"GET {ROOT} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
        assert received == b"" and time.monotonic() - started < 8
        started = time.monotonic()
        assert raw_exchange(url, b"") == b""  # an idle connection too
        assert time.monotonic() - started < 8
        assert fetch(url + "?f=json").status == 200  # the server goes on


def test_api_bundles_is_capped_as_the_html_page_is(tmp_path):
    tiles = {(9, 5, 5): png_tile(1, 16), (9, 200, 200): png_tile(2, 16)}
    cache = mapproxy_v2_cache(tmp_path / "Two", tiles, 10, WORLD)
    store = tmp_path / "two.Status.gpkg"
    operations.rebuild(cache, store, workers=1)
    stored = task_rows(store, ["levelID", "status"])
    counts = Counter(row["levelID"] for row in stored.values())
    level, count = counts.most_common(1)[0]
    assert count >= 2
    with served(cache, {"status": store, "max_rows": 1}) as (url, _):
        base = url.split("/arcgis/")[0]
        bundles = fetch(f"{base}/api/bundles?level={level}").json()
    assert bundles["count"] == count and len(bundles["row"]) == len(bundles["status"]) == 1
    assert bundles["note"].startswith(f"1 of {count} bundles of level {level}")


def test_serve_says_at_start_that_the_report_waits_for_a_rebuild(tmp_path):
    store = tmp_path / "sample.Status.gpkg"
    log = tmp_path / "serve.log"
    with log.open("w") as err, serving([str(SAMPLE_CACHE), "--status", str(store)], err) as server:
        answer = fetch(server.page)
    assert answer.status == 404
    # The line /report answers, found as it finds the store: the same words at start.
    said = [line for line in log.read_text().splitlines() if "no status store" in line]
    assert said == [answer.body.decode().strip()]
    assert said[0].startswith(f"{store}: no status store here; run `cachestatus rebuild`")
    operations.rebuild(SAMPLE_CACHE, store, workers=1)
    with log.open("w") as err, serving([str(SAMPLE_CACHE), "--status", str(store)], err) as server:
        assert fetch(server.page).status == 200
    assert "no status store" not in log.read_text()


def test_report_slash_redirects_and_tiles_answer_if_none_match_any(tmp_path):
    with served(SAMPLE_CACHE) as (url, reader):
        base = url.split("/arcgis/")[0]
        moved = fetch(base + "/report/")
        assert moved.status == 301 and moved.headers["location"] == "/report"
        assert fetch(base + "/report/?x=1").status == 301
        stored = fetch(url + "/tile/1/0/1")
        assert stored.status == 200 and stored.body == reader.read_tile(1, 0, 1)
        unchanged = fetch(url + "/tile/1/0/1", **{"If-None-Match": "*"})
        assert unchanged.status == 304 and unchanged.body == b""
        assert unchanged.headers["etag"] == stored.headers["etag"]
        assert fetch(url + "/tile/5/3/3", **{"If-None-Match": "*"}).status == 404
        assert "vary" not in stored.headers  # no --cors: nothing depends on the Origin


@pytest.mark.parametrize("cors", [("*",), ("https://maps.example",)])
def test_answers_vary_by_origin_with_cors(cors):
    with served(SAMPLE_CACHE, server_options={"cors": cors}) as (url, _):
        for origin in ({}, {"Origin": "https://maps.example"}, {"Origin": "https://other.example"}):
            reply = fetch(url + "/tile/1/0/1", **origin)
            assert reply.headers.get("vary") == "Origin", origin
