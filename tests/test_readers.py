"""Who owns what a reader holds: its spec crosses processes, its listing is a value whose bundles
carry what reading them needs, it starts no process of its own, and it closes every handle it
opened, a constructor that fails included.

Caches of every format whose bundles are virtual (tile folders, MBTiles, GeoPackage, PMTiles) are
written by independent writers, as in ``test_verify``.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.process
import os
import pickle
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

from cachestatus import formats
from cachestatus.errors import InvalidCacheConfig
from cachestatus.formats import CacheSpec, sqlite_tiles, tile_folders
from cachestatus.formats.base import BundleFile, CacheReader, StoredTile
from cachestatus.models import Problem
from cachestatus.plan import ScanPolicy, plan_levels
from cachestatus.scan import listed, scan
from cachestatus.tilecheck import check_chunk
from tests.builders import build, write_geopackage
from tests.test_verify import _png

#: The formats whose bundles are virtual 128 x 128 blocks of a listing.
VIRTUAL = ["exploded", "xyz", "tms", "mbtiles", "geopackage", "pmtiles"]


@pytest.fixture(scope="module")
def tiles() -> dict[tuple[int, int, int], bytes]:
    """Tiles keyed (level, row, col) over three levels, some bundles full, most sparse."""
    rng = np.random.default_rng(5)
    out = {
        (2, r, c): _png(rng.integers(0, 256, (8, 8, 4), dtype=np.uint8))
        for r in range(4)
        for c in range(4)
    }
    blank = _png(np.zeros((8, 8, 4), dtype=np.uint8))
    for level, row0, col0, span in [(9, 100, 300, 200), (14, 5000, 9000, 300)]:
        for _ in range(40):
            row, col = (int(v) for v in rng.integers(0, span, 2))
            out[(level, row0 + row, col0 + col)] = blank
    return out


def _everything(reader: CacheReader) -> list[BundleFile | Problem]:
    return [found for level in reader.scheme.levels for found in reader.list_level(level)]


def _read(reader: CacheReader, bundles: list[BundleFile]) -> list[tuple[object, ...]]:
    """What reading each bundle gives: its index (the sizes as a list) and its tiles."""
    out: list[tuple[object, ...]] = []
    for bundle in bundles:
        index = reader.read_bundle(bundle)
        tiles: list[StoredTile] = list(reader.read_tiles(bundle))
        out.append((index.sizes.tolist(), *index[1:], tiles))
    return out


def _read_from_spec(pickled_spec: bytes, bundles: list[BundleFile]) -> list[tuple[object, ...]]:
    """In a fresh process: a reader opened from a pickled spec reads the bundles listed in
    another process."""
    spec = pickle.loads(pickled_spec)
    with spec.open() as reader:
        return _read(reader, bundles)


@pytest.fixture(scope="module")
def fresh_process():
    """A process spawned afresh (it never saw a reader of the parent's)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        yield pool


@pytest.mark.parametrize("sizes", [False, True], ids=["counted", "sized"])
@pytest.mark.parametrize("kind", VIRTUAL)
def test_a_reader_opened_from_its_spec_elsewhere_reads_the_bundles_listed_here(
    kind, sizes, tiles, tmp_path, fresh_process
):
    cache, opening = build(kind, tmp_path, tiles)
    with formats.open_cache(cache, sizes=sizes, **opening) as reader:
        spec = reader.spec
        bundles = [b for b in _everything(reader) if isinstance(b, BundleFile)]
        here = _read(reader, bundles)
    table = "tiles" if kind == "geopackage" else None
    assert spec == CacheSpec(reader.name, str(cache), sizes and kind != "pmtiles", table)
    assert len(bundles) >= 3 and sum(len(found[-1]) for found in here) == len(tiles)
    there = fresh_process.apply(_read_from_spec, (pickle.dumps(spec), bundles))
    assert there == here


def test_a_listing_is_the_same_each_time_and_counts_its_bundles(tiles, tmp_path):
    for kind in VIRTUAL:
        (tmp_path / kind).mkdir()
        cache, opening = build(kind, tmp_path / kind, tiles)
        with formats.open_cache(cache, **opening) as reader:
            for level in reader.scheme.levels:
                listing = reader.list_level(level)
                first = [(f.key, f.path) if isinstance(f, BundleFile) else f for f in listing]
                again = [(f.key, f.path) if isinstance(f, BundleFile) else f for f in listing]
                assert first == again
                assert listing.count == sum(1 for f in first if isinstance(f, tuple))
                assert listing.count == reader.count_bundles(level)
                assert [f.key for f in reader.list_bundles(level) if isinstance(f, BundleFile)] == [
                    f[0] for f in first if isinstance(f, tuple)
                ]


def _no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a reader started a process")

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refuse)
    monkeypatch.setattr(os, "fork", refuse)


@pytest.fixture()
def wide_caches(tmp_path, monkeypatch) -> list[tuple[Path, dict[str, str]]]:
    """Caches whose listing is worth spreading: levels of more than 256 row or column folders,
    an SQLite file treated as large."""
    monkeypatch.setattr(sqlite_tiles, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(sqlite_tiles, "STRETCH_COLUMNS", 1)
    data = _png(np.zeros((8, 8, 4), dtype=np.uint8))
    # As many row folders as column folders, one tile each.
    wide = {(9, (7 * col) % 512, col): data for col in range(tile_folders.PARALLEL_FOLDERS + 40)}
    caches = []
    for kind in ("exploded", "xyz", "mbtiles", "geopackage"):
        (tmp_path / kind).mkdir()
        caches.append(build(kind, tmp_path / kind, wide))
    return caches


def test_no_reader_starts_a_process_and_the_spread_listing_is_the_same(wide_caches, monkeypatch):
    """Listing work large enough to spread goes through the ``run`` it is given, and only
    there: with the default, everything runs in the calling process (no pool, no fork)."""
    calls: list[int] = []

    def recording(func, items):
        calls.append(len(items))
        return [func(item) for item in items]

    for cache, opening in wide_caches:
        calls.clear()
        with formats.open_cache(cache, **opening) as reader:
            spread = [reader.list_level(level, recording) for level in reader.scheme.levels]
            with monkeypatch.context() as patched:
                _no_processes(patched)
                here = _everything(reader)
                read_here = _read(reader, [b for b in here if isinstance(b, BundleFile)])
            listed = [found for listing in spread for found in listing]
            assert calls and max(calls) > 1, cache  # the work was offered to run, in pieces
            assert [(f.key, f.path) if isinstance(f, BundleFile) else f for f in listed] == [
                (f.key, f.path) if isinstance(f, BundleFile) else f for f in here
            ]
            assert _read(reader, [b for b in listed if isinstance(b, BundleFile)]) == read_here


def _closed(db: sqlite3.Connection) -> bool:
    try:
        db.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


@pytest.fixture()
def connections(monkeypatch) -> list[sqlite3.Connection]:
    """Every connection the SQLite readers open."""
    opened: list[sqlite3.Connection] = []
    real = sqlite_tiles.open_read_only

    def recording(path: Path) -> sqlite_tiles.TileDatabase:
        db = real(path)
        opened.append(db)
        return db

    monkeypatch.setattr(sqlite_tiles, "open_read_only", recording)
    return opened


def test_a_constructor_that_fails_closes_its_connection(tiles, tmp_path, connections):
    plain = tmp_path / "plain.sqlite"
    with sqlite3.connect(plain) as db:
        db.execute("CREATE TABLE other (a)")
    db.close()
    two = write_geopackage(tmp_path / "two.gpkg", {(2, 0, 0): next(iter(tiles.values()))})
    write_geopackage(two, {(2, 1, 1): next(iter(tiles.values()))}, table="roads")
    failing = [
        (CacheSpec("mbtiles", str(plain)), "without a 'tiles' table"),
        (CacheSpec("geopackage", str(two)), "holds several tile tables"),
        (CacheSpec("geopackage", str(two), table="rivers"), "no tile table 'rivers'"),
    ]
    for spec, message in failing:
        connections.clear()
        with pytest.raises(InvalidCacheConfig, match=message):
            spec.open()
        assert connections and all(_closed(db) for db in connections), spec


def test_a_reader_closes_every_connection_it_opened(tiles, tmp_path, connections):
    for kind in ("mbtiles", "geopackage"):
        cache, _ = build(kind, tmp_path, tiles)
        for sizes in (False, True):
            connections.clear()
            with formats.open_cache(cache, sizes=sizes) as reader:
                for bundle in _everything(reader):
                    if isinstance(bundle, BundleFile):
                        reader.read_bundle(bundle)
                assert connections and not all(_closed(db) for db in connections)
            assert all(_closed(db) for db in connections)


def test_the_spec_names_the_options_the_reader_was_opened_with(tiles, tmp_path):
    gpkg = write_geopackage(
        tmp_path / "t.gpkg", {(2, 0, 0): next(iter(tiles.values()))}, table="roads"
    )
    with formats.open_cache(gpkg, sizes=True) as reader:
        assert reader.spec == CacheSpec("geopackage", str(gpkg), sizes=True, table="roads")
    folder, opening = build("tms", tmp_path, tiles)
    with formats.open_cache(folder, **opening) as reader:
        assert reader.spec == CacheSpec("tms", str(folder))
        assert type(reader.spec.open()) is type(reader)
    compact, _ = build("compact-v2", tmp_path, tiles)
    with formats.open_cache(compact, sizes=True) as reader:
        assert reader.spec == CacheSpec("compact-v2", str(compact))  # its sizes come free
    assert pickle.loads(pickle.dumps(reader.spec)) == reader.spec


@pytest.mark.skipif(sys.platform != "linux", reason="the patch reaches forked workers only")
def test_workers_that_cannot_open_the_cache_fail_the_run(tiles, tmp_path, monkeypatch):
    """The cache replaced between the listing and the workers: each worker's task says why,
    and the run fails (it neither hangs nor reads something else)."""
    cache, _ = build("mbtiles", tmp_path, tiles)

    def vanished(self: CacheSpec) -> CacheReader:
        raise InvalidCacheConfig(f"{self.path}: replaced meanwhile")

    with formats.open_cache(cache) as reader:
        monkeypatch.setattr(CacheSpec, "open", vanished)  # in the forked workers too
        plans = plan_levels(reader)
        policy = ScanPolicy.verify()
        with (
            pytest.raises(InvalidCacheConfig, match="replaced meanwhile"),
            listed(reader, plans, policy, workers=2) as (listing, executor),
        ):
            assert executor.size_for(listing.count) == 2  # in worker processes
            scan(listing, executor, check_chunk, [])
