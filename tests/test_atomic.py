"""Atomic replacement, SIGKILL at any moment, leftovers, and the parallel scan."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pyogrio.raw import read

from cachestatus import operations
from cachestatus.errors import StoreLocked
from cachestatus.store import atomic
from cachestatus.store import lock as store_lock
from cachestatus.store.lock import LockOwner, StoreLock, lock_path
from tests.helpers import synthetic_cache, synthetic_sizes

SIDE = 34  # 1,156 bundles: above the threshold for worker processes


@pytest.fixture(scope="module")
def big_cache(tmp_path_factory) -> Path:
    return synthetic_cache(tmp_path_factory.mktemp("big") / "cache", SIDE, level=12)


def _cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "cachestatus.cli", *map(str, args)]


def _json(*args: object) -> dict:
    done = subprocess.run(_cli(*args, "--json"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _jobs(status: Path) -> list[tuple[str, str]]:
    """The store's jobs: ID and outcome, in order."""
    _, _, _, (ids, outcomes) = read(
        str(status), layer="Jobs", columns=["jobID", "outcome"], read_geometry=False
    )
    return list(zip(ids.tolist(), outcomes.tolist(), strict=True))


def _task_rows(status: Path) -> list[tuple]:
    _, _, _, values = read(str(status), layer="TaskStatus", read_geometry=False)
    rows = list(zip(*[v.tolist() for v in values], strict=True))
    # All fields but jobID; a null count reads as NaN, which equals nothing: None instead.
    return sorted(
        (r[0], *(None if isinstance(v, float) and v != v else v for v in r[2:])) for r in rows
    )


def test_parallel_scan_equals_the_serial_one(big_cache, tmp_path):
    serial = operations.rebuild(big_cache, tmp_path / "serial.gdb", workers=1)
    parallel = operations.rebuild(big_cache, tmp_path / "parallel.gdb", workers=2)
    assert parallel.levels == serial.levels
    level = next(lv for lv in serial.levels if lv.level == 12)
    assert level.bundles == SIDE * SIDE and level.tiles_expected == (SIDE * 128) ** 2
    # The synthetic writer's own record of what it stored (same seed).
    rng = np.random.default_rng(0)
    present = stored_bytes = 0
    for _ in range(SIDE * SIDE):
        sizes = synthetic_sizes(rng)
        present += int(np.count_nonzero(sizes))
        stored_bytes += int(sizes.sum())
    assert (level.tiles_present, level.tile_bytes) == (present, stored_bytes)
    assert _task_rows(tmp_path / "parallel.gdb") == _task_rows(tmp_path / "serial.gdb")


def _temporary_store_appears(folder: Path) -> None:
    deadline = time.monotonic() + 30
    while not any(p.name.endswith(".tmp.gdb") for p in folder.iterdir()):
        assert time.monotonic() < deadline, "the rebuild never started writing"
        time.sleep(0.001)


def _run_after_the_kill(args: tuple[object, ...], target: Path) -> None:
    """Run ``args`` again after a killed run of the store at ``target``: it cleans up whatever
    the killed one left. A run killed between creating its lock (``O_EXCL``: empty at first)
    and writing its name in it leaves a lock naming no owner; such a lock may be one being
    written this very moment, so the next run is refused until the lock is old, then takes it
    over."""
    lock = lock_path(target)
    try:
        named = LockOwner.parse(lock.read_text()) is not None
    except FileNotFoundError:
        named = True
    if not named:
        refused = subprocess.run(_cli(*args), capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2, refused.stderr
        assert "a run that has not written its name yet" in refused.stderr
        old = time.time() - 4 * store_lock.REFRESH_EVERY - 5
        os.utime(lock, (old, old))
    again = subprocess.run(_cli(*args), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr


def _kept(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``folder``, times included, put back by :func:`_put_back`."""
    kept = tmp_path_factory.mktemp("kept") / folder.name
    shutil.copytree(folder, kept, copy_function=shutil.copy2)
    return kept


def _put_back(kept: Path, folder: Path) -> Path:
    """``folder`` as it was kept, at the path its store was written for (a request names its
    store: the next run at that path is the same request, and reuses what it may)."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(kept, folder, copy_function=shutil.copy2)
    return folder


@pytest.fixture(scope="module")
def previous_status(big_cache, tmp_path_factory) -> tuple[Path, Path, dict, list[tuple]]:
    """The status a killed rebuild must leave: a folder holding the rebuild's ``Status.gdb``, a
    copy of it kept aside, the rebuild's JSON and its rows. The same for every moment of the
    kill, so made once."""
    folder = tmp_path_factory.mktemp("previous")
    before = _json("rebuild", big_cache, "--status", folder / "Status.gdb")
    return folder, _kept(folder, tmp_path_factory), before, _task_rows(folder / "Status.gdb")


# A rebuild of this cache takes about 0.5 s here: the delays fall in start-up, listing, scanning,
# writing and after the end; "writing" waits for the temporary store to appear.
@pytest.mark.parametrize("delay", [0.05, 0.2, 0.28, 0.34, 0.4, 0.46, 0.6, "writing"])
def test_sigkill_leaves_the_previous_status_complete(big_cache, previous_status, delay):
    folder, kept, before, rows_before = previous_status
    status = _put_back(kept, folder) / "Status.gdb"
    victim = subprocess.Popen(
        _cli("rebuild", big_cache, "--status", status),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    if delay == "writing":
        _temporary_store_appears(folder)
    else:
        time.sleep(delay)
    os.killpg(victim.pid, signal.SIGKILL)  # the rebuild and its worker processes
    victim.wait()
    after = _json("summary", big_cache, "--status", status)
    # Either the old store or a complete new one: the same cache gives the same status (how
    # many bundles the rebuild read is said by its run, not by the store's summary).
    scanned = {"bundles_read", "bundles_reused"}
    before_totals = {k: v for k, v in before["totals"].items() if k not in scanned}
    jobs = _jobs(status)  # the old history, or that and the new run's complete job
    assert [job for job, _ in jobs] in ([before["job_id"]], [before["job_id"], after["job_id"]])
    assert all(outcome.startswith("succeeded") for _, outcome in jobs), jobs
    assert after["levels"] == before["levels"] and after["totals"] == before_totals
    assert _task_rows(status) == rows_before
    _run_after_the_kill(("rebuild", big_cache, "--status", status), status)
    assert [p.name for p in folder.iterdir() if p.name != "Status.gdb"] == []


@pytest.fixture(scope="module")
def previous_report(big_cache, tmp_path_factory) -> tuple[Path, Path, dict, list[tuple]]:
    """The report a killed report must leave: its folder, a copy of it kept aside, the
    store's summary and its rows. The same for every moment of the kill, so made once."""
    out = tmp_path_factory.mktemp("previous") / "report"
    _json(*_report_args(big_cache, out))
    before = _json("summary", big_cache, "--status", out / "Status.gdb")
    return out, _kept(out, tmp_path_factory), before, _task_rows(out / "Status.gdb")


def _report_args(cache: Path, out: Path) -> tuple[object, ...]:
    return ("report", cache, "--out", out, "--levels", "12", "--overwrite")


@pytest.mark.parametrize("delay", [0.1, 0.3, 0.45, "writing"])
def test_sigkill_during_a_report_leaves_the_previous_report_complete(
    big_cache, previous_report, delay
):
    out, kept, before, rows_before = previous_report
    store = _put_back(kept, out) / "Status.gdb"
    args = _report_args(big_cache, out)
    victim = subprocess.Popen(
        _cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    if delay == "writing":
        _temporary_store_appears(out)
    else:
        time.sleep(delay)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    after = _json("summary", big_cache, "--status", store)
    assert after["levels"] == before["levels"] and after["totals"] == before["totals"]
    assert _task_rows(store) == rows_before
    _run_after_the_kill(args, store)
    assert [p.name for p in out.iterdir()] == ["Status.gdb"]


def test_store_renamed_away_by_a_killed_swap_is_restored(sample):
    operations.rebuild(sample, workers=1)
    target = sample / "Status.gdb"
    dead_pid = 2**22 + 12345  # above the kernel's pid_max default: never a live process
    os.rename(
        target,
        atomic.sibling(target, "old", "abc123").with_name(f".Status.{dead_pid}-abc123.old.gdb"),
    )
    assert not target.exists()
    report = operations.summary(sample)
    assert target.exists() and report.totals.tiles_present == 21


def test_leftovers_of_a_run_holding_the_lock_are_kept(sample):
    """A temporary store is removed only by a run holding the store's lock: while another run
    holds it, a second run is refused and touches nothing."""
    operations.rebuild(sample, workers=1)
    target = sample / "Status.gdb"
    with StoreLock(target, "rebuild"):
        mine = atomic.sibling(target, "tmp", "feed01")
        mine.mkdir()
        with pytest.raises(StoreLocked, match="is being written by another run"):
            operations.rebuild(sample, workers=1)
        assert mine.exists()
    operations.rebuild(sample, workers=1)  # holds the lock: the leftover is abandoned
    assert not mine.exists()


def test_exchange_swaps_folders_atomically(tmp_path):
    new, target = tmp_path / ".new.gdb", tmp_path / "Status.gdb"
    new.mkdir()
    (new / "marker").write_text("new")
    target.mkdir()
    (target / "marker").write_text("old")
    atomic.replace(new, target, "t0")
    assert (target / "marker").read_text() == "new" and not new.exists()
