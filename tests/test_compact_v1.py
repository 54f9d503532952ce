"""Compact V1 caches written by MapProxy: the same status as V2 caches of the same tiles."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from cachestatus import formats, operations
from cachestatus.errors import CorruptBundle
from cachestatus.formats.base import BundleFile
from cachestatus.formats.compact_v1 import BUNDLX_SIZE, DATA_START, decode_bundlx
from tests.helpers import bytes_read, changing_while_read, mapproxy_v2_cache
from tests.status_rows import COUNTS, task_rows

EXTENT = (-9.5e6, -4.2e6, 1.31e7, 7.7e6)


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> tuple[Path, Path, dict]:
    rng = random.Random(11)
    tiles = {}
    for level, row0, col0, span in [(3, 0, 0, 8), (7, 30, 40, 60), (17, 65400, 70000, 300)]:
        for _ in range(40):
            row, col = row0 + rng.randrange(span), col0 + rng.randrange(span)
            tiles[(level, row, col)] = rng.randbytes(rng.randrange(1, 300))
    root = tmp_path_factory.mktemp("v1")
    v1 = mapproxy_v2_cache(root / "v1", tiles, levels=18, extent=EXTENT, version=1)
    v2 = mapproxy_v2_cache(root / "v2", tiles, levels=18, extent=EXTENT, version=2)
    return v1, v2, tiles


def test_v1_and_v2_of_the_same_tiles_give_the_same_status(twins, tmp_path):
    v1, v2, tiles = twins
    with formats.open_cache(v1) as reader:
        assert reader.name == "compact-v1"
    a = operations.rebuild(v1, tmp_path / "v1.gdb", workers=1, max_missing_rows=500)
    b = operations.rebuild(v2, tmp_path / "v2.gdb", workers=1, max_missing_rows=500)
    assert a.levels == b.levels
    assert task_rows(a.status_path, COUNTS) == task_rows(b.status_path, COUNTS)
    assert a.totals.tiles_present + a.totals.tiles_stray == len(tiles)
    assert a.totals.tile_bytes == sum(len(d) for d in tiles.values())


def test_empty_slots_are_known_from_the_index_alone(twins):
    v1, _, tiles = twins
    with formats.open_cache(v1) as reader:
        bundle = next(b for b in reader.list_bundles(3) if isinstance(b, BundleFile))
        with open(bundle.path[: -len(".bundle")] + ".bundlx", "rb") as f:
            offsets = decode_bundlx(f.read())
        stored = {(r, c) for (lv, r, c) in tiles if lv == 3}
        live = {(int(r), int(c)) for r, c in np.argwhere(offsets >= DATA_START)}
        assert live == stored  # every other slot points into the reserved zone
        index = reader.read_bundle(bundle)
        assert index.tiles == len(stored) and index.dead_bytes == 0


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("short-bundlx", "the .bundlx is 1,000 bytes, expected 81,952"),
        ("no-bundlx", "no .bundlx index beside it"),
        ("short-bundle", "truncated: 100 bytes"),
        ("offset-past-end", "lies past the end of the .bundle"),
    ],
)
def test_damaged_v1_bundles_are_corrupt_rows(twins, tmp_path, damage, reason):
    import shutil

    v1, _, _ = twins
    cache = tmp_path / "cache"
    shutil.copytree(v1, cache)
    bundle = next((cache / "_alllayers/L03").glob("*.bundle"))
    index = bundle.with_suffix(".bundlx")
    if damage == "short-bundlx":
        index.write_bytes(index.read_bytes()[:1000])
    elif damage == "no-bundlx":
        index.unlink()
    elif damage == "short-bundle":
        bundle.write_bytes(bundle.read_bytes()[:100])
    else:
        data = bytearray(index.read_bytes())
        data[16:21] = (10**9).to_bytes(5, "little")
        index.write_bytes(bytes(data))
    report = operations.rebuild(cache, workers=1, max_missing_rows=0)
    assert [p.bundle for p in report.problems] == ["L03/R0000C0000"]
    assert reason in report.problems[0].detail
    assert next(lv for lv in report.levels if lv.level == 7).tiles_present > 0  # the scan went on


def test_decode_rejects_a_wrong_size():
    with pytest.raises(CorruptBundle, match="expected 81,952"):
        decode_bundlx(bytes(BUNDLX_SIZE - 1))


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux's /proc/self/io")
def test_four_bytes_of_the_bundle_are_read_per_present_tile(twins):
    """The whole .bundlx, then 4 bytes of the .bundle per stored tile, as the kernel counts."""
    v1, _, tiles = twins
    with formats.open_cache(v1) as reader:
        bundles = [b for b in reader.list_bundles(17) if isinstance(b, BundleFile)]
        reader.read_bundle(bundles[0])  # imports and first-use costs out of the way
        start = bytes_read()
        before = bytes_read()  # reading the counter counts too: start..before is that cost
        present = sum(reader.read_bundle(b).tiles for b in bundles)
        after = bytes_read()
    assert present == sum(1 for lv, _, _ in tiles if lv == 17)
    # The counter's own text may gain a digit between reads: a byte or two of slack, far below
    # the 40 a fifth byte per tile would add.
    read = after - before - (before - start)
    assert abs(read - (len(bundles) * BUNDLX_SIZE + 4 * present)) <= 2


def test_a_v1_bundle_written_while_read_is_in_progress(twins, tmp_path, monkeypatch):
    """A caching job appends a tile to the .bundle between our reads: IN_PROGRESS, never a count
    mixing the old index with the new file."""
    import shutil

    v1, _, _ = twins
    cache = tmp_path / "cache"
    shutil.copytree(v1, cache)
    bundle = next((cache / "_alllayers/L03").glob("*.bundle"))
    changing_while_read(monkeypatch, bundle)
    report = operations.rebuild(cache, tmp_path / "s.gdb", workers=1, max_missing_rows=0)
    rows = task_rows(report.status_path)
    assert rows["L03/R0000C0000"]["status"] == "IN_PROGRESS"


def test_v1_index_rewritten_while_read_is_in_progress(twins, tmp_path, monkeypatch):
    import shutil

    v1, _, _ = twins
    cache = tmp_path / "cache"
    shutil.copytree(v1, cache)
    bundle = next((cache / "_alllayers/L03").glob("*.bundle"))
    changing_while_read(monkeypatch, bundle.with_suffix(".bundlx"))
    report = operations.rebuild(cache, tmp_path / "s.gdb", workers=1, max_missing_rows=0)
    assert task_rows(report.status_path)["L03/R0000C0000"]["status"] == "IN_PROGRESS"
