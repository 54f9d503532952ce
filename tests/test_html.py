"""``cachestatus html`` without a browser: what the page holds, against the store read with GDAL
(pyogrio) and the tiles MapProxy wrote."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cachestatus.cli import main
from cachestatus.reportpage import (
    Background,
    background_tiles,
    level_bundles,
    page_data,
    parse_budget,
    render_page,
)
from cachestatus.reportpage.charts import CHARTS
from cachestatus.reportpage.html import capped
from tests.report_cache import (
    BAD_NAME,
    BAD_TILE,
    CORRUPT_BUNDLE,
    MISSING_BUNDLE,
    ReportCache,
    report_cache,
)
from tests.status_rows import level_rows, task_rows


def run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> ReportCache:
    return report_cache(tmp_path_factory.mktemp("report"))


def write(built: ReportCache, out: Path, *extra: object) -> dict[str, object]:
    code, stdout, stderr = run(
        "html", built.cache, "--status", built.status, "--out", out, "--json", *extra
    )
    assert code == 0, stderr
    doc: dict[str, object] = json.loads(stdout)
    return doc


def blob(page: str, name: str) -> dict[str, object]:
    found = re.search(rf'<script type="application/json" id="{name}">(.*?)</script>', page, re.S)
    assert found is not None
    value: dict[str, object] = json.loads(found.group(1))
    return value


def outside_licence(page: str) -> str:
    """The page without the OpenLayers licence (in the footer and in a comment)."""
    page = re.sub(r'<pre class="licence">.*?</pre>', "", page, flags=re.S)
    return re.sub(r"<!--\nOpenLayers.*?-->", "", page, flags=re.S)


def test_the_page_is_the_same_each_time_and_json_says_what_it_holds(built, tmp_path):
    first = write(built, tmp_path / "a.html")
    second = write(built, tmp_path / "b.html")
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()
    rows = task_rows(built.status, ["levelID"])
    assert first["bytes"] == (tmp_path / "a.html").stat().st_size
    assert first["bundles_total"] == first["bundles_embedded"] == len(rows)
    assert first["levels"] == list(range(10)) and first["problems"] == 2
    assert {k: v for k, v in first.items() if k != "path"} == {
        k: v for k, v in second.items() if k != "path"
    }


def test_the_page_holds_every_row_of_every_level_and_its_problems(built, tmp_path):
    import shapely

    write(built, tmp_path / "page.html")
    page = (tmp_path / "page.html").read_text()
    embedded = blob(page, "cachestatus-data")
    rows = task_rows(built.status, ["levelID", "bundleRow", "bundleCol", "status", "tilesPresent"])
    seen = {}
    for level, columns in embedded["bundles"].items():
        for i in range(columns["count"]):
            key = (int(level), columns["row"][i], columns["col"][i])
            seen[key] = (columns["states"][columns["status"][i]], columns["tilesPresent"][i])
    assert seen == {
        (r["levelID"], r["bundleRow"], r["bundleCol"]): (r["status"], r["tilesPresent"])
        for r in rows.values()
    }
    problems = embedded["page"]["problems"]
    assert [p["kind"] for p in problems] == ["CORRUPT", "bad-name"]
    assert problems[0]["bundle"] == CORRUPT_BUNDLE and BAD_NAME in problems[1]["bundle"]
    assert problems[1]["extent"] is None  # no place to zoom to: listed, not linked
    stored = task_rows(built.status, ["bundleName"], geometry=True)[CORRUPT_BUNDLE]["wkb"]
    assert problems[0]["extent"] == pytest.approx(list(shapely.from_wkb(stored).bounds), abs=1e-6)
    assert MISSING_BUNDLE not in {p["bundle"] for p in problems}


def test_rectangles_are_the_stored_polygons(built):
    import shapely

    columns = level_bundles(built.status, 8)
    stored = task_rows(built.status, ["bundleName"], geometry=True)
    for i in range(columns["count"]):
        name = f"L08/R{columns['row'][i]:04x}C{columns['col'][i]:04x}"
        bounds = shapely.from_wkb(stored[name]["wkb"]).bounds
        unit, x0, y0 = columns["unit"], columns["x0"], columns["y0"]
        drawn = (
            x0 + unit * columns["xmin"][i],
            y0 + unit * columns["ymin"][i],
            x0 + unit * columns["xmax"][i],
            y0 + unit * columns["ymax"][i],
        )
        assert drawn == pytest.approx(bounds, abs=unit)
    assert columns["missing"]["features"][0]["properties"]["level"] == 8


def test_the_background_is_the_stored_tiles_of_whole_levels_within_the_budget(built, tmp_path):
    level_bytes = [
        sum(len(d) for (lv, _, _), d in built.tiles.items() if lv == n) for n in range(4)
    ]
    budget = sum(level_bytes[:3]) + level_bytes[3] // 2  # levels 0-2 fit, level 3 does not
    doc = write(built, tmp_path / "page.html", "--background-budget", budget)
    assert doc["background_levels"] == [0, 1, 2]
    assert doc["background_bytes"] == sum(level_bytes[:3]) <= budget
    tiles = blob((tmp_path / "page.html").read_text(), "cachestatus-data")["background"]["tiles"]
    expected = {f"{lv}/{r}/{c}": d for (lv, r, c), d in built.tiles.items() if lv < 3}
    assert tiles.keys() == expected.keys()
    for key, uri in tiles.items():
        media, encoded = uri.split(";base64,")
        assert media == "data:image/png" and base64.b64decode(encoded) == expected[key]
    assert "level 3 and finer would exceed" in (tmp_path / "page.html").read_text()


def test_no_background_and_a_budget_too_small_for_the_first_level(built, tmp_path):
    assert write(built, tmp_path / "a.html", "--background", "none")["background_tiles"] == 0
    doc = write(built, tmp_path / "b.html", "--background-budget", "10B")
    assert doc["background_levels"] == [] and doc["background_tiles"] == 0
    assert "level 0 alone exceeds" in (tmp_path / "b.html").read_text()


def test_no_address_outside_the_licence_text(built, tmp_path):
    write(built, tmp_path / "page.html")
    page = (tmp_path / "page.html").read_text()
    assert re.findall(r"https?://", outside_licence(page)) == []
    assert "<script src" not in page and "<link" not in page


def test_a_script_end_in_the_store_path_ends_nothing(built, tmp_path):
    import shutil

    status = tmp_path / "x<" / "script>y" / "Status.gdb"
    shutil.copytree(built.status, status)
    write(built, tmp_path / "page.html", "--status", status)
    page = (tmp_path / "page.html").read_text()
    assert blob(page, "cachestatus-data")["page"]["header"]["status"] == str(status)
    assert "</script>y" not in page


def test_a_script_end_in_a_path_or_detail_ends_nothing():
    cache = "/a/</script><script>alert(1)</script><!--"
    page = render_page(_minimal(cache))
    assert page.count("</script>") == page.count("<script")
    assert blob(page, "cachestatus-data")["page"]["header"]["cache"] == cache


def test_nan_never_reaches_the_page(built):
    data = page_data(built.status)
    data["levels"][0]["percentComplete"] = math.nan
    with pytest.raises(ValueError, match="JSON compliant"):
        render_page(data)
    text = json.dumps(page_data(built.status), allow_nan=False)  # the store's nulls are None
    assert "NaN" not in text


def test_a_level_past_the_cap_keeps_its_problems_and_says_so(built):
    columns = level_bundles(built.status, 8)
    kept = capped(columns, 2)
    assert kept["count"] == 4 and len(kept["row"]) == 2
    states = [kept["states"][s] for s in kept["status"]]
    assert states[0] in ("CORRUPT", "PARTIAL") and "CORRUPT" in states
    assert "2 of 4 bundles of level 8 embedded" in kept["note"]
    assert capped(columns, 4) is columns


def test_svg_bars_are_levels_times_charts(built, tmp_path):
    write(built, tmp_path / "page.html")
    page = (tmp_path / "page.html").read_text()
    levels = {row["levelID"] for row in level_rows(built.status)}
    assert page.count('<rect class="bar"') == len(levels) * len(CHARTS)
    percent = re.findall(r'<rect class="bar" data-level="(\d+)" data-value="([\d.e+]+)"', page)
    drawn = {int(level): float(value) for level, value in percent[: len(levels)]}
    assert drawn == {
        r["levelID"]: pytest.approx(r["percentComplete"], rel=1e-4)
        for r in level_rows(built.status)
    }


def test_levels_limit_the_table_and_the_bundles(built, tmp_path):
    doc = write(built, tmp_path / "page.html", "--levels", "0-3")
    assert doc["levels"] == [0, 1, 2, 3] and doc["bundles_total"] == 4 and doc["problems"] == 0
    doc = write(built, tmp_path / "page.html", "--levels", "8")
    assert doc["levels"] == [8] and doc["bundles_total"] == 4 and doc["problems"] == 2


def test_without_a_store_it_exits_2_naming_rebuild(built, tmp_path):
    code, _, err = run("html", built.cache, "--status", tmp_path / "none.gdb")
    assert code == 2 and "cachestatus rebuild" in err


def test_without_a_store_it_also_names_rebuild_the_option(built, tmp_path):
    code, _, err = run("html", built.cache, "--status", tmp_path / "none.gdb", "--verify")
    assert code == 2 and "cachestatus rebuild" in err and "--rebuild" in err
    assert not (tmp_path / "none.html").exists()


def test_rebuild_scans_first_into_the_status_given(built, tmp_path):
    store = tmp_path / "Fresh.gdb"
    code, out, err = run(
        "html", built.cache, "--status", store, "--rebuild", "--workers", "1", "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["path"] == str(tmp_path / "Fresh.html")
    assert task_rows(store, ["levelID", "status"]) == task_rows(built.status, ["levelID", "status"])
    assert doc["bundles_total"] == len(task_rows(store, ["levelID"])) == 8


def test_rebuild_writes_the_default_store_of_a_cache_that_has_none(sample, monkeypatch):
    monkeypatch.chdir(sample.parent)
    assert not (sample / "Status.gdb").exists()
    code, out, err = run("html", sample.name, "--rebuild", "--workers", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["path"] == f"{sample.name}/Status.html"
    assert len(task_rows(sample / "Status.gdb", ["levelID"])) == 3
    page = (sample / "Status.html").read_text()
    assert f"<tr><th>Cache</th><td>{sample.name}</td></tr>" in page  # as given
    header = blob(page, "cachestatus-data")["page"]["header"]
    assert header["cache"] == sample.name and header["job"]["cachePath"] == str(sample)


def _problem_lines(page: str) -> list[str]:
    found = re.search(r"<ul class='problems'>(.*?)</ul>", page, re.S)
    assert found is not None
    return [re.sub(r"<[^>]+>", "", item) for item in re.findall(r"<li>(.*?)</li>", found.group(1))]


def test_verify_lists_each_bad_tile_where_it_lies(built, tmp_path):
    from mapproxy.grid.tile_grid import tile_grid

    code, out, _ = run("verify", built.cache, "--json", "--workers", "1")
    problems = json.loads(out)["problems"]
    assert code == 1
    bad = [p for p in problems if p.get("tile")]
    level, row, col = BAD_TILE
    assert [p["tile"] for p in bad] == [f"L{level:02d}/R{row}/C{col}"]

    doc = write(built, tmp_path / "page.html", "--verify", "--workers", "1")
    assert doc["verify_problems"] == len(problems) and doc["problems"] == 3
    page = (tmp_path / "page.html").read_text()
    lines = _problem_lines(page)
    assert f"{bad[0]['tile']} {bad[0]['kind']}: {bad[0]['detail']}" in lines
    assert sum(CORRUPT_BUNDLE in line for line in lines) == 1  # the store lists it already
    shown = [p for p in blob(page, "cachestatus-data")["page"]["problems"] if p["tile"]]
    # The tile's square in MapProxy's grid (the writer of the cache).
    square = tile_grid(3857, origin="nw").tile_bbox((col, row, level))
    assert shown[0]["level"] == level
    assert shown[0]["extent"] == pytest.approx(list(square), abs=1e-3)

    plain = write(built, tmp_path / "plain.html")
    assert plain["verify_problems"] is None and plain["problems"] == 2
    doc = write(built, tmp_path / "page.html", "--verify", "--workers", "1", "--levels", "0-3")
    assert doc["verify_problems"] == 0 and doc["problems"] == 0


def _colour(data: bytes, x: int = 128, y: int = 128) -> tuple[int, ...]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return tuple(image.convert("RGBA").getpixel((x, y)))


def test_a_mosaic_is_the_finest_level_that_fits_in_one_image(built, tmp_path):
    from mapproxy.grid.tile_grid import tile_grid

    doc = write(built, tmp_path / "page.html", "--background", "mosaic")
    level3 = {key: data for key, data in built.tiles.items() if key[0] == 3}
    # Level 4 would fit in 4,096 px but holds no tile; level 8 holds some but would not fit.
    assert doc["background_levels"] == [3] and doc["background_tiles"] == len(level3) == 64
    page = (tmp_path / "page.html").read_text()
    image = blob(page, "cachestatus-data")["background"]["image"]
    assert blob(page, "cachestatus-data")["background"]["tiles"] == {}
    assert image["url"].startswith("data:image/webp;base64,")
    data = base64.b64decode(image["url"].split(",", 1)[1])
    assert doc["background_bytes"] == len(data) <= 3_000_000
    grid = tile_grid(3857, origin="nw")
    x0, _, _, y1 = grid.tile_bbox((0, 0, 3))
    _, y0, x1, _ = grid.tile_bbox((7, 7, 3))
    assert image["extent"] == pytest.approx([x0, y0, x1, y1], abs=1e-3)
    from PIL import Image

    with Image.open(io.BytesIO(data)) as mosaic:
        assert mosaic.size == (8 * 256, 8 * 256)
        for (_, row, col), tile in level3.items():
            got = mosaic.convert("RGBA").getpixel((col * 256 + 128, row * 256 + 128))
            assert all(abs(a - b) <= 6 for a, b in zip(got, _colour(tile), strict=True))
    assert "Background: level 3 composited into one WEBP image" in page


def test_a_mosaic_past_the_budget_is_left_out_and_said_so(built, tmp_path):
    doc = write(
        built, tmp_path / "page.html", "--background", "mosaic", "--background-budget", "40"
    )
    assert doc["background_tiles"] == doc["background_bytes"] == 0
    page = (tmp_path / "page.html").read_text()
    assert "level 0, the coarsest with tiles, exceeds the 40-byte budget" in page
    assert blob(page, "cachestatus-data")["background"]["image"] is None


def test_it_replaces_its_own_page_and_no_other_file(built, tmp_path):
    (tmp_path / "notes.html").write_text("<p>mine</p>")
    code, _, err = run(
        "html", built.cache, "--status", built.status, "--out", tmp_path / "notes.html"
    )
    assert code == 2 and "not a page cachestatus wrote" in err
    assert (tmp_path / "notes.html").read_text() == "<p>mine</p>"
    write(built, tmp_path / "page.html")
    write(built, tmp_path / "page.html")


def test_the_default_page_goes_beside_the_store(built, tmp_path):
    code, _, err = run("html", built.cache, "--status", built.status)
    assert code == 0 and (built.status.with_suffix(".html")).is_file()
    assert str(built.status.with_suffix(".html")) in err


def test_budgets_read_as_sizes():
    assert parse_budget("3MB") == 3_000_000 and parse_budget("500kB") == 500_000
    assert parse_budget("2MiB") == 2 * 1024**2 and parse_budget("1000") == 1000
    with pytest.raises(Exception, match="not a size"):
        parse_budget("lots")


def test_a_live_page_embeds_its_data_alone_and_names_its_endpoints(built):
    from cachestatus import open_cache

    with open_cache(built.cache) as reader:
        data = page_data(built.status, reader)
        tiles = background_tiles(reader, 10**9)
    page = render_page(data, live=True, tile_url="tile/{z}/{y}/{x}", api_base="api/")
    config = blob(page, "cachestatus-config")
    assert config["live"] is True and config["tileUrl"] == "tile/{z}/{y}/{x}"
    assert blob(page, "cachestatus-data") == {"page": data}  # the data, not the bundles
    assert "data:image" not in page
    assert isinstance(tiles, Background) and len(tiles.tiles) == len(built.tiles) - 1


def _minimal(cache: str) -> dict[str, object]:
    return {
        "header": {
            "cache": cache,
            "format": "compact-v2",
            "status": "Status.gdb",
            "crs": {"code": "EPSG:3857", "units": "m", "label": "EPSG:3857"},
            "tileSize": [256, 256],
            "tileFormat": "PNG",
            "lods": 0,
            "job": None,
            "version": "0",
        },
        "totals": {
            "bundles": 0,
            "tilesExpected": 0,
            "tilesPresent": 0,
            "tilesStray": 0,
            "tileBytes": 0,
            "percentComplete": None,
            "states": {},
        },
        "levels": [],
        "problems": [],
        "grid": None,
        "extent": None,
        "bundleLevels": [],
        "areaLevels": [],
        "states": [],
    }


def test_a_capped_level_says_so_on_the_page(built, tmp_path):
    from cachestatus.reportpage import write_html
    from cachestatus.request import CacheSource

    result = write_html(CacheSource(built.cache), built.status, tmp_path / "p.html", max_rows=2)
    assert result.bundles_total == len(task_rows(built.status, ["levelID"])) == 8
    assert result.bundles_embedded == 4 + 2  # levels 0-3 hold one row each, level 8 four
    page = (tmp_path / "p.html").read_text()
    assert "2 of 4 bundles of level 8 embedded" in page
    level8 = blob(page, "cachestatus-data")["bundles"]["8"]
    assert "CORRUPT" in [level8["states"][s] for s in level8["status"]]


def test_the_cache_is_never_written(built, tmp_path):
    from tests.helpers import tree_snapshot

    before = tree_snapshot(built.cache)
    inside = built.cache / "_alllayers" / "page.html"
    code, _, err = run("html", built.cache, "--status", built.status, "--out", inside)
    assert code == 2 and "lies inside the cache" in err and not inside.exists()
    write(built, tmp_path / "page.html")
    assert tree_snapshot(built.cache) == before
    code, _, err = run(
        "html", built.cache, "--status", built.status, "--out", tmp_path / "no/p.html"
    )
    assert code == 2 and "does not exist" in err


def test_the_sample_cache_page_goes_beside_its_default_store(sample):
    from tests.report_cache import rebuild

    rebuild(sample, sample / "Status.gdb")
    code, out, _ = run("html", sample, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["path"] == str(sample / "Status.html")
    assert doc["background_tiles"] == 21 and doc["bundles_total"] == 3


def test_names_that_are_not_bundles_come_from_a_listing_that_can_be_skipped(built):
    from cachestatus import open_cache

    with open_cache(built.cache) as reader:
        listed = page_data(built.status, reader)["problems"]
        skipped = page_data(built.status, reader, list_names=False)["problems"]
    assert [p["kind"] for p in listed] == ["CORRUPT", "bad-name"]
    assert [p["kind"] for p in skipped] == ["CORRUPT"]


def test_levels_the_cache_lacks_exit_2_as_in_other_commands(built, tmp_path):
    out = tmp_path / "page.html"
    code, _, err = run(
        "html", built.cache, "--status", built.status, "--out", out, "--levels", "99"
    )
    assert code == 2 and "level 99 is not a level" in err and not out.exists()
    same = run("verify", built.cache, "--levels", "99")
    assert same[0] == 2 and same[2] == err


def test_rebuild_checks_out_before_the_scan(built, tmp_path):
    store = tmp_path / "Never.gdb"
    inside = Path(built.cache) / "page.html"
    code, _, err = run("html", built.cache, "--status", store, "--rebuild", "--out", inside)
    assert code == 2 and "page.html" in err and not store.exists() and not inside.exists()
    code, _, err = run(
        "html", built.cache, "--status", store, "--rebuild", "--out", tmp_path / "no" / "p.html"
    )
    assert code == 2 and "does not exist" in err and not store.exists()


def test_a_bad_budget_names_the_option(built, tmp_path):
    code, _, err = run("html", built.cache, "--status", built.status, "--background-budget", "lots")
    assert code == 2 and err.startswith("Error: --background-budget 'lots' is not a size")


def test_the_rows_of_each_status_are_counted_in_one_read(built, monkeypatch):
    """The level table's counts per status are GDAL's count of the stored rows, from one read
    of ``TaskStatus`` for all statuses (and one for the problem rows), not one per status."""
    import pyogrio.raw

    from cachestatus import open_cache

    reads = []
    real = pyogrio.raw.read

    def counted(path, *args, **kwargs):
        reads.append(kwargs.get("layer"))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pyogrio.raw, "read", counted)
    with open_cache(built.cache) as reader:
        data = page_data(built.status, reader, list_names=False)
    assert reads.count("TaskStatus") == 2
    expected: dict[int, dict[str, int]] = {}
    for row in task_rows(built.status, ["levelID", "status"]).values():
        states = expected.setdefault(row["levelID"], {})
        states[row["status"]] = states.get(row["status"], 0) + 1
    assert {row["level"]: row["states"] for row in data["levels"] if row["states"]} == expected
    assert {s for states in expected.values() for s in states} >= {"COMPLETE", "CORRUPT"}


def test_a_page_reads_the_missing_areas_of_each_level_once(built, tmp_path, monkeypatch):
    """The page embeds each level's MissingAreas reading only that level's rows: as many rows
    read in all as GDAL counts in the table, not every level's rows once per level."""
    import pyogrio.raw

    from cachestatus.reportpage import write_html
    from cachestatus.request import CacheSource

    stored = pyogrio.raw.read(str(built.status), layer="MissingAreas", read_geometry=False)
    levels = stored[3][stored[0]["fields"].tolist().index("levelID")].tolist()
    assert len(set(levels)) > 1
    read = []
    real = pyogrio.raw.read

    def counted(path, *args, **kwargs):
        answer = real(path, *args, **kwargs)
        if kwargs.get("layer") == "MissingAreas" and kwargs.get("read_geometry"):
            read.extend(answer[3][answer[0]["fields"].tolist().index("levelID")].tolist())
        return answer

    monkeypatch.setattr(pyogrio.raw, "read", counted)
    result = write_html(CacheSource(built.cache), built.status, tmp_path / "p.html")
    assert sorted(read) == sorted(levels)
    embedded = blob((tmp_path / "p.html").read_text(), "cachestatus-data")["bundles"]
    drawn = [
        feature["properties"]["level"]
        for level in embedded.values()
        for feature in level["missing"]["features"]
    ]
    assert sorted(drawn) == sorted(levels) and result.levels == list(range(10))


def test_the_level_table_is_read_once_for_the_whole_page(built, tmp_path, monkeypatch):
    """``LevelStatus`` is read once: for the table, each embedded level's resolution and the
    background (it was read once more per level and for the background); the page is the same
    as when each part reads it itself."""
    from cachestatus.reportpage import data, html
    from cachestatus.store import reader

    before = tmp_path / "before.html"
    write(built, before, "--background", "tiles")
    calls = []

    def counted(path):
        calls.append(path)
        return reader.read_levels(path)

    for module in (data, html):
        monkeypatch.setattr(module, "read_levels", counted)
    write(built, tmp_path / "after.html", "--background", "tiles")
    assert len(calls) == 1
    assert (tmp_path / "after.html").read_bytes() == before.read_bytes()
    # Each part still reads it when it is not given.
    assert level_bundles(built.status, 8) == level_bundles(
        built.status, 8, {lv.level: lv.resolution for lv in reader.read_levels(built.status)}[8]
    )
