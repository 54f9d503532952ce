"""Interrupts: SIGINT and SIGTERM at any moment end a run promptly, with one line and 130/143,
no worker left, no temporary file, the previous status intact; the API raises KeyboardInterrupt
after the same cleanup."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyogrio.raw import read

from cachestatus import operations
from tests.helpers import synthetic_cache


@pytest.fixture(scope="module")
def big(big_cache: Path) -> Path:
    """The session's 12,100 bundles: about two seconds of a rebuild in two workers here."""
    return big_cache


def _rows(status: Path) -> list[tuple]:
    _, _, _, values = read(str(status), layer="TaskStatus", read_geometry=False)
    rows = zip(*[v.tolist() for v in values], strict=True)
    return sorted(
        (r[0], *(None if isinstance(v, float) and v != v else v for v in r[2:])) for r in rows
    )


def _session(sid: int) -> list[int]:
    """PIDs of the processes of a session (the run and every worker it started)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[3]) == sid:
                found.append(int(entry))
    return found


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _catches_sigterm(pid: int) -> bool:
    """Whether process ``pid`` handles SIGTERM (``SigCgt`` of ``/proc/PID/status``)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1)


def _start_rebuild(big: Path, status: Path) -> subprocess.Popen[str]:
    """``cachestatus rebuild --full`` of ``big`` in two workers, in a session of its own: every
    bundle read (the store of an earlier rebuild would otherwise make it an incremental run of
    an unchanged cache, over before most signals come). Returned once the program handles the
    signals: before, the interpreter is still starting (0.06 s, and over 0.2 s on two busy
    cores) and a signal ends it before any of the program's code runs, SIGTERM killing it,
    SIGINT with a traceback; the moments of the tests count from there."""
    args = ["rebuild", str(big), "--status", str(status), "--workers", "2", "--full"]
    run = subprocess.Popen(
        [sys.executable, "-m", "cachestatus.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not _catches_sigterm(run.pid) and run.poll() is None:
        assert time.monotonic() < deadline, "the program never started"
        time.sleep(0.001)
    return run


@pytest.fixture(scope="module")
def rebuilt(big, tmp_path_factory) -> tuple[Path, list[tuple]]:
    status = tmp_path_factory.mktemp("status") / "Status.gdb"
    done = subprocess.run(
        [sys.executable, "-m", "cachestatus.cli", "rebuild", str(big), "--status", str(status)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return status, _rows(status)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("when", [0.15, 0.3, "workers", 0.6, 0.8])
def test_an_interrupt_ends_a_rebuild_with_one_line(big, rebuilt, signum, when):
    status, rows_before = rebuilt
    run = _start_rebuild(big, status)
    try:
        if when == "workers":  # the moment the first worker exists
            deadline = time.monotonic() + 30
            while not _children(run.pid) and run.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.001)
        else:
            time.sleep(when)
        if run.poll() is not None:
            pytest.skip("the rebuild ended before the signal")
        sent = time.monotonic()
        run.send_signal(signum)
        _, err = run.communicate(timeout=15)
        if "Status:" in err:  # it ended as the signal came: during its last milliseconds
            pytest.skip("the rebuild ended before the signal")
        assert time.monotonic() - sent < 8
        assert run.returncode == 128 + signum, err
        name = "SIGINT" if signum == signal.SIGINT else "SIGTERM"
        assert err.splitlines() == [err.strip()] and err.startswith(f"Error: interrupted ({name})")
        assert "Traceback" not in err
        deadline = time.monotonic() + 5
        while _session(run.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _session(run.pid) == []  # no worker outlived the run
        assert sorted(p.name for p in status.parent.iterdir()) == ["Status.gdb"]
        assert _rows(status) == rows_before
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
        run.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_reaches_the_whole_group_and_nothing_is_left(big, rebuilt):
    """A terminal's Ctrl-C signals every process of the group: the workers leave it to the run."""
    status, rows_before = rebuilt
    for delay in (0.35, 0.6):
        run = _start_rebuild(big, status)
        try:
            time.sleep(delay)
            os.killpg(run.pid, signal.SIGINT)
            _, err = run.communicate(timeout=15)
            if "Status:" in err:
                continue  # the rebuild ended before the signal
            assert run.returncode == 130, err
            assert len(err.splitlines()) == 1 and "Traceback" not in err
            time.sleep(0.2)
            assert _session(run.pid) == []
            assert _rows(status) == rows_before
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
            run.wait()


class _InterruptAfter:
    """A progress bar that presses Ctrl-C once some bundles are done."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.done = 0

    def start(self, total: int) -> None:
        pass

    def advance(self, count: int) -> None:
        self.done += count
        if self.done >= self.after:
            raise KeyboardInterrupt


def test_the_api_raises_keyboardinterrupt_after_cleanup(big, tmp_path):
    status = tmp_path / "Status.gdb"
    operations.rebuild(big, status, workers=1)
    before = _rows(status)
    with pytest.raises(KeyboardInterrupt):
        operations.rebuild(big, status, workers=2, progress=_InterruptAfter(300))
    assert multiprocessing.active_children() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Status.gdb"]
    assert _rows(status) == before


_INTERRUPTED_IN_EXEC = """
import sys

from cachestatus import operations


def interrupted(*args, **kwargs):
    exec("raise KeyboardInterrupt")  # as a dataclass being made by a lazy import


operations.run_rebuild = interrupted
sys.argv = ["cachestatus", *sys.argv[1:]]
from cachestatus.cli import run

run()
"""


def test_an_interrupt_inside_exec_still_ends_with_130(tmp_path):
    """CPython ends a process by SIGINT when a KeyboardInterrupt has left ``exec`` of a string,
    even once it was caught: the run must still end with its own code."""
    (tmp_path / "interrupted_in_exec.py").write_text(_INTERRUPTED_IN_EXEC)
    cache = synthetic_cache(tmp_path / "cache", 1, level=3)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "interrupted_in_exec",
            "rebuild",
            str(cache),
            "--status",
            str(tmp_path / "Status.gdb"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])},
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr == "Error: interrupted (SIGINT); the previous status is unchanged\n"
