"""``verify``: every stored tile read back, in every format, and bad tiles named by address.

The tiles are real PNGs made with Pillow (with content, one uniform colour, fully transparent),
written by independent writers (MapProxy, the pmtiles package, zipfile); every reader must give
back exactly the bytes each writer was told to store.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cachestatus import content, formats, operations
from cachestatus.cli import main
from cachestatus.formats.base import BundleFile
from tests.builders import WORLD, build, write_mbtiles
from tests.helpers import WEB_MERCATOR_HALF, mapproxy_v2_cache, tree_snapshot, write_conf

USA = Path(__file__).parent / "data" / "esri" / "Usa.tpkx"


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def tiles() -> tuple[dict[tuple[int, int, int], bytes], int]:
    """Tiles keyed (level, row, col): PNGs with content, and blank ones; and how many are blank."""
    rng = random.Random(21)
    nprng = np.random.default_rng(21)
    transparent = _png(np.zeros((16, 16, 4), dtype=np.uint8))
    out: dict[tuple[int, int, int], bytes] = {}
    blank = 0
    for level, row0, col0, span in [(2, 0, 0, 4), (9, 100, 300, 200), (14, 5000, 9000, 300)]:
        for _ in range(30):
            key = (level, row0 + rng.randrange(span), col0 + rng.randrange(span))
            if key in out:
                continue
            choice = rng.random()
            if choice < 0.3:
                out[key] = transparent  # byte-identical repeats, as caches write them
                blank += 1
            elif choice < 0.45:
                colour = np.array([rng.randrange(256) for _ in range(3)] + [255], dtype=np.uint8)
                out[key] = _png(np.broadcast_to(colour, (16, 16, 4)).copy())
                blank += 1
            else:
                out[key] = _png(nprng.integers(0, 256, (16, 16, 4), dtype=np.uint8))
    return out, blank


KINDS = [
    "compact-v2",
    "compact-v1",
    "tpkx",
    "exploded",
    "xyz",
    "tms",
    "mbtiles",
    "geopackage",
    "pmtiles",
]


@pytest.mark.parametrize("kind", KINDS)
def test_every_reader_gives_back_the_bytes_written(kind, tiles, tmp_path):
    stored, blank = tiles
    cache, opening = build(kind, tmp_path, stored)
    read: dict[tuple[int, int, int], bytes] = {}
    with formats.open_cache(cache, **opening) as reader:
        assert reader.name == kind
        for level in reader.scheme.levels:
            for bundle in reader.list_bundles(level):
                assert isinstance(bundle, BundleFile)
                for tile in reader.read_tiles(bundle):
                    assert not tile.damage and bundle.key.holds(tile.row, tile.col)
                    read[(level, tile.row, tile.col)] = tile.data
    assert read == stored
    report = operations.verify(cache, decode=True, blank=True, workers=1, **opening)
    assert report.clean, report.problems
    assert report.totals.tiles == len(stored)
    assert report.totals.blank == blank


def _v2_slot(cache: Path, level: int, row: int, col: int) -> tuple[Path, int, int]:
    """The bundle file of a tile, its offset and its size, from the V2 index."""
    bundle = cache / f"_alllayers/L{level:02d}/R{row - row % 128:04x}C{col - col % 128:04x}.bundle"
    with open(bundle, "rb") as f:
        f.seek(64 + 8 * (128 * (row % 128) + col % 128))
        entry = int.from_bytes(f.read(8), "little")
    return bundle, entry & (2**40 - 1), entry >> 40


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_bad_tiles_are_named_by_address(tiles, tmp_path):
    stored, _ = tiles
    cache = mapproxy_v2_cache(tmp_path / "v2", stored, 15, WORLD)
    content_tiles = sorted(k for k, v in stored.items() if len(v) > 400)
    html, prefix, broken = content_tiles[:3]
    page = b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>"
    bundle, offset, size = _v2_slot(cache, *html)
    _overwrite(bundle, offset, page + bytes(size - len(page)))
    bundle, offset, size = _v2_slot(cache, *prefix)
    _overwrite(bundle, offset - 4, struct.pack("<I", size + 1))
    bundle, offset, size = _v2_slot(cache, *broken)
    data = stored[broken]
    idat = data.index(b"IDAT") + 4  # the compressed pixels: zeroed, the signature intact
    _overwrite(bundle, offset + idat, bytes(16))

    plain = CliRunner().invoke(main, ["verify", str(cache), "--json", "--workers", "1"])
    assert plain.exit_code == 1, plain.output
    found = {p["tile"]: p for p in json.loads(plain.stdout)["problems"]}

    def address(key: tuple[int, int, int]) -> str:
        return f"L{key[0]:02d}/R{key[1]}/C{key[2]}"

    assert set(found) == {address(html), address(prefix)}  # decoding finds the third
    assert found[address(html)]["kind"] == "not-an-image"
    assert "an HTML page" in found[address(html)]["detail"]
    assert found[address(prefix)]["kind"] == "damaged"
    assert "disagrees with the index's" in found[address(prefix)]["detail"]
    decoded = CliRunner().invoke(main, ["verify", str(cache), "--json", "--decode"])
    assert decoded.exit_code == 1
    problems = {p["tile"]: p["kind"] for p in json.loads(decoded.stdout)["problems"]}
    assert problems == {
        address(html): "not-an-image",
        address(prefix): "damaged",
        address(broken): "undecodable",
    }
    text = CliRunner().invoke(main, ["verify", str(cache), "--workers", "1"])
    assert f"{address(html)}  not-an-image:" in text.stdout


def test_esri_usa_package_has_two_tiles_without_their_png_signature(tmp_path):
    """Esri's own Usa.tpkx: the L00 and L01 tiles lack the first 4 bytes of the PNG signature
    (the size prefix sits where they belong). Put back, the tiles decode: the tiles are damaged,
    not the reading."""
    report = operations.verify(USA, decode=True, blank=True, workers=1)
    bad = {p.tile: p for p in report.problems}
    assert set(bad) == {"L00/R0/C0", "L01/R0/C0"}
    assert {p.at for p in report.problems} == {(0, 0, 0), (1, 0, 0)}
    assert all(p.kind == "not-an-image" for p in bad.values())
    assert report.totals.tiles == 1 + 1 + 4 + 9 + 30 + 99
    with formats.open_cache(USA) as reader:
        for level in (0, 1):
            bundle = next(b for b in reader.list_bundles(level) if isinstance(b, BundleFile))
            (tile,) = reader.read_tiles(bundle)
            assert content.decode_error(b"\x89PNG" + tile.data) is None
            assert content.kind_of(b"\x89PNG" + tile.data) == content.PNG


def test_blank_tiles_of_the_esri_package_are_its_190_byte_transparent_tiles():
    """The README's fact: many Usa.tpkx tiles are one 190-byte transparent PNG. Blank counts per
    level equal the number of 190-byte tiles in each bundle index, decoded once."""
    with formats.open_cache(USA) as reader:
        sized = {}
        for level in reader.scheme.levels:
            for bundle in reader.list_bundles(level):
                if isinstance(bundle, BundleFile):
                    sized[level] = int((reader.read_bundle(bundle).sizes == 190).sum())
    report = operations.verify(USA, blank=True, workers=1)
    assert {lv.level: lv.blank for lv in report.levels if lv.bundles} == sized
    assert sum(sized.values()) == 75


def test_verify_over_an_area_checks_only_its_tiles(tiles, tmp_path):
    stored, _ = tiles
    cache = mapproxy_v2_cache(tmp_path / "v2", stored, 15, WORLD)
    everything = operations.verify(cache, levels=[9], workers=1)
    # Columns 256-400 of level 9 (the tiles lie in columns 300-500).
    east = (0.0, -WEB_MERCATOR_HALF, WEB_MERCATOR_HALF * (400 / 256 - 1), WEB_MERCATOR_HALF)
    part = operations.verify(cache, levels=[9], extent=east, workers=1)
    assert everything.totals.tiles == sum(1 for lv, _, _ in stored if lv == 9)
    assert part.totals.tiles == sum(1 for lv, _, c in stored if lv == 9 and c < 400)
    assert 0 < part.totals.tiles < everything.totals.tiles


def test_verify_in_worker_processes_matches_in_process(tmp_path):
    """Enough bundles for the pool: the same findings from workers as from the calling process."""
    from tests.helpers import synthetic_bundle

    root = write_conf(tmp_path / "many", 12, WORLD)
    png = _png(np.zeros((4, 4, 4), dtype=np.uint8))
    sizes = np.zeros((128, 128), dtype=np.int64)
    sizes[:2, :2] = len(png)
    for i in range(1100):
        synthetic_bundle(
            root / f"_alllayers/L11/R{(i // 16) * 128:04x}C{(i % 16) * 128:04x}.bundle",
            sizes,
            body=png,
        )
    one = operations.verify(root, workers=1, blank=True)
    two = operations.verify(root, workers=2, blank=True)
    assert one.totals == two.totals
    assert two.totals.tiles == 4 * 1100 and two.totals.blank == 4 * 1100


def test_damaged_bundles_are_bundle_problems_and_the_check_goes_on(tiles, tmp_path):
    stored, _ = tiles
    cache = mapproxy_v2_cache(tmp_path / "v2", stored, 15, WORLD)
    bundle = next((cache / "_alllayers/L09").glob("*.bundle"))
    bundle.write_bytes(bundle.read_bytes()[:1000])
    report = operations.verify(cache, workers=1)
    assert [(p.bundle, p.kind, p.tile) for p in report.problems] == [
        (f"L09/{bundle.stem}", "corrupt", "")
    ]
    row, col = (int(part, 16) for part in bundle.stem[1:].split("C"))
    assert report.totals.tiles == sum(
        1 for lv, r, c in stored if (lv, r - r % 128, c - c % 128) != (9, row, col)
    )


def test_verify_leaves_the_cache_untouched(tiles, tmp_path):
    stored, _ = tiles
    cache = mapproxy_v2_cache(tmp_path / "v2", stored, 15, WORLD)
    before = tree_snapshot(cache)
    operations.verify(cache, decode=True, blank=True, workers=1)
    assert tree_snapshot(cache) == before


def test_mbtiles_with_an_empty_blob_and_a_web_page(tiles, tmp_path):
    import sqlite3

    stored, _ = tiles
    mbtiles = write_mbtiles(tmp_path / "t.mbtiles", stored)
    with sqlite3.connect(mbtiles) as db:
        db.execute("UPDATE tiles SET tile_data = x'' WHERE rowid = 1")
        db.execute("UPDATE tiles SET tile_data = CAST('<html>' AS BLOB) WHERE rowid = 2")
    report = operations.verify(mbtiles, workers=1)
    assert sorted(p.kind for p in report.problems) == ["empty", "not-an-image"]
    shutil.copy(mbtiles, tmp_path / "copy.mbtiles")  # readable: nothing was locked or changed


def _blank_fields(status: str, layer: str) -> list:
    """tilesBlank as GDAL reads it back (null: None)."""
    from pyogrio.raw import read

    meta, _, _, values = read(status, layer=layer, read_geometry=False)
    column = values[list(meta["fields"]).index("tilesBlank")]
    return [None if v != v else int(v) for v in column.tolist()]


def test_rebuild_with_blank_counts_the_esri_transparent_tiles(tmp_path):
    plain = operations.rebuild(USA, tmp_path / "plain.gdb", workers=1)
    assert set(_blank_fields(plain.status_path, "LevelStatus")) == {None}  # not counted: null
    assert set(_blank_fields(plain.status_path, "TaskStatus")) == {None}
    result = CliRunner().invoke(
        main, ["rebuild", str(USA), "--status", str(tmp_path / "b.gdb"), "--blank", "--json"]
    )
    assert result.exit_code == 0, result.output
    levels = json.loads(result.stdout)["levels"]
    assert [lv["tiles_blank"] for lv in levels] == [0, 0, 1, 2, 13, 59]
    assert _blank_fields(str(tmp_path / "b.gdb"), "LevelStatus") == [0, 0, 1, 2, 13, 59]
    assert sorted(_blank_fields(str(tmp_path / "b.gdb"), "TaskStatus")) == [0, 0, 1, 2, 13, 59]
    again = operations.summary(USA, tmp_path / "b.gdb")
    assert again.totals.tiles_blank == 75


@pytest.mark.parametrize("kind", ["compact-v2", "mbtiles", "xyz"])
def test_report_with_blank_counts_what_was_made_blank(kind, tiles, tmp_path):
    stored, blank = tiles
    cache, opening = build(kind, tmp_path, stored)
    report = operations.report(
        cache, tmp_path / "out", levels=[2, 9, 14], blank=True, workers=1, **opening
    )
    present = report.totals.tiles_present + report.totals.tiles_stray
    assert present == len(stored)
    assert report.totals.tiles_blank == blank


def test_blank_rebuild_checks_the_size_prefix_of_what_it_reads(tiles, tmp_path):
    stored, _ = tiles
    cache = mapproxy_v2_cache(tmp_path / "v2", stored, 15, WORLD)
    key = min(k for k in stored if k[0] == 9)
    bundle, offset, size = _v2_slot(cache, *key)
    _overwrite(bundle, offset - 4, struct.pack("<I", size + 7))
    plain = operations.rebuild(cache, tmp_path / "a.gdb", workers=1)
    assert not plain.problems  # the index alone cannot tell
    checked = operations.rebuild(cache, tmp_path / "b.gdb", workers=1, blank=True)
    (problem,) = checked.problems
    assert problem.bundle == f"L09/{bundle.stem}"
    assert f"tile R{key[1]}/C{key[2]}: size prefix {size + 7:,} disagrees" in problem.detail


@pytest.mark.parametrize("kind", ["xyz", "mbtiles", "pmtiles", "tpkx"])
def test_verify_spreads_bundles_over_workers_in_every_format(kind, tiles, tmp_path):
    """Reading every tile is heavy: bundles go to worker processes one at a time, whatever the
    format, with the same findings as in one process."""
    stored, blank = tiles
    cache, opening = build(kind, tmp_path, stored)
    one = operations.verify(cache, decode=True, blank=True, workers=1, **opening)
    two = operations.verify(cache, decode=True, blank=True, workers=2, **opening)
    assert two.levels == one.levels and two.problems == one.problems
    assert two.totals.tiles == len(stored) and two.totals.blank == blank
