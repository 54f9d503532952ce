"""The command line on a Dask cluster: a local cluster's run prints what a local run prints, and
Ctrl-C ends a run with one line and 130, cancels the cluster's tasks (the scheduler is left with
none) and leaves the previous status intact."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_interrupts import _rows

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def address(dask_address: str) -> str:
    """The session's Dask cluster (``conftest.dask_address``)."""
    return dask_address


def _scheduler_tasks(address: str) -> int:
    """How many tasks the scheduler still holds, as its own state says."""
    from distributed import Client

    with Client(address, timeout=30) as client:
        return int(client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)))


def test_ctrl_c_cancels_the_clusters_tasks_and_keeps_the_previous_status(
    address: str, big_cache: Path, tmp_path: Path
) -> None:
    big = big_cache  # a few seconds on two one-thread workers
    status = tmp_path / "status" / "Status.gdb"
    status.parent.mkdir()
    command = [sys.executable, "-m", "cachestatus.cli", "rebuild", str(big)]
    command += ["--status", str(status)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    before = _rows(status)

    for delay in (0.3, 0.0):
        run = subprocess.Popen(
            [*command, "--full", "--scheduler", address, "--progress"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while _scheduler_tasks(address) == 0 and run.poll() is None:
                assert time.monotonic() < deadline, "no task reached the cluster"
                time.sleep(0.02)
            time.sleep(delay)
            if run.poll() is not None:
                continue  # the rebuild ended before the signal
            assert _scheduler_tasks(address) > 0  # the cluster is busy with the run's tasks
            sent = time.monotonic()
            run.send_signal(signal.SIGINT)
            _, err = run.communicate(timeout=60)
            if "Status:" in err:
                continue  # it ended as the signal came
            assert time.monotonic() - sent < 15
            assert run.returncode == 130, err
            last = err.strip().splitlines()[-1]  # progress lines come first on stderr
            assert last.startswith("Error: interrupted (SIGINT)"), err
            assert "Traceback" not in err
            wait = time.monotonic() + 15
            while _scheduler_tasks(address) and time.monotonic() < wait:
                time.sleep(0.1)
            assert _scheduler_tasks(address) == 0  # nothing of the run is left on the cluster
            assert sorted(p.name for p in status.parent.iterdir()) == ["Status.gdb"]
            assert _rows(status) == before
            return
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    pytest.skip("the rebuild ended before each signal: the machine is faster than BIG_SIDE allows")


def test_a_local_cluster_run_prints_what_a_local_run_prints(tmp_path: Path) -> None:
    """Dask's start and stop messages only with -v; its dashboard never asks for port 8787,
    which a user's own cluster may hold."""
    sample = Path(__file__).parent / "data" / "esri" / "sample_cache"
    command = [sys.executable, "-m", "cachestatus.cli"]
    rebuild = ["rebuild", str(sample), "--status", str(tmp_path / "Status.gdb"), "--cluster", "2"]
    with contextlib.ExitStack() as held:  # port 8787 taken, as a user's own cluster takes it
        with contextlib.suppress(OSError):
            port = held.enter_context(socket.socket())
            port.bind(("", 8787))
            port.listen()
        quiet = subprocess.run([*command, *rebuild], capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.splitlines() == [
        f"Status: {tmp_path / 'Status.gdb'}",
        "3 bundles read, 0 reused",
    ]
    told = subprocess.run(
        [*command, "-v", *rebuild, "--full"], capture_output=True, text=True, timeout=300
    )
    assert told.returncode == 0, told.stderr
    assert "distributed.scheduler" in told.stderr
    assert "8787" not in quiet.stderr + told.stderr
