"""Reads in flight change nothing but the time: every format's rows are the same, in the same
order, with one bundle read at a time and with eight in flight (``io_concurrency``)."""

from __future__ import annotations

from pathlib import Path

import pytest

import cachestatus
from tests.contract.suite import Builds
from tests.status_rows import rows_in_order


@pytest.mark.parametrize("sizes", [False, True], ids=["counted", "sizes"])
def test_rows_are_the_same_with_reads_in_flight(
    builds: Builds, kind: str, sizes: bool, tmp_path: Path
):
    cache = builds.cache(kind)
    found = {
        io: cachestatus.rebuild(
            cache.path,
            tmp_path / f"{io}.gdb",
            workers=1,
            sizes=sizes,
            io_concurrency=io,
            **cache.opening,
        )
        for io in (1, 8)
    }
    assert rows_in_order(found[8].status_path) == rows_in_order(found[1].status_path)
    assert found[8].levels == found[1].levels
    assert found[8].problems == found[1].problems
