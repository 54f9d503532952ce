"""Incremental rebuild: after random changes to a cache, a rebuild that reuses the rows of the
unchanged bundles writes the very store a full rebuild writes, and reads only what changed.

The caches are written by MapProxy; the stores are compared through GDAL (pyogrio), not through
cachestatus's own reader.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyogrio.raw import read

from cachestatus import missing_areas, rebuild
from cachestatus.cli import main
from cachestatus.formats import arcgis_layout
from cachestatus.results import StatusReport
from cachestatus.storage import RACY_NS
from tests.builders import build
from tests.helpers import conf_cdi
from tests.remote import S3Server, make_bucket, upload
from tests.status_rows import task_rows

LEVELS = 10
#: Bundles (level, bundle row, bundle col) of the base cache, and some only the other has.
BASE = [(8, 0, 0), (8, 1, 1), (9, 0, 0), (9, 0, 1), (9, 2, 3), (9, 3, 3)]
EXTRA = [(8, 1, 0), (9, 1, 2)]
#: An hour ago: changes are dated clearly before the rebuilds (see RACY_NS).
HOUR = 3600 * 10**9


def _tiles(bundles: list[tuple[int, int, int]], seed: int) -> dict[tuple[int, int, int], bytes]:
    """A few tiles in each bundle, placed and sized by ``seed`` (holes of several shapes)."""
    rng = np.random.default_rng(seed)
    tiles = {}
    for level, brow, bcol in bundles:
        for _ in range(int(rng.integers(1, 40))):
            row, col = (int(v) for v in rng.integers(0, 128, 2))
            if rng.random() < 0.3:  # a full band of rows: a block hole beside it
                for r in range(row, min(row + 8, 128)):
                    tiles[(level, brow * 128 + r, bcol * 128 + col)] = b"b" * 40
            tiles[(level, brow * 128 + row, bcol * 128 + col)] = bytes(rng.integers(1, 255, 30))
    return tiles


def _age(root: Path, when: int) -> None:
    """Date every file under ``root`` at ``when`` (ns)."""
    for folder, _, names in os.walk(root):
        for name in names:
            os.utime(os.path.join(folder, name), ns=(when, when))


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The base cache, and another whose bundles hold other tiles (and more bundles)."""
    root = tmp_path_factory.mktemp("caches")
    base = build("compact-v2", root / "base", _tiles(BASE, 1), levels=LEVELS).path
    other = build("compact-v2", root / "other", _tiles(BASE + EXTRA, 2), levels=LEVELS).path
    _age(base, time.time_ns() - HOUR)
    return base, other


@pytest.fixture(scope="module")
def first_rebuilds(
    caches: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, Path]]:
    """Per store format, a folder holding a copy of the base cache and its first rebuild
    (``Status.<format>``), and a copy of that folder kept aside (:func:`_first_rebuild`)."""
    made = {}
    for suffix in ("gdb", "gpkg"):
        work = tmp_path_factory.mktemp(f"first-{suffix}")
        first = rebuild(_copy(caches[0], work / "cache"), work / f"Status.{suffix}", workers=1)
        assert (first.bundles_read, first.bundles_reused) == (len(BASE), 0)
        kept = tmp_path_factory.mktemp(f"kept-{suffix}") / "work"
        shutil.copytree(work, kept, copy_function=shutil.copy2)
        made[suffix] = (work, kept)
    return made


def _first_rebuild(made: tuple[Path, Path], suffix: str) -> tuple[Path, Path]:
    """The cache and store of a first rebuild, put back as they were written, where they were
    written (times included): the store of that cache, at that path, that the next rebuild
    updates. The same first rebuild for every example, made once (a fifth of their time)."""
    work, kept = made
    shutil.rmtree(work)
    shutil.copytree(kept, work, copy_function=shutil.copy2)
    return work / "cache", work / f"Status.{suffix}"


def _bundle(root: Path, key: tuple[int, int, int]) -> Path:
    level, brow, bcol = key
    return root / "_alllayers" / f"L{level:02d}" / f"R{brow * 128:04x}C{bcol * 128:04x}.bundle"


def _copy(base: Path, dest: Path) -> Path:
    shutil.copytree(base, dest, copy_function=shutil.copy2)
    return dest


# --- Comparing stores, through GDAL --------------------------------------------------------


def _table(store: Path, layer: str) -> list[dict[str, Any]]:
    meta, _, _, values = read(str(store), layer=layer)
    columns = {name: column.tolist() for name, column in zip(meta["fields"], values, strict=True)}
    rows = [
        {k: _plain(v[i]) for k, v in columns.items() if k != "jobID"} for i in range(len(values[0]))
    ]
    return sorted(rows, key=lambda r: r["levelID"])


def _missing_areas(store: Path) -> dict[int, tuple[Any, ...]]:
    meta, _, wkb, values = read(str(store), layer="MissingAreas")
    columns = dict(zip(meta["fields"], values, strict=True))
    return {
        int(level): (int(count), int(exact), shapely.from_wkb(geometry))
        for level, count, exact, geometry in zip(
            columns["levelID"], columns["tilesMissing"], columns["exact"], wkb, strict=True
        )
    }


def _plain(value: Any) -> Any:
    """A field's value, a null read as NaN made ``None`` (NaN equals nothing)."""
    return None if isinstance(value, float) and value != value else value


def assert_same_store(incremental: Path, full: Path) -> None:
    """TaskStatus rows (polygons included), LevelStatus and MissingAreas equal."""
    rows_a, rows_b = (
        {
            name: {k: _plain(v) for k, v in row.items() if k != "jobID"}
            for name, row in task_rows(store, geometry=True).items()
        }
        for store in (incremental, full)
    )
    assert rows_a == rows_b
    assert _table(incremental, "LevelStatus") == _table(full, "LevelStatus")
    areas_a, areas_b = _missing_areas(incremental), _missing_areas(full)
    assert areas_a.keys() == areas_b.keys()
    for level, (count, exact, geometry) in areas_a.items():
        other = areas_b[level]
        assert (count, exact) == other[:2]
        # The same tiles exactly: no part of either lies outside the other.
        assert shapely.equals(geometry, other[2]), level
        assert shapely.symmetric_difference(geometry, other[2]).area == 0


def _jobs(store: Path) -> list[dict[str, Any]]:
    meta, _, _, values = read(str(store), layer="Jobs")
    columns = {name: column.tolist() for name, column in zip(meta["fields"], values, strict=True)}
    return [{k: v[i] for k, v in columns.items()} for i in range(len(values[0]))]


# --- (a) random changes -------------------------------------------------------------------

ACTIONS = ("keep", "rewrite", "delete", "truncate", "empty", "touch", "lock")


def _apply(cache: Path, other: Path, plan: dict[tuple[int, int, int], str], when: int) -> set:
    """Change the bundles of ``cache`` as ``plan`` says; the bundles a rebuild must read."""
    changed = set()
    for key, action in plan.items():
        path = _bundle(cache, key)
        lock = path.with_suffix(".lock")
        lock.unlink(missing_ok=True)
        if action == "keep" or not (path.exists() or action in ("rewrite", "add")):
            continue
        if action == "delete":
            path.unlink(missing_ok=True)
            continue
        if action in ("rewrite", "add"):
            shutil.copyfile(_bundle(other, key), path)
        elif action == "truncate":
            with open(path, "r+b") as f:
                f.truncate(max(1, path.stat().st_size // 2))
        elif action == "empty":
            path.write_bytes(b"")
        elif action == "lock":
            lock.write_bytes(b"")
        os.utime(path, ns=(when, when))  # clearly before the rebuild, and not as it was
        changed.add(key)
    return changed


def _plans(keys: list[tuple[int, int, int]]) -> Any:
    return st.fixed_dictionaries({key: st.sampled_from(ACTIONS) for key in keys})


def rebuilt_after(
    cache: Path, other: Path, store: Path, plan: dict[tuple[int, int, int], str], step: int
) -> tuple[StatusReport, Path]:
    """``plan`` carried out on ``cache`` (with ``other``'s bundles), then an incremental rebuild
    of ``store`` and a full one beside it: the incremental run's report and the full store,
    once the two stores are found equal and the incremental run found to read only what
    changed, what is new and what it could not trust."""
    previous = {k: r["status"] for k, r in task_rows(store, ["status"]).items()}
    changed = _apply(cache, other, plan, time.time_ns() - HOUR + step * 10**6)
    on_disk = {k for k in BASE + EXTRA if _bundle(cache, k).exists()}
    suspect = {
        k
        for k in on_disk
        if previous.get(f"L{k[0]:02d}/R{k[1] * 128:04x}C{k[2] * 128:04x}")
        in (None, "CORRUPT", "IN_PROGRESS")
    }
    again = rebuild(cache, store, workers=1)
    full = rebuild(cache, store.with_stem(f"Full{step}"), workers=1, reuse=False)
    full_store = Path(str(full.status_path))
    assert_same_store(store, full_store)
    assert again.levels == full.levels
    assert again.totals == full.totals
    assert again.bundles_read == len((changed & on_disk) | suspect)
    assert again.bundles_reused == len(on_disk) - again.bundles_read
    assert (full.bundles_read, full.bundles_reused) == (len(on_disk), 0)
    return again, full_store


# GeoPackage stores go through the same steps in test_gpkg_update.py, which checks them with
# these assertions and its own: here, FileGDB stores. (This test drew its store format at
# random over 60 examples: about 30 a format, as many as each format now gets.)
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=_plans(BASE), second=_plans(BASE), added=st.sets(st.sampled_from(EXTRA)))
def test_random_changes_give_a_full_rebuilds_store(
    caches: tuple[Path, Path],
    first_rebuilds: dict[str, tuple[Path, Path]],
    first,
    second,
    added,
) -> None:
    cache, store = _first_rebuild(first_rebuilds["gdb"], "gdb")
    for step, plan in enumerate([{**first, **dict.fromkeys(added, "add")}, second], 1):
        rebuilt_after(cache, caches[1], store, plan, step)


# --- (b) an unchanged cache reads no bundle --------------------------------------------------


def test_unchanged_cache_opens_no_bundle(
    caches: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _copy(caches[0], tmp_path / "cache")
    store = tmp_path / "Status.gdb"
    first = rebuild(cache, store, workers=1)
    opened: list[str] = []

    class Counted(arcgis_layout.LocalFile):
        def __init__(self, path: str) -> None:
            opened.append(path)
            super().__init__(path)

    monkeypatch.setattr(arcgis_layout, "LocalFile", Counted)
    again = rebuild(cache, store, workers=1)
    assert opened == []
    assert (again.bundles_read, again.bundles_reused) == (0, len(BASE))
    assert again.levels == first.levels
    full = rebuild(cache, tmp_path / "Full.gdb", workers=1, reuse=False)
    assert len(opened) == len(BASE)
    assert_same_store(store, Path(str(full.status_path)))
    jobs = _jobs(store)
    assert [(j["bundlesRead"], j["bundlesReused"]) for j in jobs] == [(len(BASE), 0), (0, 6)]


# --- (c) another request: a full scan -------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{"levels": [9]}, {"blank": True}, {"max_missing_rows": 3}, {"reuse": False}],
    ids=["levels", "blank", "max-missing-rows", "full"],
)
def test_another_request_reads_every_bundle(
    caches: tuple[Path, Path], tmp_path: Path, options: dict[str, Any]
) -> None:
    cache = _copy(caches[0], tmp_path / "cache")
    store = tmp_path / "Status.gpkg"
    rebuild(cache, store, workers=1)
    again = rebuild(cache, store, workers=1, **options)
    assert again.bundles_reused == 0
    assert again.bundles_read == sum(1 for k in BASE if k[0] in options.get("levels", [8, 9]))


def test_another_full_extent_reads_every_bundle(caches: tuple[Path, Path], tmp_path: Path) -> None:
    cache = _copy(caches[0], tmp_path / "cache")
    store = tmp_path / "Status.gpkg"
    rebuild(cache, store, workers=1)
    (cache / "conf.cdi").write_text(conf_cdi((-1e6, -1e6, 1e6, 1e6)))
    again = rebuild(cache, store, workers=1)
    assert (again.bundles_read, again.bundles_reused) == (len(BASE), 0)
    assert_same_store(
        store, Path(str(rebuild(cache, tmp_path / "F.gpkg", reuse=False).status_path))
    )


# --- (d) a store written before BundleFiles: a full scan ------------------------------------


def test_store_without_bundle_files_reads_every_bundle(
    caches: tuple[Path, Path], tmp_path: Path
) -> None:
    cache = _copy(caches[0], tmp_path / "cache")
    store = tmp_path / "Status.gpkg"
    rebuild(cache, store, workers=1)
    db = sqlite3.connect(store)  # as an earlier version wrote it: no BundleFiles table
    with db:
        db.execute("DROP TABLE BundleFiles")
        db.execute("DELETE FROM gpkg_contents WHERE table_name = 'BundleFiles'")
        db.execute("DELETE FROM gpkg_ogr_contents WHERE table_name = 'BundleFiles'")
    db.close()
    again = rebuild(cache, store, workers=1)
    assert (again.bundles_read, again.bundles_reused) == (len(BASE), 0)
    assert (rebuild(cache, store, workers=1).bundles_reused) == len(BASE)


# --- (e) a bundle written just before the previous run is read again -------------------------


def test_bundle_written_just_before_the_previous_run_is_read_again(
    caches: tuple[Path, Path], tmp_path: Path
) -> None:
    cache = _copy(caches[0], tmp_path / "cache")
    store = tmp_path / "Status.gdb"
    racy = _bundle(cache, BASE[2])
    written = time.time_ns() - RACY_NS // 2
    os.utime(racy, ns=(written, written))
    rebuild(cache, store, workers=1)
    # The next run starts once the mtime lies more than RACY_NS before it, however long the
    # first run took, and a second more (a FileGDB keeps a job's start to the second): the run
    # after it then reuses the bundle.
    while time.time_ns() <= written + RACY_NS + 10**9:
        time.sleep(0.05)
    again = rebuild(cache, store, workers=1)
    assert (again.bundles_read, again.bundles_reused) == (1, len(BASE) - 1)
    # Read again, the bundle's mtime now lies well before that run: it is reused from then on.
    assert rebuild(cache, store, workers=1).bundles_reused == len(BASE)


# --- Output --------------------------------------------------------------------------------


def test_cli_says_how_many_bundles_were_read_and_reused(
    caches: tuple[Path, Path], tmp_path: Path
) -> None:
    cache = _copy(caches[0], tmp_path / "cache")
    store = str(tmp_path / "Status.gdb")
    runner = CliRunner()
    first = runner.invoke(main, ["rebuild", str(cache), "--status", store, "--workers", "1"])
    assert first.exit_code == 0, first.output
    assert f"{len(BASE)} bundles read, 0 reused" in first.stderr
    again = runner.invoke(
        main, ["rebuild", str(cache), "--status", store, "--workers", "1", "--json"]
    )
    totals = json.loads(again.stdout)["totals"]
    assert (totals["bundles_read"], totals["bundles_reused"]) == (0, len(BASE))
    full = runner.invoke(
        main, ["rebuild", str(cache), "--status", store, "--workers", "1", "--json", "--full"]
    )
    totals = json.loads(full.stdout)["totals"]
    assert (totals["bundles_read"], totals["bundles_reused"]) == (len(BASE), 0)
    verify = runner.invoke(main, ["verify", str(cache), "--workers", "1", "--json"])
    totals = json.loads(verify.stdout)["totals"]
    assert (totals["bundles_read"], totals["bundles_reused"]) == (len(BASE), 0)


# --- (f) nothing changed: the store is carried over, as a rewrite would write it --------------


@pytest.mark.parametrize("suffix", ["gdb", "gpkg"])
@pytest.mark.parametrize("options", [{}, {"max_missing_rows": 3}], ids=["all", "capped"])
def test_unchanged_cache_carries_the_store_over(
    caches: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
    options: dict[str, Any],
) -> None:
    # Levels whose holes pass this many blocks get a cover and a warning: both must survive.
    monkeypatch.setattr(missing_areas, "MAX_EXACT_BLOCKS", 4)
    cache = _copy(caches[0], tmp_path / "cache")
    (_bundle(cache, (9, 0, 0)).parent / "R0000Cxyz.bundle").write_bytes(b"")  # a problem
    store = tmp_path / f"Status.{suffix}"
    first = rebuild(cache, store, workers=1, **options)
    again = rebuild(cache, store, workers=1, **options)
    full = rebuild(cache, tmp_path / f"Full.{suffix}", workers=1, reuse=False, **options)
    assert (again.bundles_read, again.bundles_reused) == (0, len(BASE))
    assert_same_store(store, Path(str(full.status_path)))
    assert again.levels == full.levels
    assert again.problems == full.problems and again.problems
    assert again.warnings == full.warnings
    assert any("scattered" in w for w in full.warnings)
    assert any("left out" in w for w in full.warnings) == bool(options)
    # Carried over, not written again: the rows keep the job that wrote them; the level totals
    # name the new one.
    _, _, _, (job_ids,) = read(str(store), layer="TaskStatus", columns=["jobID"])
    assert set(job_ids.tolist()) == {first.job_id}
    _, _, _, (job_ids,) = read(str(store), layer="LevelStatus", columns=["jobID"])
    assert set(job_ids.tolist()) == {again.job_id}
    jobs = _jobs(store)
    assert [j["jobID"] for j in jobs] == [first.job_id, again.job_id]
    assert [(j["bundlesRead"], j["bundlesReused"]) for j in jobs] == [(len(BASE), 0), (0, 6)]
    assert jobs[1]["outcome"] == _jobs(Path(str(full.status_path)))[0]["outcome"]


# --- (g) on object storage: ETags tell the changed bundles -----------------------------------


def test_incremental_rebuild_on_object_storage(
    caches: tuple[Path, Path], s3_env: S3Server, tmp_path: Path
) -> None:
    base, other = caches
    url = upload(s3_env, base, make_bucket(s3_env, "incremental"), "cache/Layers")
    store = tmp_path / "Status.gdb"
    first = rebuild(url, store, workers=1)
    assert (first.bundles_read, first.bundles_reused) == (len(BASE), 0)
    again = rebuild(url, store, workers=1)
    assert (again.bundles_read, again.bundles_reused) == (0, len(BASE))
    assert_same_store(
        store, Path(str(rebuild(url, tmp_path / "Full1.gdb", reuse=False).status_path))
    )
    # One bundle uploaded again with other tiles: a new ETag, the same key.
    replaced = _bundle(other, BASE[1])
    key = f"cache/Layers/{replaced.relative_to(other).as_posix()}"
    s3_env.client().put_object(Bucket="incremental", Key=key, Body=replaced.read_bytes())
    changed = rebuild(url, store, workers=1)
    assert (changed.bundles_read, changed.bundles_reused) == (1, len(BASE) - 1)
    full = rebuild(url, tmp_path / "Full2.gdb", workers=1, reuse=False)
    assert_same_store(store, Path(str(full.status_path)))
    assert changed.levels == full.levels != first.levels


def test_a_stamp_compares_as_its_text_does() -> None:
    """Stamps are kept as one int64 each: an integer (st_mtime_ns) as itself, other text (an
    ETag) as a digest; equal only where the texts ``str`` gives are equal."""
    from cachestatus.store.records import NO_STAMP, stamp_value, stamp_values

    mtime = 1_733_000_000_123_456_789
    assert stamp_value(mtime) == stamp_value(str(mtime)) == mtime
    assert stamp_value(-5) == stamp_value("-5") == -5
    assert stamp_value("0123") != stamp_value("123")  # other texts: read again
    assert stamp_value('"d41d8cd98f00b204e9800998ecf8427e"') == stamp_value(
        '"d41d8cd98f00b204e9800998ecf8427e"'
    )
    etags = [f'"{i:032x}"' for i in range(20_000)] + ["0x8DCB6A1F2E3D4C5", "12345678901234567890"]
    assert len(set(stamp_values(etags).tolist())) == len(etags)
    texts = [str(mtime), "+5", " 5", "05", "5_0", None, str(2**63), "-7"]  # each as stamp_value
    assert stamp_values(texts).tolist() == [stamp_value(t) for t in texts]
    assert stamp_values([str(mtime), "-7"]).tolist() == [mtime, -7]
    assert stamp_value(None) == NO_STAMP and stamp_value(2**63) == stamp_value(str(2**63))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 3, 7, 19, 23, 39, 2**15 - 1]),
            st.integers(0, 2**24 - 1),
            st.integers(0, 2**24 - 1),
        ),
        unique=True,
        max_size=60,
    ),
    st.lists(
        st.tuples(st.integers(-2, 2**15 + 1), st.integers(-1, 2**24), st.integers(-1, 2**24)),
        max_size=20,
    ),
)
def test_stored_keys_pack_sort_and_are_found_again(
    stored: list[tuple[int, int, int]], others: list[tuple[int, int, int]]
) -> None:
    """Bundle keys (bundle origins up to 2**31 - 128) packed and sorted come back whole, each
    found at its place, and a key the store lacks (another level, row or column) is not."""
    from cachestatus.incremental import StoredFiles, _packed

    keys = np.array([(lv, r * 128, c * 128) for lv, r, c in stored], dtype=np.int64).reshape(-1, 3)
    count = len(keys)
    files = StoredFiles.of(
        [
            _packed(keys[:, 0], keys[:, 1], keys[:, 2]),
            np.arange(1, count + 1, dtype=np.int32),
            np.arange(count, dtype=np.int64) * 100,
        ]
    )
    level, row, col = files.keys()
    back = set(zip(level.tolist(), row.tolist(), col.tolist(), strict=True))
    assert back == {tuple(k) for k in keys.tolist()}
    in_order = list(zip(level.tolist(), row.tolist(), col.tolist(), strict=True))
    assert in_order == sorted(in_order)  # a level's keys are one run (Previous.outcome)
    assert files.find(level, row, col).tolist() == list(range(count))
    # Each row keeps its own fid and signature through the sort.
    by_key = {tuple(k): i for i, k in enumerate(keys.tolist())}
    at = [by_key[k] for k in zip(level.tolist(), row.tolist(), col.tolist(), strict=True)]
    assert files.fid.tolist() == [i + 1 for i in at] and files.sig.tolist() == [i * 100 for i in at]
    lacking = np.array(
        [(lv, r * 128, c * 128) for lv, r, c in others if (lv, r * 128, c * 128) not in by_key],
        dtype=np.int64,
    ).reshape(-1, 3)
    found = files.find(lacking[:, 0], lacking[:, 1], lacking[:, 2])
    assert (found == -1).all()


@pytest.mark.parametrize("suffix", ["gdb", "gpkg"])
def test_the_stored_files_are_read_a_part_at_a_time_as_gdal_reads_them(
    first_rebuilds: dict[str, tuple[Path, Path]], suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The previous store's bundle files and the TaskStatus row of each, read a part of two
    rows at a time, are those GDAL reads whole: each key with its feature id, size and stamp,
    and the id of its row."""
    from cachestatus.incremental import StoredFiles, _packed
    from cachestatus.store import reader
    from cachestatus.store.records import file_signatures, stamp_values

    _, store = _first_rebuild(first_rebuilds[suffix], suffix)
    monkeypatch.setattr(reader, "_FETCH", 2)
    monkeypatch.setattr(reader, "_GDAL_PART", 2)
    parts = list(reader.key_parts(store, {"MISSING"}, among=False))
    assert len(parts) >= 3 and all(len(p[0]) <= 2 for p in parts)
    stored = StoredFiles.read(store)
    assert stored is not None and len(stored) == len(BASE)

    meta, fids, _, values = read(str(store), layer="BundleFiles", return_fids=True)
    files = dict(zip(meta["fields"], values, strict=True))
    key = _packed(files["levelID"], files["bundleRow"], files["bundleCol"])
    sig = file_signatures(files["fileBytes"].astype(np.int64), stamp_values(files["stamp"]))
    expected = sorted(zip(key.tolist(), np.asarray(fids).tolist(), sig.tolist(), strict=True))
    held = zip(stored.key.tolist(), stored.fid.tolist(), stored.sig.tolist(), strict=True)
    assert list(held) == expected

    meta, fids, _, values = read(
        str(store), layer="TaskStatus", return_fids=True, where="status <> 'MISSING'"
    )
    rows = dict(zip(meta["fields"], values, strict=True))
    row_of: dict[int, int] = {}  # a key's first row
    packed = _packed(rows["levelID"], rows["bundleRow"], rows["bundleCol"]).tolist()
    for key_of_row, fid in zip(packed, np.asarray(fids).tolist(), strict=True):
        row_of.setdefault(key_of_row, fid)
    row_fid, others = stored.rows(store)
    assert row_fid.tolist() == [row_of[k] for k in stored.key.tolist()] and others == 0


def test_the_stored_files_take_a_few_bytes_a_row_while_they_are_read(
    first_rebuilds: dict[str, tuple[Path, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a store's BundleFiles rows to compare stamps with holds the arrays it keeps,
    20 bytes a row, and their sort: not the table's tuples, texts nor a second copy of every
    column. Traced peak (numpy's arrays included) over 40,000 more rows: at most 36 bytes a
    row (the whole table read, then concatenated, took 150 or more)."""
    import tracemalloc

    from cachestatus.incremental import StoredFiles
    from cachestatus.store import reader

    monkeypatch.setattr(reader, "_FETCH", 1024)  # the rows of a part: not what grows
    _, first = _first_rebuild(first_rebuilds["gpkg"], "gpkg")
    peaks = []
    for rows in (40_000, 80_000):
        store = tmp_path / f"{rows}.gpkg"
        shutil.copyfile(first, store)
        with sqlite3.connect(store) as db:
            # Not in the order of the keys: they are sorted.
            db.execute(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                'INSERT INTO "BundleFiles" (levelID, bundleRow, bundleCol, fileBytes, stamp, '
                "blockRow0, blockRow1, blockCol0, blockCol1, holes) "
                "SELECT 12, i / 3000 * 128, i % 3000 * 128, 5000 + i, "
                "CAST(1700000000000000000 + i AS TEXT), 0, 0, 0, 0, '' FROM n ORDER BY i DESC",
                (rows - 1,),
            )
        tracemalloc.start()
        try:
            stored = StoredFiles.read(store)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert stored is not None and len(stored) == rows + len(BASE)
        assert (stored.key[1:] > stored.key[:-1]).all()
        del stored
        peaks.append(peak)
    assert (peaks[1] - peaks[0]) / 40_000 <= 36, peaks


def test_a_store_whose_keys_do_not_pack_is_rebuilt_in_full(
    caches: tuple[Path, Path], tmp_path: Path
) -> None:
    """A BundleFiles row of a level beyond what a packed key holds (2**15, written by another
    program): the stored files are not read (ValueError), and the next rebuild reads every
    bundle, with the rows a full rebuild writes."""
    from cachestatus.incremental import StoredFiles

    cache = _copy(caches[0], tmp_path / "cache")
    store = tmp_path / "Status.gpkg"
    rebuild(cache, store, workers=1)
    with sqlite3.connect(store) as db:
        db.execute('UPDATE "BundleFiles" SET levelID = 32768 WHERE fid = 1')
    with pytest.raises(ValueError, match="does not reuse"):
        StoredFiles.read(store)
    again = rebuild(cache, store, workers=1)
    assert (again.bundles_read, again.bundles_reused) == (len(BASE), 0)
    full = Path(str(rebuild(cache, tmp_path / "Full.gpkg", workers=1, reuse=False).status_path))
    assert_same_store(store, full)
