"""``cachestatus html`` in a real browser (Debian's Chromium, from ``file://``): what the map
drew, hit-detected, against the store's rows read with GDAL (pyogrio)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pyogrio.raw import read

from cachestatus.cli import main
from tests import browser as chrome
from tests.report_cache import (
    BAD_TILE,
    CORRUPT_BUNDLE,
    MISSING_BUNDLE,
    ReportCache,
    report_cache,
)
from tests.status_rows import level_rows, task_rows


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield from chrome.driver(tmp_path_factory.mktemp("chromium"))


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReportCache, Path]:
    built = report_cache(tmp_path_factory.mktemp("report"))
    out = built.status.parent / "page.html"
    result = CliRunner().invoke(
        main,
        ["html", str(built.cache), "--status", str(built.status), "--out", str(out), "--verify"],
    )
    assert result.exit_code == 0, result.output
    return built, out


def centres(status: Path) -> dict[str, tuple[int, str, list[float]]]:
    """Per ``TaskStatus`` row: its level, its feature ID (level/row/col), its polygon's centre."""
    import shapely

    rows = task_rows(status, ["levelID", "bundleRow", "bundleCol"], geometry=True)
    found = {}
    for name, row in rows.items():
        centre = shapely.from_wkb(row["wkb"]).centroid
        key = f"{row['levelID']}/{row['bundleRow']}/{row['bundleCol']}"
        found[name] = (row["levelID"], key, [centre.x, centre.y])
    return found


def area_counts(status: Path) -> dict[int, int]:
    meta, _, _, values = read(str(status), layer="MissingAreas", read_geometry=False)
    levels = dict(zip(meta["fields"], values, strict=True))["levelID"].tolist()
    return {level: levels.count(level) for level in set(levels)}


def select(browser: Any, level: int) -> int:
    drawn: int = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.cachestatus.selectLevel(arguments[0]).then(done);",
        level,
    )
    return drawn


def idle(browser: Any) -> None:
    browser.execute_async_script(
        "const done = arguments[arguments.length - 1]; window.cachestatus.idle().then(done);"
    )


def test_the_page_draws_every_stored_row_and_area_with_no_request(browser, page, tmp_path):
    from PIL import Image

    built, out = page
    browser.get(out.as_uri())
    chrome.wait_ready(browser)
    rows = centres(built.status)
    levels = sorted({level for level, _, _ in rows.values()})
    areas = area_counts(built.status)
    assert 8 in levels and areas.get(8) == 1
    for level in sorted({*levels, *areas}):
        mine = [(key, centre) for lv, key, centre in rows.values() if lv == level]
        assert select(browser, level) == len(mine)
        hits = browser.execute_script(
            "return window.cachestatus.hitTest(arguments[0]);", [c for _, c in mine]
        )
        assert [hit for hit in hits] == [[key] for key, _ in mine], level
        missing = browser.execute_script(
            "return window.cachestatus.missingDrawn[arguments[0]];", level
        )
        assert missing == areas.get(level, 0), level

    select(browser, 8)
    browser.execute_script("document.getElementById('map').scrollIntoView();")
    idle(browser)
    state = browser.execute_script(
        "const s = window.cachestatus;"
        "return {loaded: s.tilesLoaded, errors: s.tileErrors, problems: s.errors};"
    )
    assert state["loaded"] > 0 and state["errors"] == 0 and state["problems"] == []
    _, _, centre = rows[MISSING_BUNDLE]
    x, y = browser.execute_script("return window.cachestatus.pixelOf(arguments[0]);", centre)
    shot = browser.get_screenshot_as_png()
    (tmp_path / "report.png").write_bytes(shot)
    r, g, b = Image.open(io.BytesIO(shot)).convert("RGB").getpixel((int(x), int(y)))
    assert r > g + 40 and r > b + 20, (r, g, b)

    urls = chrome.requested_urls(browser)
    assert out.as_uri() in urls  # the log sees the page's own load
    assert [u for u in urls if not u.startswith(("file:", "data:"))] == []


def test_a_click_shows_a_bundles_fields_and_a_problem_zooms_to_its_bundle(browser, page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    built, out = page
    browser.get(out.as_uri())
    chrome.wait_ready(browser)
    rows = centres(built.status)
    select(browser, 8)
    browser.execute_script("document.getElementById('map').scrollIntoView();")
    _, _, centre = rows[CORRUPT_BUNDLE]
    x, y = browser.execute_script(
        "return window.cachestatus.map.getPixelFromCoordinate(arguments[0]);", centre
    )
    target = browser.find_element(By.ID, "map")
    size = target.size
    ActionChains(browser).move_to_element_with_offset(
        target, int(x - size["width"] / 2), int(y - size["height"] / 2)
    ).click().perform()
    browser.execute_script("return new Promise((resolve) => setTimeout(resolve, 400));")
    info = browser.find_element(By.ID, "info").text
    assert f"bundle {CORRUPT_BUNDLE}" in info and "status CORRUPT" in info

    select(browser, 0)
    browser.find_element(By.CSS_SELECTOR, "a.zoom").click()
    browser.execute_script("return new Promise((resolve) => setTimeout(resolve, 400));")
    level, view = browser.execute_script(
        "const s = window.cachestatus; const v = s.map.getView();"
        "return [s.level, v.calculateExtent(s.map.getSize())];"
    )
    xmin, ymin, xmax, ymax = view
    assert level == 8 and xmin <= centre[0] <= xmax and ymin <= centre[1] <= ymax
    import shapely

    bundle = shapely.from_wkb(task_rows(built.status, geometry=True)[CORRUPT_BUNDLE]["wkb"])
    bx0, by0, bx1, by1 = bundle.bounds
    assert xmin <= bx0 and bx1 <= xmax and ymin <= by0 and by1 <= ymax
    assert (ymax - ymin) < 1.2 * (by1 - by0)  # fitted: the bundle fills the map's height


def test_a_live_page_fed_by_endpoints_draws_the_same_bundles(browser, page):
    """The page ``serve`` answers: its data with it (no ``api/page`` asked), its bundles from
    ``api/bundles?level=N``, its tiles from a tile URL; here a small server of the standard
    library stands for ``serve``."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    from cachestatus import open_cache
    from cachestatus.reportpage import level_bundles, page_data, render_page

    built, _ = page
    with open_cache(built.cache) as reader:
        data = page_data(built.status, reader)
    html = render_page(data, live=True, tile_url="tile/{z}/{y}/{x}", api_base="api/").encode()
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            seen.append(url.path)
            body, kind, code = b"", "application/json", 200
            if url.path == "/report":
                body, kind = html, "text/html"
            elif url.path == "/api/page":
                body = json.dumps(data).encode()
            elif url.path == "/api/bundles":
                level = int(parse_qs(url.query)["level"][0])
                body = json.dumps(level_bundles(built.status, level)).encode()
            elif url.path.startswith("/tile/"):
                z, y, x = (int(v) for v in url.path.split("/")[2:5])
                found = built.tiles.get((z, y, x))
                body, kind, code = (found, "image/png", 200) if found else (b"", "text/plain", 404)
            else:
                code = 404
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/report")
        chrome.wait_ready(browser)
        rows = centres(built.status)
        mine = [(key, centre) for lv, key, centre in rows.values() if lv == 8]
        assert select(browser, 8) == len(mine) == 4
        hits = browser.execute_script(
            "return window.cachestatus.hitTest(arguments[0]);", [c for _, c in mine]
        )
        assert hits == [[key] for key, _ in mine]
        select(browser, 3)
        idle(browser)
        loaded, errors = browser.execute_script(
            "return [window.cachestatus.tilesLoaded, window.cachestatus.tileErrors];"
        )
    finally:
        server.shutdown()
        server.server_close()
    assert "/api/page" not in seen and "/api/bundles" in seen
    tiles = [path for path in seen if path.startswith("/tile/")]
    assert loaded == len(tiles) > 0 and errors == 0  # the world view: levels 0-3 are complete


def view_of(browser: Any) -> tuple[int, float, list[float]]:
    """The level shown, the map's resolution and the extent in view."""
    level, resolution, extent = browser.execute_script(
        "const s = window.cachestatus; const v = s.map.getView();"
        "return [s.level, v.getResolution(), v.calculateExtent(s.map.getSize())];"
    )
    return level, resolution, extent


def settle(browser: Any) -> None:
    """Wait for the map's animations, and the level it then chose, to be drawn."""
    browser.execute_script("return new Promise((resolve) => setTimeout(resolve, 600));")
    idle(browser)


def test_a_bad_tile_found_by_verify_zooms_the_map_to_its_square(browser, page):
    from mapproxy.grid.tile_grid import tile_grid
    from selenium.webdriver.common.by import By

    _, out = page
    browser.get(out.as_uri())
    chrome.wait_ready(browser)
    level, row, col = BAD_TILE
    address = f"L{level:02d}/R{row}/C{col}"
    select(browser, 0)
    link = browser.find_element(By.XPATH, f"//ul[@class='problems']//a[text()='{address}']")
    assert "not-an-image: not PNG: an HTML page" in link.find_element(By.XPATH, "..").text
    link.click()
    settle(browser)
    shown, _, (xmin, ymin, xmax, ymax) = view_of(browser)
    # The tile's square in MapProxy's grid (the writer of the cache).
    tx0, ty0, tx1, ty1 = tile_grid(3857, origin="nw").tile_bbox((col, row, level))
    assert shown == level
    assert xmin <= tx0 and tx1 <= xmax and ymin <= ty0 and ty1 <= ymax
    assert (ymax - ymin) < 1.2 * (ty1 - ty0)  # fitted: the tile fills the map's height


def _resolutions(status: Path) -> dict[int, float]:
    """The stored resolution of each level that has TaskStatus rows."""
    rows = task_rows(status, ["levelID", "resolution"])
    return {row["levelID"]: row["resolution"] for row in rows.values()}


def _nearest(resolutions: dict[int, float], resolution: float) -> int:
    import math

    return min(resolutions, key=lambda level: abs(math.log(resolution / resolutions[level])))


def test_the_level_follows_the_zoom_and_the_selector_zooms_to_its_level(browser, page):
    from selenium.webdriver.common.action_chains import ActionChains, ScrollOrigin
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    built, out = page
    browser.get(out.as_uri())
    chrome.wait_ready(browser)
    browser.execute_script("document.getElementById('map').scrollIntoView();")
    with_rows = _resolutions(built.status)
    assert sorted(with_rows) == [0, 1, 2, 3, 8]
    selector = Select(browser.find_element(By.ID, "level"))

    # Zoomed to a level's resolution, between two levels, past levels without rows and past
    # the finest: the nearest level with rows is shown, and the selector says so.
    lods = {row["levelID"]: row["resolution"] for row in level_rows(built.status)}
    for resolution, expected in (
        (lods[2], 2),
        (lods[1] * 0.8, 1),
        (lods[6], 8),
        (lods[5] * 1.2, 3),
        (lods[9] / 4, 8),
    ):
        browser.execute_script(
            "window.cachestatus.map.getView().setResolution(arguments[0]);", resolution
        )
        settle(browser)
        level, now, _ = view_of(browser)
        assert now == pytest.approx(resolution, rel=1e-9)
        assert level == expected == _nearest(with_rows, resolution), resolution
        assert selector.first_selected_option.get_attribute("value") == str(expected)

    # A user's wheel over the map (zooming in from the world): the level shown is the one
    # nearest the resolution it lands on.
    select(browser, 8)
    _, world, _ = view_of(browser)
    target = browser.find_element(By.ID, "map")
    ActionChains(browser).move_to_element(target).click().perform()  # the wheel needs focus
    for _ in range(3):
        wheel = ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(target), 0, -400)
        wheel.perform()
        settle(browser)
    level, now, _ = view_of(browser)
    assert now < world / 4 and level == _nearest(with_rows, now) != 8
    assert selector.first_selected_option.get_attribute("value") == str(level)

    # A level chosen in the selector: the map zooms to its resolution, and stays there.
    for choice in (8, 1, 6):
        selector.select_by_value(str(choice))
        settle(browser)
        level, now, _ = view_of(browser)
        assert level == choice and now == pytest.approx(lods[choice], rel=1e-9)


def test_a_mosaic_background_is_drawn_on_its_rectangle(browser, page, tmp_path):
    from mapproxy.grid.tile_grid import tile_grid
    from PIL import Image

    built, _ = page
    out = tmp_path / "mosaic.html"
    args = ["html", str(built.cache), "--status", str(built.status), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--background", "mosaic"])
    assert result.exit_code == 0, result.output
    chrome.requested_urls(browser)  # what earlier pages asked for, read and dropped
    browser.get(out.as_uri())
    chrome.wait_ready(browser)
    browser.execute_script(
        "document.getElementById('map').scrollIntoView();"
        "window.cachestatus.map.getLayers().getArray().slice(1)"
        ".forEach((layer) => layer.setVisible(false));"  # the bundles and areas drawn over it
    )
    idle(browser)
    loaded, errors = browser.execute_script(
        "return [window.cachestatus.tilesLoaded, window.cachestatus.tileErrors];"
    )
    assert loaded == 1 and errors == 0
    shot = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    grid = tile_grid(3857, origin="nw")
    for row, col in ((2, 5), (6, 1)):
        x0, y0, x1, y1 = grid.tile_bbox((col, row, 3))
        centre = [(x0 + x1) / 2, (y0 + y1) / 2]
        x, y = browser.execute_script("return window.cachestatus.pixelOf(arguments[0]);", centre)
        with Image.open(io.BytesIO(built.tiles[3, row, col])) as tile:
            stored = tile.convert("RGB").getpixel((128, 128))
        got = shot.getpixel((int(x), int(y)))
        assert all(abs(a - b) <= 8 for a, b in zip(got, stored, strict=True)), (row, col)
    urls = chrome.requested_urls(browser)
    assert out.as_uri() in urls and [u for u in urls if not u.startswith(("file:", "data:"))] == []
