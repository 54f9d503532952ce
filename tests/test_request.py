"""A run's request: the objects the API, CLI and tool build, the keyword API over them, and the
Jobs table that records a request whole, so that a stored job runs again to the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shapely
from pyogrio.raw import read

import cachestatus
from cachestatus import operations
from cachestatus.errors import StatusNotFound, UsageError
from cachestatus.request import (
    CacheSource,
    Counting,
    Coverage,
    Execution,
    ReportStore,
    StatusStore,
    request_json,
)
from cachestatus.selection import parse_levels
from tests.helpers import WEB_MERCATOR_HALF


def _rows(status: str | Path) -> list[tuple]:
    """The TaskStatus rows, every field but jobID (a null count read as None, not NaN)."""
    _, _, _, values = read(str(status), layer="TaskStatus", read_geometry=False)
    rows = zip(*[v.tolist() for v in values], strict=True)
    return sorted(
        (r[0], *(None if isinstance(v, float) and v != v else v for v in r[2:])) for r in rows
    )


def _jobs(status: str | Path) -> list[dict]:
    meta, _, _, values = read(str(status), layer="Jobs", read_geometry=False)
    return [dict(zip(meta["fields"], row, strict=True)) for row in zip(*values, strict=True)]


def test_each_part_goes_to_json_and_back():
    parts = [
        CacheSource("/data/cache.gpkg", "geopackage", "roads", None, sizes=True),
        Coverage([3, 4], [1e6], "/data/county.gpkg", "parcels", (1.0, 2.0, 3.0, 4.0), "EPSG:4326"),
        Execution(workers=3),
        Counting(blank=True, max_missing_rows=None),
        StatusStore("/data/Status.gpkg", "gpkg", big_integer=True),
        ReportStore("/tmp/report", "gpkg", overwrite=True),
    ]
    for part in parts:
        data = json.loads(json.dumps(part.to_json()))
        again = type(part).from_json(data)
        assert again.to_json() == part.to_json(), part
    assert Coverage.from_json(parts[1].to_json()) == Coverage(
        [3, 4], [1e6], "/data/county.gpkg", "parcels", [1.0, 2.0, 3.0, 4.0], "EPSG:4326"
    )


def test_the_parts_of_one_request_never_share_a_key():
    parts = [CacheSource("c"), Coverage(), Execution(), Counting(), StatusStore()]
    keys = [key for part in parts for key in part.to_json()]
    assert len(keys) == len(set(keys))
    assert set(request_json(*parts, levels=None)) == set(keys)
    assert set(ReportStore("r").to_json()) - set(StatusStore().to_json()) == {
        "out_folder",
        "overwrite",
    }


def test_json_is_exact_and_holds_only_plain_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    area = shapely.Polygon([(0.1, 0.2), (1 / 3, 0.2), (0.1, 2 / 3)])
    data = Coverage(parse_levels("0-99999999999"), "1e6;2e6", area).to_json()
    assert data["levels"] == "0-99999999999"  # a range is never spelt out
    assert data["scales"] == [1e6, 2e6]
    assert shapely.from_wkb(data["aoi"]["wkb"]).equals_exact(area, 0)  # every digit kept
    # Relative paths are recorded absolute: a replay may run from another folder.
    assert CacheSource("cache").to_json()["cache"] == str(tmp_path / "cache")
    assert Coverage(aoi="/vsicurl/https://host/a.geojson").to_json()["aoi"] == (
        "/vsicurl/https://host/a.geojson"
    )
    assert json.loads(json.dumps(data)) == data


def test_keyword_api_builds_the_objects_and_refuses_unknown_keywords(sample, tmp_path):
    with pytest.raises(TypeError, match=r"rebuild\(\) got an unexpected keyword argument 'nope'"):
        operations.rebuild(sample, nope=1)
    # missing and verify never took sizes, nor rebuild an area.
    with pytest.raises(TypeError, match="'sizes'"):
        operations.missing(sample, tmp_path / "m.geojson", sizes=True)
    with pytest.raises(TypeError, match="'aoi'"):
        operations.rebuild(sample, aoi="county.gpkg")
    with pytest.raises(TypeError, match="positional"):
        operations.rebuild(sample, None, "gdb")
    # Values are checked where they always were, with the same messages.
    with pytest.raises(UsageError, match="max_missing_rows=None: give a whole number"):
        operations.rebuild(sample, max_missing_rows=None, workers=1)
    by_keywords = operations.rebuild(sample, tmp_path / "k.gpkg", workers=1, levels=[1])
    by_objects = operations.run_rebuild(
        CacheSource(sample),
        StatusStore(tmp_path / "o.gpkg"),
        levels=[1],
        execution=Execution(workers=1),
    )
    assert by_keywords.levels == by_objects.levels
    assert _rows(by_keywords.status_path) == _rows(by_objects.status_path)


def test_a_replayed_rebuild_gives_the_same_rows(sample, tmp_path):
    status = tmp_path / "Status.gpkg"
    first = operations.rebuild(
        sample, status, workers=1, levels=[0, 1], blank=True, sizes=True, max_missing_rows=5
    )
    rows = _rows(status)
    assert {r[1] for r in rows} == {0, 1}  # levelID: only the levels asked for
    assert all(r[-1] is not None for r in rows)  # tilesBlank: counted
    params = json.loads(_jobs(status)[0]["parameters"])
    # The keys earlier versions recorded, and the rest of the request.
    assert params["levels"] == [0, 1] and params["blank"] is True and params["workers"] == 1
    assert params["max_missing_rows"] == 5 and params["status"] == str(status)
    assert params["cache"] == str(sample) and params["sizes"] is True
    assert params["format_hint"] is None and params["store_format"] is None

    again = cachestatus.replay(status)
    assert again.mode == operations.REBUILD and again.job_id != first.job_id
    assert again.levels == first.levels
    assert _rows(status) == rows
    jobs = _jobs(status)
    assert [j["jobID"] for j in jobs] == [first.job_id, again.job_id]  # history kept
    assert json.loads(jobs[1]["parameters"]) == params


def test_a_replayed_report_gives_the_same_rows(sample, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths, replayed from elsewhere
    area = shapely.box(-WEB_MERCATOR_HALF, 0, 0, WEB_MERCATOR_HALF)  # the north-west quarter
    first = operations.report(
        sample,
        "report",
        levels="1-2",
        aoi=area,
        store_format="gpkg",
        max_missing_rows=None,
        workers=1,
    )
    store = tmp_path / "report" / "Status.gpkg"
    assert first.status_path == str(Path("report") / "Status.gpkg")
    rows = _rows(store)
    params = json.loads(_jobs(store)[0]["parameters"])
    assert params["levels"] == [1, 2] and params["scales"] is None
    assert params["area_of_interest"] == "a shapely geometry"
    assert params["out_folder"] == str(tmp_path / "report") and params["status"] == str(store)

    monkeypatch.chdir(sample)
    again = operations.replay(store, execution=Execution(workers=1))
    assert again.mode == operations.REPORT and again.status_path == str(store)
    assert again.levels == first.levels
    assert _rows(store) == rows  # replaced (overwrite), the same rows


def test_replay_names_what_it_cannot_run(sample, tmp_path):
    with pytest.raises(StatusNotFound, match="no status store here"):
        operations.replay(tmp_path / "none.gdb")
    report = operations.rebuild(sample, workers=1, levels=[0])  # beside conf.xml
    with pytest.raises(UsageError, match="no job nope in its Jobs table"):
        operations.replay(report.status_path, "nope")
    again = operations.replay(report.status_path, report.job_id)
    assert again.status_path == report.status_path and again.levels == report.levels


def test_every_field_of_a_request_object_is_a_keyword_of_the_api():
    """A new field on a request object reaches the keyword API: its keyword list names it."""
    from dataclasses import fields

    from cachestatus import operations, request

    def names(kind: type) -> set[str]:
        return {f.name for f in fields(kind)}

    assert request.SourceKeywords.__optional_keys__ == names(request.CacheSource) - {"path"}
    assert request.CoverageKeywords.__optional_keys__ == names(request.Coverage)
    assert request.ExecutionKeywords.__optional_keys__ == names(request.Execution)
    assert request.CountingKeywords.__optional_keys__ == names(request.Counting)
    assert request.StoreKeywords.__optional_keys__ == names(request.StatusStore) - {"path"}
    report_store = names(request.ReportStore) - {"folder"}
    assert report_store <= operations.ReportOptions.__optional_keys__
