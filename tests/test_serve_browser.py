"""``cachestatus serve``'s live report page in a real browser (Debian's Chromium): the bundles it
drew, hit-detected, against the store's rows read with GDAL, and its tiles loaded from the
server, counted in the server's own request log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests import browser as chrome
from tests.report_cache import report_cache
from tests.serving import serving
from tests.test_html_browser import centres, idle, select


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield from chrome.driver(tmp_path_factory.mktemp("chromium"))


def test_the_live_page_draws_the_stored_rows_and_loads_tiles_from_the_server(browser, tmp_path):
    built = report_cache(tmp_path / "report")
    log = tmp_path / "serve.log"
    with (
        log.open("w") as err,
        serving([str(built.cache), "--status", str(built.status)], err) as server,
    ):
        browser.get(server.page)
        chrome.wait_ready(browser)
        rows = centres(built.status)
        for level in sorted({level for level, _, _ in rows.values()}):
            drawn = [(key, centre) for lv, key, centre in rows.values() if lv == level]
            assert select(browser, level) == len(drawn), level
            found = browser.execute_script(
                "return window.cachestatus.hitTest(arguments[0]);", [c for _, c in drawn]
            )
            assert found == [[key] for key, _ in drawn], level
        select(browser, 3)
        idle(browser)
        loaded, errors = browser.execute_script(
            "return [window.cachestatus.tilesLoaded, window.cachestatus.tileErrors];"
        )
        asked = chrome.requested_urls(browser)
        (tmp_path / "serve-page.png").write_bytes(browser.get_screenshot_as_png())
    assert asked and all(url.startswith(server.base + "/") for url in asked), asked
    lines = Path(log).read_text().splitlines()
    tile_path = server.map_server.removeprefix(server.base) + "/tile/"
    served = [line for line in lines if f'"GET {tile_path}' in line and '" 200 ' in line]
    assert loaded == len(served) > 0 and errors == 0  # levels 0-3 are complete
    # The page came with the data its table was written from: it asks for no second read.
    assert not any('"GET /api/page' in line for line in lines)
    assert any('"GET /api/bundles?level=8 ' in line for line in lines)
