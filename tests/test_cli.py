"""The command line: output, JSON contract, exit codes and messages."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cachestatus import __version__
from cachestatus.cli import main
from tests.helpers import write_conf


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_version():
    code, out, _ = run("--version")
    assert code == 0 and __version__ in out


def test_info_json(sample):
    code, out, _ = run("info", sample, "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["format"] == "compact-v2"
    assert doc["spatial_reference"]["wkid"] == 3857
    assert [lv["bundle_files"] for lv in doc["levels"][:4]] == [1, 1, 1, 0]
    assert [lv["tiles_expected"] for lv in doc["levels"][:3]] == [1, 4, 16]


def test_info_table(sample):
    code, out, _ = run("info", sample)
    assert code == 0 and "compact-v2" in out and "WKID 3857" in out


def test_rebuild_json_contract(sample):
    code, out, err = run("rebuild", sample, "--json", "--workers", "1")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["mode"] == "REBUILD_CACHE_STATUS" and doc["format"] == "compact-v2"
    assert doc["status_path"] == str(sample / "Status.gdb")
    assert [(lv["level"], lv["tiles_present"], lv["tile_bytes"]) for lv in doc["levels"][:3]] == [
        (0, 1, 40116),
        (1, 4, 136524),
        (2, 16, 320629),
    ]
    assert doc["levels"][0]["percent_complete"] == 100.0
    assert doc["totals"]["bundles"] == 3 and doc["totals"]["tiles_present"] == 21
    assert doc["totals"]["tile_bytes"] == 497269
    assert doc["problems"] == [] and isinstance(doc["elapsed_s"], float)
    for key in ("cache", "job_id", "levels", "totals"):
        assert key in doc


def test_summary_and_delete(sample):
    assert run("rebuild", sample, "--workers", "1")[0] == 0
    code, out, _ = run("summary", sample, "--json")
    assert code == 0 and json.loads(out)["totals"]["tiles_present"] == 21
    code, out, _ = run("summary", sample)
    assert code == 0 and "320,629" in out
    code, _, err = run("delete", sample)
    assert code == 0 and "Deleted" in err and not (sample / "Status.gdb").exists()
    code, _, err = run("delete", sample)
    assert code == 0 and "No cache status to delete" in err


def test_corrupt_bundle_is_reported_not_fatal(sample):
    bundle = sample / "_alllayers/L01/R0000C0000.bundle"
    bundle.write_bytes(bundle.read_bytes()[:5000])
    code, out, err = run("rebuild", sample, "--json", "--workers", "1")
    assert code == 0
    doc = json.loads(out)
    assert doc["problems"] == [
        {
            "bundle": "L01/R0000C0000",
            "kind": "corrupt",
            "detail": "truncated: 5,000 bytes, a Compact V2 bundle holds at least 131,136 "
            "(header and index)",
        }
    ]
    assert "L01/R0000C0000: corrupt: truncated" in err.replace("\n", " ")
    assert [lv["tiles_present"] for lv in doc["levels"][:3]] == [1, 0, 16]  # the scan went on
    code, out, _ = run("summary", sample, "--json")
    assert json.loads(out)["problems"][0]["bundle"] == "L01/R0000C0000"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rebuild", "/no/such/cache"], "/no/such/cache: no such file or folder"),
        (["summary", "{tmp}"], "not a tile cache cachestatus can read"),
        (["rebuild", "{sample}", "--status", "{tmp}/x.txt"], "must end in .gdb"),
        (["summary", "{sample}"], "no status store here; run `cachestatus rebuild` first"),
        (["info", "{garbage}"], "conf.xml: not valid XML"),
        (["rebuild", "{sample}", "--format-hint", "nope"], "Invalid value for '--format-hint'"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, sample, args, message):
    garbage = tmp_path / "garbage"
    write_conf(garbage, 2)
    (garbage / "conf.xml").write_text("<CacheInfo><oops")
    args = [a.format(tmp=tmp_path, sample=sample, garbage=garbage) for a in args]
    code, out, err = run(*args)
    assert code == 2
    assert message in err.replace("\n", " ")
    assert "Traceback" not in err and out == ""


def _subprocess(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cachestatus.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_subprocess_exit_codes_and_streams(sample, tmp_path):
    done = _subprocess("rebuild", sample, "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["totals"]["tiles_present"] == 21
    assert "Scanning" not in done.stderr  # no progress bar when stderr is not a terminal
    shown = _subprocess("rebuild", sample, "--progress", "--json")
    assert shown.returncode == 0 and "bundles" in shown.stderr and "3/3" in shown.stderr
    bad = _subprocess("summary", tmp_path / "missing")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0  # one line
    verbose = _subprocess("-v", "summary", tmp_path / "missing")
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr


def test_garbage_collection_left_to_the_host(sample):
    """Run in-process, a command leaves the host's garbage collector as it is; run as the
    program, the objects its start-up made are moved out of the collector's reach."""
    frozen = gc.get_freeze_count()
    code, _, _ = run("info", sample, "--json")
    assert code == 0 and gc.get_freeze_count() == frozen
    probe = (
        "import atexit, gc, runpy, sys; "
        "atexit.register(lambda: print(gc.get_freeze_count(), file=sys.stderr)); "
        "sys.argv = ['cachestatus', 'info', sys.argv[1], '--json']; "
        "runpy.run_module('cachestatus.cli', run_name='__main__', alter_sys=True)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(sample)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and json.loads(done.stdout)["format"] == "compact-v2"
    assert int(done.stderr.split()[-1]) > 10_000  # numpy's, click's and our modules' objects


def test_quiet_hides_warnings(sample):
    (sample / "_alllayers/L25").mkdir()
    code, _, err = run("rebuild", sample, "--workers", "1")
    assert code == 0 and "level folder L25 is not a level of the tiling scheme" in err
    code, _, err = run("-q", "rebuild", sample, "--workers", "1")
    assert code == 0 and "L25" not in err


def test_run_failure_exits_1_and_keeps_the_previous_status(sample, monkeypatch):
    import errno

    from cachestatus.store import writer

    assert run("rebuild", sample, "--workers", "1")[0] == 0
    before = json.loads(run("summary", sample, "--json")[1])

    def fail(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    # The new store is written whole, then the swap fails (a share gone away).
    monkeypatch.setattr(writer.atomic, "replace", fail)
    code, _, err = run("rebuild", sample, "--workers", "1")
    assert code == 1 and "nothing was changed" in err and "Traceback" not in err
    monkeypatch.undo()
    after = json.loads(run("summary", sample, "--json")[1])
    assert after == before
    assert [p.name for p in sample.iterdir() if p.name.startswith(".Status")] == []


def test_a_crs_that_cannot_be_written_gives_a_store_without_one(sample):
    """A WKT neither PROJ nor GDAL can read: known before the scan, the store is written
    without a CRS and a warning says so (it used to fail the write after the whole scan)."""
    conf = sample / "conf.xml"
    text = conf.read_text()
    start, end = text.index("<SpatialReference"), text.index("</SpatialReference>")
    conf.write_text(text[:start] + "<SpatialReference><WKT>PROJCS[nonsense</WKT>" + text[end:])
    code, _, err = run("rebuild", sample, "--workers", "1")
    assert code == 0 and "Traceback" not in err
    assert "PROJCS[nonsense" in err and "without a coordinate system" in err
    assert json.loads(run("summary", sample, "--json")[1])["totals"]["tiles_present"] == 21


def test_main_module_runs(sample):
    assert Path(sys.executable).exists()
    done = _subprocess("info", sample)
    assert done.returncode == 0 and "compact-v2" in done.stdout
