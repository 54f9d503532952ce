"""Exploded caches and XYZ/TMS folders written by MapProxy: the same tiles as a V2 cache."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cachestatus import formats, operations
from cachestatus.cli import main
from cachestatus.formats import tile_folders
from tests.builders import WORLD, write_tile_folder
from tests.helpers import WEB_MERCATOR_HALF, mapproxy_v2_cache, write_conf
from tests.status_rows import stored_tiles


@pytest.fixture(scope="module")
def tiles() -> dict:
    rng = random.Random(13)
    out = {}
    for level, row0, col0, span in [(2, 0, 0, 4), (9, 100, 300, 200), (14, 5000, 9000, 300)]:
        for _ in range(50):
            row, col = row0 + rng.randrange(span), col0 + rng.randrange(span)
            out[(level, row, col)] = rng.randbytes(rng.randrange(1, 300))
    return out


@pytest.fixture(scope="module")
def v2_status(tiles, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("v2")
    cache = mapproxy_v2_cache(root / "v2", tiles, levels=15, extent=WORLD)
    return stored_tiles(
        operations.rebuild(cache, root / "v2.gdb", workers=1, max_missing_rows=0).status_path
    )


def test_exploded_cache_matches_v2(tiles, v2_status, tmp_path):
    root = write_conf(tmp_path / "exploded", 15, WORLD, storage="esriMapCacheStorageModeExploded")
    png = {k: v for i, (k, v) in enumerate(tiles.items()) if i % 2}
    jpg = {k: v for i, (k, v) in enumerate(tiles.items()) if not i % 2}
    write_tile_folder(root / "_alllayers", "arcgis", png)
    write_tile_folder(root / "_alllayers", "arcgis", jpg, ext="jpg")  # a MIXED cache
    with formats.open_cache(root) as reader:
        assert reader.name == "exploded"
    report = operations.rebuild(root, tmp_path / "e.gdb", workers=2, sizes=True, max_missing_rows=0)
    assert stored_tiles(report.status_path) == v2_status


@pytest.mark.parametrize("scheme", ["xyz", "tms"])
def test_xyz_and_tms_folders_match_v2(tiles, v2_status, tmp_path, scheme):
    root = write_tile_folder(tmp_path / scheme, "tms", tiles, tms=scheme == "tms")
    hint = None if scheme == "xyz" else "tms"
    with formats.open_cache(root, hint) as reader:
        assert reader.name == scheme and reader.scheme.levels == (2, 9, 14)
    report = operations.rebuild(
        root, tmp_path / "f.gdb", workers=1, max_missing_rows=0, format_hint=hint, sizes=True
    )
    assert stored_tiles(report.status_path) == v2_status


def test_scheme_option_reads_a_tms_folder_from_the_command_line(tiles, v2_status, tmp_path):
    root = write_tile_folder(tmp_path / "tms", "tms", tiles, tms=True)
    status = tmp_path / "s.gdb"
    args = ["rebuild", str(root), "--status", str(status), "--workers", "1", "--sizes"]
    result = CliRunner().invoke(main, [*args, "--scheme", "tms", "--max-missing-rows", "0"])
    assert result.exit_code == 0, result.output
    assert stored_tiles(str(status)) == v2_status
    read_as_xyz = operations.rebuild(
        root, tmp_path / "x.gdb", workers=1, max_missing_rows=0, sizes=True, scheme="xyz"
    )
    assert stored_tiles(read_as_xyz.status_path) != v2_status  # rows upside down


def test_scheme_option_is_refused_where_row_order_is_fixed(sample):
    result = CliRunner().invoke(main, ["info", str(sample), "--scheme", "tms"])
    assert result.exit_code == 2
    assert "compact-v2, whose row order is fixed" in result.stderr
    result = CliRunner().invoke(main, ["info", str(sample), "--scheme", "zyx"])
    assert result.exit_code == 2 and "'zyx' is not one of 'xyz', 'tms'" in result.stderr


def test_zero_byte_tile_files_are_not_present(tmp_path):
    root = tmp_path / "xyz"
    (root / "3" / "2").mkdir(parents=True)
    (root / "3" / "2" / "5.png").write_bytes(b"png!")
    (root / "3" / "2" / "6.png").write_bytes(b"")
    result = CliRunner().invoke(main, ["rebuild", str(root), "--json", "--workers", "1", "--sizes"])
    assert result.exit_code == 0, result.output
    assert '"tiles_present": 1' in result.stdout and '"tile_bytes": 4' in result.stdout


def test_without_sizes_tiles_are_counted_not_measured(tiles, tmp_path):
    root = write_tile_folder(tmp_path / "xyz", "tms", tiles)
    counted = operations.rebuild(root, tmp_path / "c.gdb", workers=1, max_missing_rows=0)
    measured = operations.rebuild(
        root, tmp_path / "m.gdb", workers=1, max_missing_rows=0, sizes=True
    )
    assert [lv.tiles_present for lv in counted.levels] == [
        lv.tiles_present for lv in measured.levels
    ]
    assert counted.totals.tile_bytes == 0
    assert measured.totals.tile_bytes == sum(len(d) for d in tiles.values())


_NAME = st.one_of(
    st.integers(0, 2**31).map(lambda n: f"{n}.png"),
    st.integers(0, 2**31).map(lambda n: f"{n:08x}.jpg"),
    st.integers(0, 2**32 - 1).map(lambda n: f"C{n:08x}.png"),
    st.integers(0, 2**32 - 1).map(lambda n: f"C{n:08X}.PNG"),
    st.text(alphabet="0123456789abcdefC.pngjPG+- \n", max_size=14),
)


@settings(deadline=None)
@given(st.lists(_NAME, max_size=30), st.sampled_from(["xyz", "exploded"]))
def test_names_parse_in_bulk_as_one_by_one(names, layout):
    """The bulk parse of a folder listing gives what matching each name on its own gives."""
    from cachestatus.formats.tile_folders import ExplodedCache, XYZFolder, names_to_numbers

    reader = XYZFolder if layout == "xyz" else ExplodedCache
    pattern, base = reader.name_pattern, reader.name_base
    expected = [
        int(m.group(1), base) for n in names if "\n" not in n and (m := pattern.fullmatch(n))
    ]
    assert names_to_numbers(names, pattern, base).tolist() == expected


@settings(deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=50), st.booleans())
def test_whole_folders_of_tiles_parse_in_bulk(numbers, hexadecimal):
    """The common folder: every name a tile of one extension (the bulk path)."""
    from cachestatus.formats.tile_folders import ExplodedCache, XYZFolder, names_to_numbers

    reader = ExplodedCache if hexadecimal else XYZFolder
    names = [f"C{n:08x}.jpg" if hexadecimal else f"{n}.png" for n in numbers]
    assert names_to_numbers(names, reader.name_pattern, reader.name_base).tolist() == numbers


@pytest.mark.parametrize("sizes", [False, True])
def test_listing_in_worker_processes_matches_listing_here(tmp_path, sizes):
    """Enough column folders for listing processes: the same status as listing in-process."""
    rng = random.Random(4)
    tiles = {}
    for col in range(300):  # 300 column folders at level 10
        for row in rng.sample(range(1024), 5):
            tiles[(10, row, col)] = rng.randbytes(rng.randrange(1, 40))
    root = tmp_path / "xyz"
    for (level, row, col), data in tiles.items():
        folder = root / str(level) / str(col)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{row}.png").write_bytes(data)
    (root / "10" / "7" / "notes.txt").write_text("not a tile")
    one = operations.rebuild(root, tmp_path / "a.gdb", workers=1, sizes=sizes)
    two = operations.rebuild(root, tmp_path / "b.gdb", workers=2, sizes=sizes)
    assert one.levels == two.levels
    assert stored_tiles(one.status_path) == stored_tiles(two.status_path)
    assert two.totals.tiles_present + two.totals.tiles_stray == len(tiles)
    if sizes:
        assert two.totals.tile_bytes == sum(len(d) for d in tiles.values())


# --- metadata.json beside the zoom folders (mb-util, tippecanoe) -----------------------------

#: The WGS 84 box of tile z2/x1/y1: the tiles inside it at zoom z are its 4**(z-2) descendants.
Z2_TILE_BOX = (-90.0, 0.0, 0.0, 66.51326044311186)


def _mb_util_metadata(root: Path, **values: str) -> None:
    """metadata.json as mb-util writes it: the MBTiles metadata table as a JSON object of text
    values (``json.dump(dict(rows), f, indent=4)``)."""
    import json

    rows = {"name": "test", "description": "", "version": "1", "type": "baselayer", **values}
    with open(root / "metadata.json", "w") as f:
        json.dump(rows, f, indent=4)


def _descendants(level: int) -> dict[tuple[int, int, int], bytes]:
    """Every tile (level, row, col) of level ``level`` inside tile z2/x1/y1."""
    side = 2 ** (level - 2)
    return {
        (level, row, col): b"\x89PNG\r\n\x1a\n"
        for row in range(side, 2 * side)
        for col in range(side, 2 * side)
    }


def test_metadata_json_declares_levels_and_bounds_of_an_xyz_folder(tmp_path):
    """minzoom 2 .. maxzoom 6 with tiles seeded to z4 only: z5 and z6 are expected and empty;
    the bounds (one z2 tile) make every tile outside them stray."""
    tiles = {**_descendants(2), **_descendants(3), **_descendants(4)}
    tiles[(3, 0, 0)] = b"\x89PNG\r\n\x1a\n"  # outside the bounds
    root = write_tile_folder(tmp_path / "xyz", "tms", tiles)
    _mb_util_metadata(
        root, bounds=",".join(map(str, Z2_TILE_BOX)), minzoom="2", maxzoom="6", format="png"
    )
    report = operations.rebuild(root, tmp_path / "s.gdb", workers=1)
    assert report.format == "xyz"
    counts = {
        lv.level: (lv.tiles_expected, lv.tiles_present, lv.tiles_stray) for lv in report.levels
    }
    assert counts == {
        2: (1, 1, 0),
        3: (4, 4, 1),
        4: (16, 16, 0),
        5: (64, 0, 0),
        6: (256, 0, 0),
    }


def test_metadata_json_of_tilejson_numbers_and_a_512_px_tile_size(tmp_path):
    """A folder the pmtiles package writes (pmtiles_to_dir: the archive's JSON metadata as
    metadata.json, here TileJSON numbers and arrays)."""
    convert = pytest.importorskip("pmtiles.convert")
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import Writer

    archive = tmp_path / "a.pmtiles"
    with open(archive, "wb") as f:
        writer = Writer(f)
        for z, x, y in [(0, 0, 0), (1, 0, 0), (1, 1, 1)]:
            writer.write_tile(zxy_to_tileid(z, x, y), b"\x1a\x02ab")
        writer.finalize(
            {"tile_type": TileType.MVT, "tile_compression": Compression.NONE},
            {"minzoom": 0, "maxzoom": 3, "bounds": [-180, -85.0511, 180, 85.0511], "tileSize": 512},
        )
    folder = tmp_path / "tiles"
    convert.pmtiles_to_dir(str(archive), str(folder))
    with formats.open_cache(folder) as reader:
        assert reader.name == "xyz"
        assert reader.scheme.levels == (0, 1, 2, 3)
        assert reader.scheme.tile_cols == 512
        assert reader.scheme.lod(0).resolution == pytest.approx(2 * WEB_MERCATOR_HALF / 512)
    report = operations.rebuild(folder, tmp_path / "s.gdb", workers=1)
    assert [lv.tiles_present for lv in report.levels] == [1, 2, 0, 0]
    assert [lv.tiles_expected for lv in report.levels] == [1, 4, 16, 64]


def test_zoom_folders_outside_the_declared_range_are_not_scanned_and_named(tmp_path):
    root = write_tile_folder(tmp_path / "xyz", "tms", {**_descendants(2), **_descendants(5)})
    _mb_util_metadata(root, minzoom="0", maxzoom="3")
    args = ["rebuild", str(root), "--status", str(tmp_path / "s.gdb"), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "level folder 5 (outside metadata.json's minzoom..maxzoom, 0..3)" in result.stderr
    assert '"level": 5' not in result.stdout


def test_metadata_json_scheme_tms_makes_a_tms_folder(tiles, v2_status, tmp_path, caplog):
    root = write_tile_folder(tmp_path / "tms", "tms", tiles, tms=True)
    _mb_util_metadata(root, scheme="tms", format="png")
    assert formats.detect(root).name == "tms"
    report = operations.rebuild(root, tmp_path / "t.gdb", workers=1, max_missing_rows=0, sizes=True)
    assert stored_tiles(report.status_path) == v2_status  # rows read upward, as stored
    with formats.open_cache(root, scheme="xyz") as reader:  # the user's choice wins, warned
        assert reader.name == "xyz"
    assert "scheme 'tms', but the folder is read with rows downward" in caplog.text


@pytest.mark.parametrize(
    ("content", "warning"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"minzoom": "low", "bounds": "1,2,3"}', "are not zoom levels"),
        ('{"bounds": [10, 0, -10, 5]}', "west is not below east"),
    ],
)
def test_metadata_json_that_cannot_be_used_is_a_warning(tmp_path, caplog, content, warning):
    root = write_tile_folder(tmp_path / "xyz", "tms", _descendants(3))
    (root / "metadata.json").write_text(content)
    with formats.open_cache(root) as reader:
        assert reader.scheme.levels == (3,) and reader.full_extent is None
    assert warning in caplog.text


# --- Tile reads: folders named otherwise, kept listings -----------------------------------------


def test_tile_reads_find_folders_named_otherwise_as_the_scan_does(tmp_path):
    """An exploded row folder in upper-case hex and an XYZ column folder with a leading zero
    are counted by the status; ``read_tile`` and ``presence`` find their tiles too."""
    tiles = {(9, 10, 11): b"ten-eleven", (9, 2, 3): b"two-three"}
    root = write_conf(tmp_path / "exploded", 10, WORLD, storage="esriMapCacheStorageModeExploded")
    write_tile_folder(root / "_alllayers", "arcgis", tiles)
    level = root / "_alllayers" / "L09"
    (level / "R0000000a").rename(level / "R0000000A")
    xyz = write_tile_folder(tmp_path / "xyz", "tms", tiles)
    (xyz / "9" / "3").rename(xyz / "9" / "03")
    for cache, hint in ((root, None), (xyz, None)):
        status = stored_tiles(operations.rebuild(cache, tmp_path / f"{cache.name}.gdb").status_path)
        assert status["L09/R0000C0000"][0] == len(tiles), cache  # both counted
        with formats.open_cache(cache, hint) as reader:
            for (z, row, col), data in tiles.items():
                assert reader.read_tile(z, row, col) == data, (cache, row, col)
                assert reader.presence(z, row - 1, col - 1, 3, 3)[1, 1], (cache, row, col)
            assert reader.read_tile(9, 10, 12) is None
            assert reader.read_tile(9, 11, 11) is None


def test_kept_folder_listings_are_bounded_by_their_names(tmp_path, monkeypatch):
    monkeypatch.setattr(tile_folders, "KEPT_NAMES", 50)
    tiles = {(6, row, col): b"t" for row in range(20) for col in range(20)}
    root = write_tile_folder(tmp_path / "xyz", "tms", tiles)
    old = time.time() - 60
    for folder in root.rglob("*"):
        os.utime(folder, (old, old))  # listings older than the racy window: kept
    with formats.open_cache(root) as reader:
        for col in range(20):
            assert reader.read_tile(6, 0, col) == b"t"
        kept = reader._folders_kept
        assert kept.total <= 50 and 2 <= len(kept._items) <= 3


def test_a_listing_taken_in_the_tick_of_a_later_write_is_not_kept(tmp_path):
    """A tile written after a listing, with the folder's time left as it was (a coarse clock),
    is found: a listing of a folder changed within two seconds is never kept."""
    root = write_tile_folder(tmp_path / "xyz", "tms", {(6, 1, 1): b"first"})
    column = root / "6" / "1"
    stamp = column.stat().st_mtime_ns
    with formats.open_cache(root) as reader:
        assert reader.read_tile(6, 2, 1) is None  # listed now, the folder just written
        (column / "2.png").write_bytes(b"second")
        os.utime(column, ns=(stamp, stamp))
        assert reader.read_tile(6, 2, 1) == b"second"
