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
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.dask_cluster import dask_cluster
from tests.helpers import peak_rss_kib, sparse_cache, sparse_side

pytest.importorskip("distributed")

SIZES = (20_000, 200_000)
#: KiB the process may grow per bundle from the smaller cache to the larger: a tenth of a KiB
#: (17.6 MiB over the 180,000 bundles more). Before: 0.7 KiB.
MAX_KIB_A_BUNDLE = 0.1


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("sparse")
    return {size: sparse_cache(root / str(size), size) for size in SIZES}


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1."""
    with dask_cluster(tmp_path_factory.mktemp("cluster"), 2) as found:
        yield found


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
