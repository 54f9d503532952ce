"""MBTiles written by MapProxy: the same stored tiles, bundle by bundle, as a V2 cache of them."""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cachestatus import formats, grid, operations
from cachestatus.cli import main
from tests.builders import write_mbtiles
from tests.helpers import mapproxy_v2_cache
from tests.status_rows import stored_tiles

EXTENT = (-9.5e6, -4.2e6, 1.31e7, 7.7e6)


@given(st.integers(0, 30), st.data())
def test_tms_row_flips_and_flips_back(level, data):
    row = data.draw(st.integers(0, 2**level - 1))
    assert 0 <= grid.tms_row(level, row) < 2**level
    assert grid.tms_row(level, grid.tms_row(level, row)) == row


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path, dict]:
    rng = random.Random(5)
    tiles = {}
    for level, row0, col0, span in [(2, 0, 0, 4), (8, 60, 70, 120), (17, 65400, 70000, 300)]:
        for _ in range(60):
            row, col = row0 + rng.randrange(span), col0 + rng.randrange(span)
            tiles[(level, row, col)] = rng.randbytes(rng.randrange(1, 300))
    for row in range(100, 300):  # a seeded block: whole columns across bundle rows
        for col in range(126, 131):
            tiles[(9, row, col)] = rng.randbytes(rng.randrange(1, 50))
    root = tmp_path_factory.mktemp("mbt")
    mbt = write_mbtiles(root / "tiles.mbtiles", tiles)
    v2 = mapproxy_v2_cache(root / "v2", tiles, levels=18, extent=EXTENT)
    return mbt, v2, tiles


def test_mbtiles_and_v2_store_the_same_tiles_bundle_by_bundle(pair, tmp_path):
    mbt, v2, tiles = pair
    with formats.open_cache(mbt) as reader:
        assert reader.name == "mbtiles"
        assert reader.scheme.levels == (2, 8, 9, 17)
    a = operations.rebuild(mbt, tmp_path / "a.gdb", workers=1, sizes=True, max_missing_rows=0)
    b = operations.rebuild(v2, tmp_path / "b.gdb", workers=1, max_missing_rows=0)
    assert stored_tiles(a.status_path) == stored_tiles(b.status_path)
    # Without sizes, from the index alone (runs of rows): the same tiles, bundle by bundle.
    c = operations.rebuild(mbt, tmp_path / "c.gdb", workers=1, max_missing_rows=0)
    assert {k: v[0] for k, v in stored_tiles(c.status_path).items()} == {
        k: v[0] for k, v in stored_tiles(b.status_path).items()
    }
    assert a.totals.tiles_present + a.totals.tiles_stray == len(tiles)
    assert a.totals.tile_bytes == sum(len(d) for d in tiles.values())
    assert a.status_path == str(tmp_path / "a.gdb")


def test_mbtiles_is_opened_read_only(pair, tmp_path):
    mbt, _, _ = pair
    before = (hashlib.sha256(mbt.read_bytes()).hexdigest(), mbt.stat().st_mtime_ns)
    siblings = sorted(p.name for p in mbt.parent.iterdir())
    report = operations.rebuild(mbt, tmp_path / "s.gdb", workers=1, sizes=True, max_missing_rows=0)
    assert report.problems == []
    assert (hashlib.sha256(mbt.read_bytes()).hexdigest(), mbt.stat().st_mtime_ns) == before
    assert sorted(p.name for p in mbt.parent.iterdir()) == siblings  # no journal, no WAL


def test_default_status_beside_the_file(pair, tmp_path):
    mbt, _, _ = pair
    copy = tmp_path / "copy.mbtiles"
    copy.write_bytes(mbt.read_bytes())
    report = operations.rebuild(copy, workers=1, sizes=True, max_missing_rows=0)
    assert report.status_path == str(tmp_path / "copy.Status.gdb")


def test_bounds_are_the_full_extent(tmp_path):
    path = tmp_path / "b.mbtiles"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tiles (zoom_level, tile_column, tile_row, tile_data)")
        db.execute("CREATE TABLE metadata (name, value)")
        db.execute("INSERT INTO metadata VALUES ('bounds', '-180,-85.0511287798066,0,0')")
        db.execute("INSERT INTO tiles VALUES (3, 0, 0, x'00ff')")
    report = operations.rebuild(path, workers=1, sizes=True)
    (level,) = report.levels
    assert level.tiles_expected == 4 * 4  # the south-west quarter at level 3
    assert level.tiles_present == 1 and level.tile_bytes == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not sqlite at all, just bytes" * 10, "not a readable SQLite file"),
        (None, "without a 'tiles' table"),
    ],
)
def test_bad_mbtiles_exit_2(tmp_path, content, message):
    path = tmp_path / "bad.mbtiles"
    if content is None:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE other (a)")
    else:
        path.write_bytes(content)
    result = CliRunner().invoke(main, ["rebuild", str(path)])
    assert result.exit_code == 2 and message in result.stderr


def test_parallel_scan_opens_its_own_connections(tmp_path):
    # 1,200 bundles (one tile each) at zoom 13: enough for worker processes.
    path = tmp_path / "wide.mbtiles"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tiles (zoom_level, tile_column, tile_row, tile_data)")
        db.execute("CREATE UNIQUE INDEX t ON tiles (zoom_level, tile_column, tile_row)")
        db.executemany(
            "INSERT INTO tiles VALUES (13, ?, ?, x'0102')",
            [(128 * (i % 40) + 5, 128 * (i // 40) + 7) for i in range(1200)],
        )
    serial = operations.rebuild(path, tmp_path / "s.gdb", workers=1, sizes=True)
    parallel = operations.rebuild(path, tmp_path / "p.gdb", workers=2, sizes=True)
    assert parallel.levels == serial.levels
    assert serial.levels[0].bundles == 1200 and serial.levels[0].tile_bytes == 2400
    assert stored_tiles(parallel.status_path) == stored_tiles(serial.status_path)


def _plain_mbtiles(path: Path, rows: list[tuple[int, int, int, bytes]], unique: bool) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tiles (zoom_level, tile_column, tile_row, tile_data)")
        if unique:  # as the MBTiles spec asks
            db.execute(
                "CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)"
            )
        db.execute("CREATE TABLE metadata (name, value)")
        db.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)", rows)
    db.close()
    return path


def test_a_full_bundle_is_known_from_its_count_only_under_a_unique_index(tmp_path):
    """Level 7 written whole (16,384 tiles, one bundle): without --sizes it is counted from the
    grouped query alone. The same count in a table without a unique index, one tile given twice
    in place of another, must not pass for full."""
    rows = [(7, c, r, b"t") for r in range(128) for c in range(128)] + [(6, 2, 1, b"t")]
    full = _plain_mbtiles(tmp_path / "full.mbtiles", rows, unique=True)
    report = operations.rebuild(full, tmp_path / "a.gdb", workers=1, max_missing_rows=0)
    level = next(lv for lv in report.levels if lv.level == 7)
    assert (level.bundles, level.tiles_present) == (1, 128 * 128)
    measured = operations.rebuild(full, tmp_path / "b.gdb", workers=1, sizes=True)
    assert [lv.tiles_present for lv in measured.levels] == [
        lv.tiles_present for lv in report.levels
    ]
    assert measured.totals.tile_bytes == len(rows)  # one byte a tile

    twice = [row for row in rows if row[1:3] != (0, 0)] + [(7, 1, 1, b"t")]
    loose = _plain_mbtiles(tmp_path / "loose.mbtiles", twice, unique=False)
    report = operations.rebuild(loose, tmp_path / "c.gdb", workers=1, max_missing_rows=0)
    level = next(lv for lv in report.levels if lv.level == 7)
    assert level.tiles_present == 128 * 128 - 1


@settings(deadline=None, max_examples=60)
@given(
    st.sets(st.tuples(st.integers(0, 511), st.integers(0, 511)), max_size=400),
    st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500), st.integers(1, 300)), max_size=4),
)
def test_runs_give_the_bundles_and_presence_of_the_tiles(scattered, blocks):
    """Tiles as runs (scattered ones and whole blocks, as seeded caches hold them) give the
    same bundles, counts and presence as the tiles counted one by one."""
    from collections import Counter

    from cachestatus.formats.sqlite_tiles import RunIndex, presence, rows_to_runs
    from cachestatus.models import BundleKey

    tiles = set(scattered)
    for r0, c0, side in blocks:
        tiles |= {(r, c) for r in range(r0, min(r0 + side, 512)) for c in range(c0, c0 + 3)}
    rows = np.array([r for r, _ in tiles], dtype=np.int64)
    cols = np.array([c for _, c in tiles], dtype=np.int64)
    # Duplicates, as a table without a unique index may hold: counted once.
    runs = rows_to_runs(np.r_[cols, cols[:5]], np.r_[rows, rows[:5]])
    index = RunIndex(9, runs)
    expected = Counter(BundleKey(9, r - r % 128, c - c % 128) for r, c in tiles)
    parts = dict(index.parts())  # each bundle with its runs, as a listed bundle carries them
    counts = {key: int((part[:, 2] - part[:, 1]).sum()) for key, part in parts.items()}
    assert counts == dict(sorted(expected.items()))
    assert list(counts) == sorted(expected) and index.count() == len(expected)
    for key in expected:
        found = presence(key, parts[key])
        assert {(key.row + r, key.col + c) for r, c in zip(*np.nonzero(found), strict=True)} == {
            t for t in tiles if key.holds(*t)
        }


def test_walking_the_index_in_processes_matches_walking_it_here(pair, tmp_path, monkeypatch):
    """The index walked in stretches of columns by listing processes (as for files of more
    than 32 MB; here for any size) gives the same status as one walk in this process."""
    from cachestatus.formats import sqlite_tiles

    mbt, _, _ = pair
    here = operations.rebuild(mbt, tmp_path / "a.gdb", workers=1, max_missing_rows=0)
    monkeypatch.setattr(sqlite_tiles, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(sqlite_tiles, "STRETCH_COLUMNS", 1)
    spread = operations.rebuild(mbt, tmp_path / "b.gdb", workers=2, max_missing_rows=0)
    assert spread.levels == here.levels
    assert stored_tiles(spread.status_path) == stored_tiles(here.status_path)


# --- What the metadata declares: minzoom..maxzoom, tileSize ----------------------------------


def _converted(tmp_path: Path, tiles: dict[tuple[int, int, int], bytes], **metadata) -> Path:
    """An MBTiles written by the pmtiles package's converter (an independent writer of the
    metadata rows, every value text) from an archive of ``tiles`` (zoom, row down, col) whose
    JSON metadata holds ``metadata`` (minzoom, maxzoom, tileSize...): the converter copies it
    into the metadata table, and adds bounds and what is missing from the archive's header."""
    convert = pytest.importorskip("pmtiles.convert")
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import Writer

    archive = tmp_path / "source.pmtiles"
    with open(archive, "wb") as f:
        writer = Writer(f)
        for tile_id, data in sorted((zxy_to_tileid(z, c, r), d) for (z, r, c), d in tiles.items()):
            writer.write_tile(tile_id, data)
        writer.finalize(
            {"tile_type": TileType.PNG, "tile_compression": Compression.NONE},
            {"name": "t", "format": "png", **metadata},
        )
    target = tmp_path / "converted.mbtiles"
    convert.pmtiles_to_mbtiles(str(archive), str(target))
    return target


def test_declared_zoom_range_expects_levels_never_seeded(tmp_path):
    """Seeding stopped at z3 of a declared z0-z5: z4 and z5 are expected, and empty (0.1.0 read
    the file as 100 % complete over z0-z3 alone)."""
    tiles = {(z, r, c): b"\x89PNG" for z in range(4) for r in range(2**z) for c in range(2**z)}
    path = _converted(tmp_path, tiles, minzoom=0, maxzoom=5)
    with sqlite3.connect(path) as db:
        meta = dict(db.execute("SELECT name, value FROM metadata"))
    assert (meta["minzoom"], meta["maxzoom"]) == ("0", "5")  # the converter writes text
    report = operations.rebuild(path, tmp_path / "s.gdb", workers=1)
    assert [lv.level for lv in report.levels] == [0, 1, 2, 3, 4, 5]
    assert [lv.percent_complete for lv in report.levels] == [100.0] * 4 + [0.0, 0.0]
    assert [lv.tiles_expected for lv in report.levels][4:] == [4**4, 4**5]
    assert report.totals.percent_complete < 100.0


def test_tiles_outside_the_declared_zoom_range_are_not_scanned_and_named(tmp_path):
    tiles = {(z, 0, 0): b"\x89PNG" for z in (2, 3, 4, 9)}
    path = _converted(tmp_path, tiles, minzoom="3", maxzoom="4")  # its tiles go beyond
    result = CliRunner().invoke(
        main, ["rebuild", str(path), "--status", str(tmp_path / "s.gdb"), "--json"]
    )
    assert result.exit_code == 0, result.output
    levels = {lv["level"]: lv for lv in json.loads(result.stdout)["levels"]}
    assert sorted(levels) == [3, 4]
    assert "z2 is not a level" in result.stderr and "z9 is not a level" in result.stderr


@pytest.mark.parametrize(
    ("minzoom", "maxzoom", "levels"),
    [
        ("2", None, [2, 3, 4, 5, 6]),  # a bound not declared: the stored levels' own
        (None, "8", [1, 2, 3, 4, 5, 6, 7, 8]),
        ("x", "8", [1, 6]),  # unusable: ignored with a warning, the stored levels
    ],
)
def test_one_declared_bound_is_taken_with_the_stored_levels(tmp_path, minzoom, maxzoom, levels):
    path = tmp_path / "one.mbtiles"
    write_mbtiles(path, {(1, 0, 0): b"a", (6, 0, 0): b"b"})
    with sqlite3.connect(path) as db:
        for name, value in (("minzoom", minzoom), ("maxzoom", maxzoom)):
            if value is not None:
                db.execute("INSERT INTO metadata VALUES (?, ?)", (name, value))
    db.close()
    with formats.open_cache(path) as reader:
        assert list(reader.scheme.levels) == levels


def test_metadata_tile_size_sets_scales_and_resolutions(tmp_path):
    """tileSize (text in MBTiles metadata, as the converter writes it): a 512 px level 3 has
    the resolution of a 256 px level 4."""
    path = _converted(tmp_path, {(3, 0, 0): b"\x89PNG"}, tileSize=512)
    with sqlite3.connect(path) as db:
        (size,) = db.execute("SELECT value FROM metadata WHERE name = 'tileSize'").fetchone()
    assert size == "512"
    with formats.open_cache(path) as reader:
        assert (reader.scheme.tile_cols, reader.scheme.tile_rows) == (512, 512)
        assert reader.scheme.lod(3).resolution == pytest.approx(2 * 20037508.342789244 / 256 / 2**4)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE metadata SET value = '513.5' WHERE name = 'tileSize'")
    db.close()
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 2 and "tileSize is '513.5'" in result.stderr
