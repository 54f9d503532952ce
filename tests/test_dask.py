"""Scans on a Dask cluster: a real ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1, started by the tests with Dask's own command-line programs, give the same stores,
row for row, as the local process engine, over a MapProxy-written cache on disk and in the S3
test server; a worker killed mid-run changes nothing; ``--cluster`` starts a local cluster;
without ``distributed``, the run stops with a usage error naming the extra.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cachestatus import execute_dask, rebuild, report, verify
from cachestatus.cli import main
from tests.builders import build
from tests.dask_cluster import dask_cluster
from tests.remote import KEYS, S3Server, make_bucket, upload
from tests.status_rows import rows_in_order, task_rows

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow

LEVELS = 12


def _tiles(seed: int, bundles: int) -> dict[tuple[int, int, int], bytes]:
    """A few tiles in each of ``bundles`` bundles on levels 8 to 11, with holes."""
    rng = np.random.default_rng(seed)
    keys = {(lv, int(rng.integers(0, 2 ** (lv - 7))), 0) for lv in (8, 9, 10, 11)}
    while len(keys) < bundles:
        level = int(rng.integers(8, 12))
        side = 2 ** (level - 7)
        keys.add((level, int(rng.integers(0, side)), int(rng.integers(0, side))))
    return tiles_in(keys, rng, 6, 30)


def tiles_in(
    keys: set[tuple[int, int, int]], rng: np.random.Generator, most: int, size: int
) -> dict[tuple[int, int, int], bytes]:
    """1 to ``most - 1`` random tiles of ``size`` bytes in each bundle ``(level, bundle row,
    bundle column)`` of ``keys``."""
    tiles: dict[tuple[int, int, int], bytes] = {}
    for level, brow, bcol in sorted(keys):
        for _ in range(int(rng.integers(1, most))):
            row, col = (int(v) for v in rng.integers(0, 128, 2))
            tiles[(level, brow * 128 + row, bcol * 128 + col)] = bytes(rng.integers(1, 255, size))
    return tiles


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MapProxy cache of about 150 bundles, one of them cut short (a CORRUPT row)."""
    root = build(
        "compact-v2", tmp_path_factory.mktemp("dask") / "cache", _tiles(3, 150), levels=LEVELS
    )
    bundle = sorted((root.path / "_alllayers" / "L09").glob("*.bundle"))[0]
    with open(bundle, "r+b") as f:
        f.truncate(1000)
    return root.path


@pytest.fixture(scope="module")
def scheduler(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``dask scheduler`` and two ``dask worker`` processes (one thread each) on 127.0.0.1;
    the workers' environment points at the S3 test server with the test keys, as a cluster's
    workers have their own credentials. Yields the scheduler's address."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DASK_"))}
    env.update(KEYS, AWS_ENDPOINT_URL=s3.endpoint)
    with dask_cluster(tmp_path_factory.mktemp("scheduler"), 2, env) as address:
        yield address


@contextmanager
def _scans_on_cluster(address: str) -> Iterator[list[bool]]:
    """Yields a list that tells, once the block is over, whether the cluster ran scan tasks
    while it ran (from the scheduler's task stream)."""
    ran: list[bool] = []
    with distributed.Client(address) as client:
        with distributed.get_task_stream(client) as stream:
            yield ran
        ran.append(any(str(task["key"]).startswith("_on_worker") for task in stream.data))


def _same_report(a: Any, b: Any) -> None:
    left, right = asdict(a), asdict(b)
    for varying in ("elapsed_s", "job_id", "status_path"):
        left.pop(varying, None)
        right.pop(varying, None)
    assert left == right


def test_rebuild_report_and_verify_on_the_cluster_equal_the_local_engine(
    cache: Path, scheduler: str, tmp_path: Path
) -> None:
    local = rebuild(cache, tmp_path / "local.gdb", workers=2)
    with _scans_on_cluster(scheduler) as ran:
        on_cluster = rebuild(cache, tmp_path / "dask.gdb", scheduler=scheduler)
    assert ran == [True]
    assert local.levels and any(p.kind == "corrupt" for p in local.problems)
    _same_report(local, on_cluster)
    assert rows_in_order(tmp_path / "local.gdb") == rows_in_order(tmp_path / "dask.gdb")

    kept = report(cache, tmp_path / "local-report", levels=[9, 10], workers=2)
    remote = report(cache, tmp_path / "dask-report", levels=[9, 10], scheduler=scheduler)
    _same_report(kept, remote)
    assert rows_in_order(kept.status_path) == rows_in_order(remote.status_path)

    checked = verify(cache, workers=2)
    assert verify(cache, scheduler=scheduler).problems == checked.problems
    _same_report(checked, verify(cache, scheduler=scheduler))


def test_a_cache_in_s3_scans_on_the_cluster_with_the_workers_credentials(
    cache: Path, scheduler: str, s3_env: S3Server, in_tmp: Path
) -> None:
    url = upload(s3_env, cache, make_bucket(s3_env, "dask-cache"), "arcgiscache/Layers")
    local = rebuild(url, in_tmp / "local.gdb", workers=2)
    on_cluster = rebuild(url, in_tmp / "dask.gdb", scheduler=scheduler)
    _same_report(local, on_cluster)
    assert rows_in_order(in_tmp / "local.gdb") == rows_in_order(in_tmp / "dask.gdb")
    _same_report(verify(url, workers=2), verify(url, scheduler=scheduler))


class _Killing:
    """Progress that kills one of the cluster's worker processes (SIGKILL) when the first
    results come back, while the other tasks run."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.killed_after = -1
        self.done = 0

    def start(self, total: int) -> None:
        self.total = total

    def advance(self, count: int) -> None:
        if self.killed_after < 0:
            os.kill(self.pid, signal.SIGKILL)
            self.killed_after = self.done
        self.done += count


def test_a_worker_killed_mid_run_costs_nothing(
    cache: Path, scheduler: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rebuild(cache, tmp_path / "local.gdb", workers=2)
    # Small tasks, many of them in flight on each worker when one dies.
    monkeypatch.setattr(execute_dask, "task_size", lambda policy, total, threads: 2)
    with distributed.Client(scheduler) as client:
        client.wait_for_workers(2, timeout=60)
        pid = next(iter(client.run(os.getpid).values()))
    progress = _Killing(pid)
    rebuild(cache, tmp_path / "dask.gdb", scheduler=scheduler, progress=progress)
    assert 0 <= progress.killed_after < progress.total == progress.done
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert rows_in_order(tmp_path / "local.gdb") == rows_in_order(tmp_path / "dask.gdb")


def test_the_scheduler_comes_from_dask_scheduler_address_unless_workers_are_given(
    cache: Path, scheduler: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", scheduler)
    with _scans_on_cluster(scheduler) as ran:
        rebuild(cache, tmp_path / "a.gdb", workers=2)
    with _scans_on_cluster(scheduler) as ran_too:
        rebuild(cache, tmp_path / "b.gdb")
    assert ran == [False] and ran_too == [True]
    assert rows_in_order(tmp_path / "a.gdb") == rows_in_order(tmp_path / "b.gdb")
    both = ["--workers", "2", "--scheduler", scheduler]
    result = CliRunner().invoke(
        main, ["rebuild", str(cache), "--status", str(tmp_path / "c.gdb"), *both]
    )
    assert result.exit_code == 2, result.output
    assert "workers" in result.output and not (tmp_path / "c.gdb").exists()


def test_cluster_starts_a_local_cluster_for_the_run(cache: Path, tmp_path: Path) -> None:
    rebuild(cache, tmp_path / "local.gdb", workers=2)
    result = CliRunner().invoke(
        main, ["rebuild", str(cache), "--status", str(tmp_path / "dask.gdb"), "--cluster", "2"]
    )
    assert result.exit_code == 0, result.output
    assert rows_in_order(tmp_path / "local.gdb") == rows_in_order(tmp_path / "dask.gdb")


def test_without_distributed_the_run_stops_naming_the_extra(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    result = CliRunner().invoke(
        main, ["rebuild", str(cache), "--status", str(tmp_path / "s.gdb"), "--cluster", "2"]
    )
    assert result.exit_code == 2, result.output
    assert "pip install 'cachestatus[dask]'" in result.output
    assert not (tmp_path / "s.gdb").exists()


def test_an_incremental_rebuild_on_the_cluster_reads_only_what_changed(
    cache: Path, scheduler: str, tmp_path: Path
) -> None:
    """Reuse is decided before the work goes to the cluster: a second rebuild on the cluster
    reads the changed bundle (and the corrupt one, always read again), and its store equals a
    full local rebuild's."""
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    an_hour_ago = time.time_ns() - 3600 * 10**9
    for path in copy.rglob("*"):
        os.utime(path, ns=(an_hour_ago, an_hour_ago))
    first = rebuild(copy, tmp_path / "dask.gdb", scheduler=scheduler)
    assert first.bundles_read == sum(lv.bundles for lv in first.levels if lv.bundles)
    one, other = sorted((copy / "_alllayers" / "L10").glob("*.bundle"))[:2]
    shutil.copyfile(other, one)  # another bundle's tiles, at this bundle's place
    again = rebuild(copy, tmp_path / "dask.gdb", scheduler=scheduler)
    assert again.bundles_read == 2  # the one rewritten, and the corrupt one
    assert again.bundles_reused == first.bundles_read - 2
    rebuild(copy, tmp_path / "full.gdb", workers=2, reuse=False)

    # Reused rows are written before those read again: the same rows, in another order.
    def rows(store: Path) -> dict[str, dict[str, Any]]:
        """The rows without the job that wrote them; NaN (not counted) as ``None``."""
        found = task_rows(store, geometry=True)
        return {
            name: {k: None if v != v else v for k, v in row.items() if k != "jobID"}
            for name, row in found.items()
        }

    assert rows(tmp_path / "dask.gdb") == rows(tmp_path / "full.gdb")


def test_a_task_carries_bundles_named_by_their_keys_as_a_few_bytes_each(cache: Path) -> None:
    """What the cluster's tasks carry for a cache folder's bundles: their keys, level by level,
    from which the very bundle files come back; a bundle that needs more than its name (an odd
    name, a listed size) makes the task carry the bundle files themselves."""
    import pickle

    from cachestatus.formats import open_cache
    from cachestatus.formats.base import BundleFile, packed, unpacked

    with open_cache(cache) as reader:
        listed = [
            found
            for level in reader.scheme.levels
            for found in reader.list_level(level)
            if isinstance(found, BundleFile)
        ]
    assert len({b.key.level for b in listed}) > 1
    runs = packed(listed)
    assert runs is not None and len(runs) == len({b.key.level for b in listed})
    assert unpacked(pickle.loads(pickle.dumps(runs))) == listed
    assert len(pickle.dumps(runs)) < len(pickle.dumps(listed)) / 3
    odd = listed[-1]._replace(path=listed[-1].path.replace("R", "R0", 1))
    assert packed([*listed[:-1], odd]) is None
    assert packed([*listed[:-1], listed[-1]._replace(size=5)]) is None
    assert unpacked(listed) == listed


def test_an_interrupt_while_a_result_is_used_cancels_the_tasks_before_the_client_closes(
    cache: Path, scheduler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream of results left at a result (the run interrupted while it used one) is closed as
    the executor's block ends: its pending tasks are cancelled while the client is still open,
    and nothing is raised later, as the stream is collected ("IOLoop is closed")."""
    import gc

    from cachestatus.execute import Cluster
    from cachestatus.formats import open_cache
    from cachestatus.plan import ScanPolicy

    ignored: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    with open_cache(cache) as reader, pytest.raises(KeyboardInterrupt):
        executor = execute_dask.DaskExecutor(reader, [], ScanPolicy(), Cluster(scheduler))
        with executor:
            executor.size_for(100)
            stream = executor.map_each(lambda _, item: time.sleep(0.2) or item, range(40))
            assert next(stream) == 0
            with distributed.Client(scheduler) as other:
                assert other.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
            raise KeyboardInterrupt  # as Ctrl-C does while the run writes the first result
    assert next(stream, None) is None  # closed
    del stream
    gc.collect()
    assert [str(u.exc_value) for u in ignored] == []


def test_a_cancel_that_fails_as_the_block_ends_still_closes_the_client(
    cache: Path, scheduler: str
) -> None:
    """A stream whose cancel fails as it closes (the scheduler gone) neither keeps the client
    open nor replaces what ended the block."""
    from cachestatus.execute import Cluster
    from cachestatus.formats import open_cache
    from cachestatus.plan import ScanPolicy

    def cancel_fails() -> Iterator[int]:
        try:
            yield 1
        finally:
            raise RuntimeError("the scheduler is gone")

    with open_cache(cache) as reader:
        executor = execute_dask.DaskExecutor(reader, [], ScanPolicy(), Cluster(scheduler))
        with pytest.raises(KeyboardInterrupt), executor:
            client = executor.client
            stream = cancel_fails()
            next(stream)
            executor._streams.add(stream)
            raise KeyboardInterrupt
    assert client.status == "closed"
    assert next(stream, None) is None  # closed, once
