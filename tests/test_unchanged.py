"""A rebuild of an unchanged cache into a GeoPackage store is answered through SQLite, without
numpy or GDAL (:mod:`cachestatus.unchanged`): the program must then leave the very store, print
the very output and exit with the very code the normal path does, and leave every run it has a
doubt about to the normal path.

The stores are compared through SQLite and GDAL (pyogrio); the normal path runs through the
command line's group (click), which the fast path is never part of.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from pyogrio.raw import read, write

from cachestatus import rebuild, unchanged
from cachestatus.cli import main
from cachestatus.store.lock import StoreLock
from cachestatus.store.partial import stored_time
from tests.helpers import SRC, conf_cdi
from tests.test_gpkg_update import _copy_rows
from tests.test_incremental import (
    BASE,
    EXTRA,
    HOUR,
    RACY_NS,
    _bundle,
    _copy,
    _plain,
    caches,
)

__all__ = ["caches"]  # the fixture, shared with the incremental tests


@pytest.fixture
def rebuilt(caches: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the base cache, and its ``.gpkg`` store written by a full rebuild."""
    cache = _copy(caches[0], tmp_path / "cache")
    store = tmp_path / "Status.gpkg"
    rebuild(cache, store)
    return cache, store


def _program(*args: object) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``cachestatus ARGS`` as a process, and the modules it imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cachestatus.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    imported = set(re.findall(r"^import time:.*\|\s*(\S+)$", done.stderr, re.MULTILINE))
    done.stderr = "".join(
        line for line in done.stderr.splitlines(keepends=True) if not line.startswith("import ")
    )
    return done, imported


def _normal(*args: object) -> Any:
    """``cachestatus ARGS`` through the command line's group: the normal path."""
    return CliRunner().invoke(main, [str(a) for a in args])


def _rows(store: Path, table: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(store) as db:
        return db.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()


def _tables(store: Path) -> list[str]:
    with sqlite3.connect(store) as db:
        return [name for (name,) in db.execute("SELECT name FROM sqlite_master ORDER BY name")]


def _gdal(store: Path, layer: str) -> list[dict[str, Any]]:
    meta, _, wkb, values = read(str(store), layer=layer, read_geometry=True)
    columns = {name: column.tolist() for name, column in zip(meta["fields"], values, strict=True)}
    if wkb is not None:
        columns["geometry"] = list(wkb)
    return [{k: _plain(v[i]) for k, v in columns.items()} for i in range(len(values[0]))]


# --- The fast path is taken, and leaves what the normal path leaves ---------------------------


#: Options that only say how a scan would run: answered too, and recorded as the normal path
#: records them.
HOW_TO_RUN = {
    "plain": [],
    "workers": ["--workers", "1"],
    "in flight, no bar": ["--io-concurrency=8", "--no-progress"],
}


@pytest.mark.parametrize("how", sorted(HOW_TO_RUN))
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_unchanged_rebuild_is_answered_without_numpy_as_the_normal_path_answers(
    rebuilt: tuple[Path, Path], tmp_path: Path, as_json: bool, how: str
) -> None:
    cache, store = rebuilt
    before, fast_store = tmp_path / "Before.gpkg", tmp_path / "Fast.gpkg"
    shutil.copyfile(store, before)
    output = (["--json"] if as_json else []) + HOW_TO_RUN[how]

    fast, imported = _program("rebuild", cache, "--status", store, *output)
    shutil.copyfile(store, fast_store)
    shutil.copyfile(before, store)  # the same store at the same path: the same request
    normal = _normal("rebuild", cache, "--status", store, *output)

    assert fast.returncode == normal.exit_code == 0, (fast.stderr, normal.output)
    assert "numpy" not in imported and "pyogrio" not in imported and "click" not in imported
    assert "cachestatus.unchanged" in imported and "rich" not in imported  # the table too
    fast_job, normal_job = (_rows(s, "Jobs")[-1] for s in (fast_store, store))
    # The output: the same but for the job's ID and the time it took.
    fast_out = fast.stdout.replace(fast_job[1], "JOB")
    normal_out = normal.stdout.replace(normal_job[1], "JOB")
    if as_json:
        fast_doc, normal_doc = json.loads(fast_out), json.loads(normal_out)
        for doc in (fast_doc, normal_doc):
            assert doc.pop("elapsed_s") >= 0
        assert fast_doc == normal_doc
        assert fast_doc["totals"]["bundles_read"] == 0
        assert fast_doc["totals"]["bundles_reused"] == len(BASE)
    else:
        assert fast_out == normal_out
        assert fast.stderr == normal.stderr
        assert f"0 bundles read, {len(BASE)} reused" in fast.stderr
    assert_same_carried_store(fast_store, store)


def assert_same_carried_store(fast: Path, normal: Path) -> None:
    """Two stores carried over from one: the same tables, rows and GeoPackage metadata, but for
    the new job's ID and times (and the times GDAL would stamp: ``last_change``)."""
    assert _tables(fast) == _tables(normal)
    fast_jobs, normal_jobs = _rows(fast, "Jobs"), _rows(normal, "Jobs")
    assert fast_jobs[:-1] == normal_jobs[:-1]
    new_ids = {fast_jobs[-1][1]: "JOB", normal_jobs[-1][1]: "JOB"}
    with sqlite3.connect(fast) as db:
        storage = db.execute("SELECT * FROM Jobs ORDER BY fid").description
    names = [d[0] for d in storage]
    for name, a, b in zip(names, fast_jobs[-1], normal_jobs[-1], strict=True):
        if name in ("jobID", "started", "finished"):
            continue
        assert a == b, name
    for name in ("started", "finished"):  # stored as GDAL stores a time: no zone
        at = names.index(name)
        for jobs in (fast_jobs, normal_jobs):
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?", jobs[-1][at])
    for table in ("TaskStatus", "BundleFiles", "MissingAreas", "gpkg_ogr_contents"):
        assert _rows(fast, table) == _rows(normal, table), table
    levels = [[new_ids.get(v, v) for v in row] for row in _rows(fast, "LevelStatus")]
    assert levels == [[new_ids.get(v, v) for v in row] for row in _rows(normal, "LevelStatus")]
    contents = [row[:4] + row[5:] for row in _rows(fast, "gpkg_contents")]
    assert contents == [row[:4] + row[5:] for row in _rows(normal, "gpkg_contents")]
    # The same through GDAL: every layer, every field.
    for layer in ("TaskStatus", "BundleFiles", "MissingAreas"):
        assert _gdal(fast, layer) == _gdal(normal, layer), layer
    for layer in ("LevelStatus", "Jobs"):
        strip = ("jobID", "started", "finished")
        assert [{k: v for k, v in row.items() if k not in strip} for row in _gdal(fast, layer)] == [
            {k: v for k, v in row.items() if k not in strip} for row in _gdal(normal, layer)
        ]


def test_the_job_row_is_stored_as_gdal_stores_it(rebuilt: tuple[Path, Path]) -> None:
    cache, store = rebuilt
    done, _ = _program("-q", "rebuild", cache, "--status", store, "--json")
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(store) as db:
        names = [d[0] for d in db.execute("SELECT * FROM Jobs").description]
        types = db.execute(
            f"SELECT {', '.join(f'typeof({name})' for name in names)} FROM Jobs ORDER BY fid"
        ).fetchall()
    # The first row written by GDAL, the second through SQLite: stored alike.
    assert len(types) == 2 and types[0] == types[1]
    first, second = _gdal(store, "Jobs")
    assert (first["bundlesRead"], first["bundlesReused"]) == (len(BASE), 0)
    assert (second["bundlesRead"], second["bundlesReused"]) == (0, len(BASE))
    assert first["finished"] <= second["started"] <= second["finished"]
    assert first["parameters"] == second["parameters"]


@pytest.mark.parametrize("ms", [0, 7, 250])
def test_times_are_stored_as_gdal_stores_them(tmp_path: Path, ms: int) -> None:
    from datetime import UTC, datetime

    when = datetime(2026, 12, 1, 8, 41, 19, ms * 1000 + 999, tzinfo=UTC)
    path = tmp_path / "t.gpkg"
    value = np.array([np.datetime64(when.replace(tzinfo=None), "ms")])
    write(str(path), None, [value], ["t"], layer="t", driver="GPKG")
    with sqlite3.connect(path) as db:
        (stored,) = db.execute("SELECT t FROM t").fetchone()
    assert stored_time(when) == stored


# --- Any doubt: the normal path --------------------------------------------------------------


def _answer(cache: Path, store: Path, *more: str) -> int | None:
    return unchanged.answer(["rebuild", str(cache), "--status", str(store), *more])


def _touch(path: Path) -> None:
    when = time.time_ns() - HOUR + 10**6
    os.utime(path, ns=(when, when))


def _grow(path: Path) -> None:
    """One byte more at the end of ``path``, its mtime kept."""
    stat = path.stat()
    with path.open("ab") as f:
        f.write(b"\0")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _another_level_bundle(cache: Path) -> None:
    """A level folder the tiling scheme lacks, holding a bundle as the store's were (dated so)."""
    (cache / "_alllayers" / "L99").mkdir()
    shutil.copy2(_bundle(cache, BASE[0]), cache / "_alllayers" / "L99" / "R0000C0000.bundle")


DOUBTS = {
    "touched": lambda cache: _touch(_bundle(cache, BASE[0])),
    "grown": lambda cache: _grow(_bundle(cache, BASE[0])),
    "removed": lambda cache: _bundle(cache, BASE[0]).unlink(),
    "added": lambda cache: shutil.copy2(_bundle(cache, BASE[0]), _bundle(cache, EXTRA[0])),
    "locked": lambda cache: _bundle(cache, BASE[0]).with_suffix(".lock").write_bytes(b""),
    "odd name": lambda cache: _bundle(cache, BASE[0]).rename(
        _bundle(cache, BASE[0]).with_name("R00000C0000.bundle")
    ),
    "another level": lambda cache: (cache / "_alllayers" / "L99").mkdir(),
    "another level's bundle": lambda cache: _another_level_bundle(cache),
    "full extent": lambda cache: (cache / "conf.cdi").write_text(conf_cdi((-1e6, -1e6, 1e6, 1e6))),
    "racy": lambda cache: os.utime(  # the next run starts less than RACY_NS * 3/4 after
        _bundle(cache, BASE[0]), ns=(time.time_ns() - RACY_NS // 4,) * 2
    ),
}


#: Bundles the normal path reads after each change (an oddly named bundle is the same file).
READ_AFTER = {
    "touched": 1,
    "grown": 1,
    "removed": 0,
    "added": 1,
    "locked": 1,
    "odd name": 0,
    "another level": 0,
    "another level's bundle": 0,
    "full extent": len(BASE),
    "racy": 1,
}


@pytest.mark.parametrize("doubt", sorted(DOUBTS))
def test_a_changed_cache_is_left_to_the_normal_path(
    rebuilt: tuple[Path, Path], doubt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cache, store = rebuilt
    DOUBTS[doubt](cache)
    if doubt == "racy":  # a bundle written just before the previous run started
        rebuild(cache, store, reuse=False)
    before = _rows(store, "Jobs")
    assert _answer(cache, store) is None
    assert _rows(store, "Jobs") == before  # nothing written
    assert capsys.readouterr().out == ""
    assert not list(store.parent.glob(".Status*"))  # no temporary copy, no lock left
    again = _normal("rebuild", cache, "--status", store, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["totals"]["bundles_read"] == READ_AFTER[doubt]


def test_a_store_unread_is_left_to_the_normal_path(rebuilt: tuple[Path, Path]) -> None:
    cache, store = rebuilt
    with sqlite3.connect(store) as db:  # read while the files are listed: it fails there
        db.execute("ALTER TABLE BundleFiles RENAME COLUMN stamp TO stamp_")
    assert _answer(cache, store) is None
    with sqlite3.connect(store) as db:
        db.execute("ALTER TABLE BundleFiles RENAME COLUMN stamp_ TO stamp")
    assert _answer(cache, store) == 0


@pytest.mark.parametrize("reader", ["_stored", "_file_rows"])
def test_the_store_is_read_to_the_end_whatever_ends_the_listing(
    rebuilt: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    """A file beside the level folders ends the listing before the store's lines (or its
    ``TaskStatus`` rows' tally) are asked for: the thread reading them is still waited for, so
    that no connection outlives the answer."""
    cache, store = rebuilt
    (cache / "_alllayers" / "notes.txt").write_text("seeded by hand")
    read = getattr(unchanged, reader)
    finished = threading.Event()

    def slow(path: Path) -> Any:
        time.sleep(0.3)
        try:
            return read(path)
        finally:
            finished.set()

    monkeypatch.setattr(unchanged, reader, slow)
    assert _answer(cache, store) is None
    assert finished.is_set()


_NAMING_INTERRUPTED = """
import os, signal, sys
write = os.write
def interrupted(fd, data):
    try:
        opened = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        opened = ""
    if opened.endswith(".lock"):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the run names itself in the lock
    return write(fd, data)
os.write = interrupted
sys.argv = ["cachestatus", *sys.argv[1:]]
from cachestatus.cli import run
run()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_as_the_answer_takes_the_lock_leaves_none_that_holds_off_the_next_run(
    rebuilt: tuple[Path, Path],
) -> None:
    cache, store = rebuilt
    before = _rows(store, "Jobs")
    done = subprocess.run(
        [sys.executable, "-c", _NAMING_INTERRUPTED, "rebuild", str(cache), "--status", str(store)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr == "Error: interrupted (SIGINT); nothing was changed\n"
    assert _rows(store, "Jobs") == before
    assert _answer(cache, store) == 0  # at once: a lock left names a run that has ended
    assert not list(store.parent.glob(".Status*"))


@pytest.mark.parametrize(
    "change",
    [
        "stamp = '0' || stamp",
        "stamp = stamp || '.0'",
        "stamp = NULL",
        "fileBytes = fileBytes + 0.25",
        "fileBytes = fileBytes || 'x'",
        "fileBytes = NULL",
    ],
)
def test_a_size_or_stamp_not_written_as_an_integer_is_left_to_the_normal_path(
    rebuilt: tuple[Path, Path], change: str
) -> None:
    cache, store = rebuilt
    with sqlite3.connect(store) as db:
        db.execute(f"UPDATE BundleFiles SET {change} WHERE fid = 1")
    before = _rows(store, "Jobs")
    assert _answer(cache, store) is None
    assert _rows(store, "Jobs") == before


def _file_keys(store: Path) -> list[tuple[int, int, int]]:
    with sqlite3.connect(store) as db:
        return db.execute(
            "SELECT levelID, bundleRow, bundleCol FROM TaskStatus WHERE status <> 'MISSING'"
        ).fetchall()


@pytest.mark.parametrize("one_gone", [False, True], ids=["twice", "twice, another gone"])
def test_a_task_status_row_held_twice_is_left_to_the_normal_path(
    rebuilt: tuple[Path, Path], one_gone: bool
) -> None:
    """A bundle file's ``TaskStatus`` row held twice (another program copied it), told by the
    rows' count, or, with another bundle's row gone, by the sums of their keys: the normal
    path deletes the copy (and reads the other bundle again), and answers as the fast path
    does from then on."""
    cache, store = rebuilt
    _copy_rows(store, "TaskStatus", BASE[:1])
    if one_gone:
        level, row, col = BASE[1]
        with sqlite3.connect(store) as db:
            db.execute(
                "DELETE FROM TaskStatus WHERE levelID = ? AND bundleRow = ? AND bundleCol = ?",
                (level, row * 128, col * 128),
            )
    assert len(_file_keys(store)) == len(BASE) + (not one_gone)
    before = _rows(store, "Jobs")
    assert _answer(cache, store) is None
    assert _rows(store, "Jobs") == before
    again = _normal("rebuild", cache, "--status", store, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["totals"]["bundles_read"] == int(one_gone)
    assert len(set(_file_keys(store))) == len(_file_keys(store)) == len(BASE)
    assert _answer(cache, store) == 0


@pytest.mark.parametrize(
    "more",
    [
        ["--max-missing-rows", "3"],
        ["--full"],
        ["--format", "gdb"],
        ["-v"],
        ["--progress"],
        ["--workers", "999"],  # clamped, with a warning
        ["--workers", "two"],
        ["--io-concurrency", "0"],
    ],
    ids=" ".join,
)
def test_other_options_are_left_to_the_normal_path(
    rebuilt: tuple[Path, Path], more: list[str]
) -> None:
    cache, store = rebuilt
    assert _answer(cache, store, *more) is None
    assert unchanged.Command.match(["rebuild", str(cache), "--status", str(store), *more]) is None


def test_a_run_with_warnings_is_left_to_the_normal_path(rebuilt: tuple[Path, Path]) -> None:
    cache, store = rebuilt
    (_bundle(cache, BASE[0]).parent / "R0000Cxyz.bundle").write_bytes(b"")  # a problem
    rebuild(cache, store)
    assert _answer(cache, store) is None
    again = _normal("rebuild", cache, "--status", store, "--json")
    assert json.loads(again.stdout)["problems"]


def test_a_gdb_store_is_left_to_the_normal_path(caches: tuple[Path, Path], tmp_path: Path) -> None:
    cache = _copy(caches[0], tmp_path / "cache")
    store = tmp_path / "Status.gdb"
    rebuild(cache, store)
    assert _answer(cache, store) is None


def test_a_locked_store_is_left_to_the_normal_path(rebuilt: tuple[Path, Path]) -> None:
    cache, store = rebuilt
    with StoreLock(store, "rebuild"):
        before = _rows(store, "Jobs")
        assert _answer(cache, store) is None
        assert _rows(store, "Jobs") == before
    assert _answer(cache, store) == 0


def test_the_store_of_another_cache_is_left_to_the_normal_path(
    rebuilt: tuple[Path, Path], caches: tuple[Path, Path], tmp_path: Path
) -> None:
    _, store = rebuilt
    other = _copy(caches[0], tmp_path / "other")
    assert _answer(other, store) is None
    refused = _normal("rebuild", other, "--status", store)
    assert refused.exit_code == 2 and "another cache" in refused.output


def test_the_fast_path_follows_itself(
    rebuilt: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cache, store = rebuilt
    assert _answer(cache, store, "--json") == 0
    assert _answer(cache, store) == 0
    out = capsys.readouterr().out
    assert out.count('"bundles_reused"') == 1 and "REBUILD_CACHE_STATUS" in out
    jobs = _gdal(store, "Jobs")
    assert [(j["bundlesRead"], j["bundlesReused"]) for j in jobs] == [
        (len(BASE), 0),
        (0, len(BASE)),
        (0, len(BASE)),
    ]
    _, _, _, (ids,) = read(str(store), layer="LevelStatus", columns=["jobID"])
    assert set(ids.tolist()) == {jobs[-1]["jobID"]}


@pytest.mark.parametrize("batch", [1, 3])
def test_files_checked_a_few_at_a_time_give_the_same_answers(
    rebuilt: tuple[Path, Path], batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, store = rebuilt
    monkeypatch.setattr(unchanged, "_BATCH", batch)  # level 9 holds 4 bundles: 2 batches or 4
    assert _answer(cache, store, "--json") == 0
    _touch(_bundle(cache, BASE[-1]))
    assert _answer(cache, store, "--json") is None
    assert [j["bundlesReused"] for j in _gdal(store, "Jobs")] == [0, len(BASE)]
