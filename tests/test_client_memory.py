"""The memory of the client of a rebuild on a Dask cluster does not grow in proportion to the
bundles: its peak RSS on sparse synthetic caches of about 20,000 and 200,000 bundles (hard
links of a few bundle files: the directory grows, the disk does not), measured by the kernel
(``ru_maxrss`` of the process tree), with a GeoPackage store (GDAL's FileGDB writer builds its
spatial index in memory that grows with the rows, whatever the program does).

The client lists the level folder (a shared file system here) and receives every bundle's row
from the workers. A client that kept a few hundred bytes a bundle, as it did before (its
listing, per-bundle blocks, a sorted key set), grows by tens of MiB over the 180,000 bundles
more; one that keeps a bit a bundle grows by a few. The local engine's main process is
measured the same way by ``benchmarks/bench_cluster.py --memory-only``.
"""

from __future__ import annotations

import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import peak_rss_kib, sparse_cache, sparse_side

pytestmark = pytest.mark.slow

SIZES = (20_000, 200_000)
#: KiB the process may grow per bundle from the smaller cache to the larger: a tenth of a KiB
#: (17.6 MiB over the 180,000 bundles more). Before: 0.7 KiB.
MAX_KIB_A_BUNDLE = 0.1


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("sparse")
    return {size: sparse_cache(root / str(size), size) for size in SIZES}


@pytest.fixture(scope="module")
def address(dask_address: str) -> str:
    """The session's Dask cluster (``conftest.dask_address``)."""
    return dask_address


def test_the_dask_clients_memory_does_not_grow_with_the_bundles(
    address: str, caches: dict[int, Path], tmp_path: Path
) -> None:
    tail = ["--scheduler", address]
    peaks = {}
    for size, cache in caches.items():
        status = tmp_path / f"{size}.gpkg"
        command = [sys.executable, "-m", "cachestatus.cli", "-q", "rebuild", str(cache)]
        peaks[size] = peak_rss_kib([*command, "--full", "--status", str(status), *tail])
        with closing(sqlite3.connect(status)) as db:  # every bundle was read and has its row
            assert (
                db.execute("SELECT count(*) FROM TaskStatus").fetchone()[0]
                == sparse_side(size) ** 2
            )
    small, big = (sparse_side(size) ** 2 for size in SIZES)
    growth = (peaks[SIZES[1]] - peaks[SIZES[0]]) / (big - small)
    shown = {size: f"{kib / 1024:.1f} MiB" for size, kib in peaks.items()}
    assert growth < MAX_KIB_A_BUNDLE, f"{growth:.3f} KiB a bundle ({shown})"


def test_an_incremental_rebuild_decodes_the_reused_holes_a_batch_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reused bundles' rows are read from the previous store, and their holes decoded, as
    each batch is folded, and let go after it, not all before the scan: at most two batches
    are alive at any time (the run held them all before: 3.5 GiB at 1,000,000 sparse bundles,
    one in twenty changed, then 1.9 GiB with the rows all read before the scan)."""
    import gc
    import os
    import time
    import weakref

    from cachestatus import incremental, rebuild, scan

    cache = sparse_cache(tmp_path / "cache", 5_000)
    hour_ago = time.time_ns() - 3600 * 10**9  # read once, a bundle is reused from then on
    for model in cache.glob("model*.bundle"):  # every bundle is a link to one of these
        os.utime(model, ns=(hour_ago, hour_ago))
    status = tmp_path / "Status.gpkg"
    full = rebuild(cache, status, workers=1)
    model = cache / "model1.bundle"  # one bundle file in eight changes, the others are reused
    os.utime(model, ns=(hour_ago + 10**9, hour_ago + 10**9))

    refs: list[weakref.ref[scan.ScanBatch]] = []
    parts: list[weakref.ref[scan.Reused]] = []
    most, most_parts, made = [0], [0], [0]
    decode = scan.Reused.batch

    def batch(self: scan.Reused) -> scan.ScanBatch:
        gc.collect()
        made[0] += 1
        parts.append(weakref.ref(self))
        most_parts[0] = max(most_parts[0], sum(r() is not None for r in parts))
        decoded = decode(self)
        refs.append(weakref.ref(decoded))
        most[0] = max(most[0], sum(r() is not None for r in refs))
        return decoded

    reads: list[int] = []
    read = incremental.read_bundle_files

    def read_some(store: Path, file_fids: Any, row_fids: Any, counts_only: bool) -> Any:
        reads.append(len(file_fids))
        return read(store, file_fids, row_fids, counts_only)

    monkeypatch.setattr(scan.Reused, "batch", batch)
    monkeypatch.setattr(incremental, "read_bundle_files", read_some)
    monkeypatch.setattr(incremental, "REUSED_BATCH", 512)
    monkeypatch.setattr(incremental, "_REUSED_READ", 1024)
    done = rebuild(cache, status, workers=1)
    assert done.bundles_reused > 0.8 * full.bundles_read
    assert made[0] >= done.bundles_reused // 512 >= 2
    assert most[0] <= 2  # the batch folded, and the one before it, until it is replaced
    # The rows are read from the previous store as they are folded, not all before the scan.
    assert sum(reads) == done.bundles_reused and max(reads) <= 1024 and len(reads) >= 4
    assert most_parts[0] <= 2
