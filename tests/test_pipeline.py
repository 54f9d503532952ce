"""The scan pipeline's parts: plans and policies, executors that own their workers, folds, and
the deprecated Scanner front."""

from __future__ import annotations

import errno
import multiprocessing
import multiprocessing.pool
import os
from pathlib import Path

import numpy as np
import pytest
from pyogrio.raw import read

from cachestatus import grid, operations
from cachestatus.errors import UsageError
from cachestatus.execute import ChunkContext, InProcess, ProcessPool, executor_for, scan_processes
from cachestatus.formats import open_cache, sqlite_tiles
from cachestatus.models import LevelSummary, StatusReport
from cachestatus.plan import AbsentRows, ScanPolicy, plan_levels, plans_extent
from cachestatus.scan import Scanner, list_plans, scan_chunk
from cachestatus.store import StatusWriter
from tests.builders import build
from tests.helpers import synthetic_cache
from tests.test_verify import _png

SIDE = 33  # 1,089 bundles: above the threshold for worker processes


@pytest.fixture(scope="module")
def big_cache(tmp_path_factory) -> Path:
    return synthetic_cache(tmp_path_factory.mktemp("pipeline") / "cache", SIDE, level=12)


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory) -> Path:
    return synthetic_cache(tmp_path_factory.mktemp("pipeline") / "small", 3, level=5)


def _bundles_of(context, bundles):
    return [str(b.key) for b in bundles]


def _pid(_item: int) -> int:
    return os.getpid()


def _pid_of(context, bundles) -> int:
    return os.getpid()


def test_executors_give_results_in_order(small_cache):
    with open_cache(small_cache) as reader:
        plans = plan_levels(reader, [5])
        listing = list_plans(reader, plans, ScanPolicy.rebuild())
        bundles = list(listing.bundles())
        chunks = [bundles[i : i + 2] for i in range(0, len(bundles), 2)]
        with InProcess(reader, plans) as here:
            assert here.run(_pid, [1, 2]) == [os.getpid()] * 2
            assert here.size_for(len(bundles)) == 1
            expected = list(here.map(_bundles_of, chunks))
        with ProcessPool(reader, plans, ScanPolicy.verify(), 2) as pool:
            assert os.getpid() not in pool.run(_pid, list(range(8)))
            assert pool.size_for(len(bundles)) == 2
            assert list(pool.map(_bundles_of, chunks)) == expected
        assert multiprocessing.active_children() == []
    assert [b for chunk in expected for b in chunk] == [str(b.key) for b in bundles]
    assert len(bundles) == 9


def test_the_listing_and_the_scan_share_one_pool(small_cache):
    """The workers a listing starts are the scan's: none is started twice."""
    with open_cache(small_cache) as reader:
        plans = plan_levels(reader, [5])
        bundles = list(list_plans(reader, plans, ScanPolicy.verify()).bundles())
        with executor_for(ScanPolicy.verify(), 2, reader, plans) as executor:
            assert executor.run(_pid, [1]) == [os.getpid()]  # one item: no process for it
            assert multiprocessing.active_children() == []
            listers = set(executor.run(_pid, list(range(8))))
            workers = multiprocessing.active_children()
            assert len(workers) == 2 and os.getpid() not in listers
            assert executor.size_for(len(bundles)) == 2
            scanners = set(executor.map(_pid_of, [[b] for b in bundles]))
            assert multiprocessing.active_children() == workers
            assert scanners <= {p.pid for p in workers}
        assert multiprocessing.active_children() == []


def test_a_scan_that_runs_here_stops_the_listing_workers(small_cache):
    with open_cache(small_cache) as reader:
        plans = plan_levels(reader, [5])
        with executor_for(ScanPolicy.rebuild(), 2, reader, plans) as executor:
            executor.run(_pid, list(range(8)))
            assert len(multiprocessing.active_children()) == 2
            assert executor.size_for(9) == 1
            assert multiprocessing.active_children() == []
            assert list(executor.map(_pid_of, [[], []])) == [os.getpid()] * 2


def test_a_run_starts_its_workers_once(tmp_path, monkeypatch):
    """A listing spread over processes (an SQLite file taken as large) and the scan of every
    tile that follows share one pool."""
    monkeypatch.setattr(sqlite_tiles, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(sqlite_tiles, "STRETCH_COLUMNS", 1)
    data = _png(np.zeros((8, 8, 4), dtype=np.uint8))
    cache, _ = build("mbtiles", tmp_path, {(9, (7 * col) % 512, col): data for col in range(300)})
    started = []
    made = multiprocessing.pool.Pool.__init__

    def counted(pool, processes, *args, **kwargs):
        started.append(processes)
        made(pool, processes, *args, **kwargs)

    monkeypatch.setattr(multiprocessing.pool.Pool, "__init__", counted)
    done = operations.rebuild(cache, tmp_path / "Status.gdb", workers=2, blank=True)
    assert started == [2]
    (level,) = [lv for lv in done.levels if lv.level == 9]
    assert level.tiles_present == level.tiles_blank == 300
    assert multiprocessing.active_children() == []


def test_no_worker_outlives_its_block(small_cache):
    with open_cache(small_cache) as reader:
        pool = ProcessPool(reader, plan_levels(reader, [5]), ScanPolicy.verify(), 2)
        with pytest.raises(RuntimeError, match="stop"), pool:
            pool.size_for(9)
            assert len(multiprocessing.active_children()) == 2
            raise RuntimeError("stop")
    assert multiprocessing.active_children() == []


def test_workers_only_where_they_pay(small_cache):
    with open_cache(small_cache) as reader:
        plans = plan_levels(reader, [5])
        light, heavy = ScanPolicy.rebuild(), ScanPolicy.verify()
        assert scan_processes(light, 4, 1023, reader) == 1
        assert scan_processes(light, 1, 10**6, reader) == 1
        assert isinstance(executor_for(light, 1, reader, plans), InProcess)
        assert scan_processes(light, 4, 1024, reader) == 4
        assert scan_processes(light, 8, 1500, reader) == 6  # 256 bundles each
        assert scan_processes(heavy, 4, 1, reader) == 1
        assert scan_processes(heavy, 4, 3, reader) == 3
        with executor_for(heavy, 4, reader, plans) as executor:
            assert executor.size_for(3) == 3  # the pool is as large as the work
            assert len(multiprocessing.active_children()) == 3


def test_policies_of_the_operations():
    assert ScanPolicy.rebuild(5, blank=True) == ScanPolicy(
        absent_rows=AbsentRows.BUILT_LEVELS, max_missing_rows=5, blank=True
    )
    assert ScanPolicy.rebuild(blank=True).reads_tiles
    assert not ScanPolicy.rebuild().reads_tiles
    report = ScanPolicy.report(None)
    assert report.expected_only and report.absent_rows is AbsentRows.EVERY_LEVEL
    assert report.max_missing_rows is None
    assert ScanPolicy.missing().absent_rows is AbsentRows.NONE
    assert ScanPolicy.missing(area=True).expected_only
    assert ScanPolicy.verify().reads_tiles and not ScanPolicy.verify().expected_only


def test_the_store_extent_is_known_from_the_plans_alone(small_cache):
    with open_cache(small_cache) as reader:
        plans = plan_levels(reader, [5])
        (plan,) = plans
        assert plans_extent(reader.scheme, plans) == grid.range_bounds(
            reader.scheme, 5, plan.expected.bounds
        )
        scheme = reader.scheme
        assert plans_extent(scheme, []) == (
            scheme.origin_x,
            scheme.origin_y - 1.0,
            scheme.origin_x + 1.0,
            scheme.origin_y,
        )


def test_a_batch_carries_its_holes_beside_its_rows(small_cache):
    with open_cache(small_cache) as reader:
        plans = plan_levels(reader, [5])
        listing = list_plans(reader, plans, ScanPolicy.rebuild())
        batch = scan_chunk(ChunkContext(reader, {5: plans[0]}), list(listing.bundles()))
    assert len(batch) == len(batch.rows) == 9
    partial = sum(1 for s in batch.rows.state if s == "PARTIAL")
    assert partial and set(batch.holes[:, 0].tolist()) == {5}


@pytest.mark.parametrize("failure", ["status under a file", "store write fails"])
def test_no_worker_is_alive_when_the_store_fails(big_cache, tmp_path, monkeypatch, failure):
    """The workers are gone before the error reaches the caller, however the store failed."""
    if failure == "status under a file":
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder")
        status, expected = blocker / "sub" / "Status.gdb", UsageError

    else:

        def full(self, batch):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(StatusWriter, "add", full)
        status, expected = tmp_path / "Status.gdb", OSError
    try:
        operations.rebuild(big_cache, status, workers=4)
    except expected as exc:
        assert multiprocessing.active_children() == []
        assert isinstance(exc, UsageError) == (failure == "status under a file")
    else:
        pytest.fail("the rebuild did not fail")
    assert not any(p.name.endswith(".tmp.gdb") for p in tmp_path.iterdir())


def test_missing_speaks_of_no_missing_rows(small_cache, tmp_path):
    """``missing`` writes no ``TaskStatus``: it has no rows to leave out, and says none were."""
    cache = tmp_path / "cache"
    synthetic_cache(cache, 3, level=5)
    next((cache / "_alllayers" / "L05").glob("*.bundle")).unlink()
    found = operations.missing(cache, tmp_path / "todo.geojson", workers=1)
    assert not any("MISSING bundle rows" in w for w in found.warnings)
    assert sum(a.tiles_missing for a in found.areas if a.level == 5) > 0


def _rows(status: Path) -> list[tuple]:
    _, _, _, values = read(str(status), layer="TaskStatus", read_geometry=False)
    rows = zip(*[v.tolist() for v in values], strict=True)
    return sorted(
        (r[0], *(None if isinstance(v, float) and v != v else v for v in r[2:])) for r in rows
    )


def test_the_scanner_is_a_deprecated_front_of_the_pipeline(small_cache, tmp_path):
    rebuilt = operations.rebuild(small_cache, tmp_path / "Status.gdb", workers=1)
    with open_cache(small_cache) as reader:
        with pytest.warns(DeprecationWarning, match="Scanner is deprecated"):
            scanner = Scanner(reader, workers=1)
        batches = []
        outcome = scanner.run(batches.append)
    assert outcome.levels == rebuilt.levels
    assert outcome.rows == sum(len(b) for b in batches) == len(_rows(tmp_path / "Status.gdb"))
    keys = sorted(s.key.label for b in batches for s in b.statuses())
    assert keys == [r[0] for r in _rows(tmp_path / "Status.gdb")]


def test_level_totals_sum_what_each_level_counted():
    levels = [
        LevelSummary(3, 1.0, 1.0, bundles=2, tiles_expected=9, tiles_present=4, tile_bytes=7),
        LevelSummary(4, 2.0, 2.0, bundles=1, tiles_expected=3, tiles_present=1, tiles_blank=1),
    ]
    total = StatusReport("c", "f", None, "", "", 0.0, levels).totals
    assert total == LevelSummary(-1, 0.0, 0.0, 3, 12, 5, 0, 7, tiles_blank=1)
    assert StatusReport("c", "f", None, "", "", 0.0, levels[:1]).totals.tiles_blank is None
