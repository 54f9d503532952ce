"""PMTiles written by other software: pmtiles-rs's brotli and leaf fixtures (their figures are
the oracle of tests/data/realworld/README.md, computed from the PMTiles specification without
cachestatus), and archives the pmtiles package writes with zstd, a 512 px tile size, declared
zoom ranges and bounds that are a point or a line."""

from __future__ import annotations

import gzip
import io
import json
import math
import random
import shutil
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cachestatus import formats, operations
from cachestatus.cli import main
from cachestatus.errors import InvalidCacheConfig
from cachestatus.models import StatusReport
from tests.builders import PMTILES_LEAF_TILES
from tests.helpers import WEB_MERCATOR_HALF
from tests.test_blobs_hostile import _cli

pmtiles_writer = pytest.importorskip("pmtiles.writer")
zstandard = pytest.importorskip("zstandard")
brotli = pytest.importorskip("brotli")
from pmtiles.tile import (  # noqa: E402
    Compression,
    TileType,
    deserialize_directory,
    deserialize_header,
    serialize_directory,
    serialize_header,
    zxy_to_tileid,
)

DATA = Path(__file__).parent / "data" / "realworld" / "pmtiles"
#: Oracle (tests/data/realworld/README.md): z0 holds 1 tile of 18,338 bytes; header zooms 0-22.
BROTLI_TILES = {0: 1}
BROTLI_BYTES = 18_338
#: Oracle (README): z0:1 z1:4, five 1-byte tiles, tile type 0 (unknown).
LEAF_TILES = {0: 1, 1: 4}
TILE_256 = 2 * WEB_MERCATOR_HALF / 256  # metres a pixel at zoom 0 on 256 px tiles


def _copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copyfile(DATA / name, target)
    return target


def _present(report: StatusReport) -> dict[int, int]:
    return {lv.level: lv.tiles_present for lv in report.levels if lv.tiles_present}


def _png(side: int, colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(out, "PNG")
    return out.getvalue()


def _archive(
    path: Path,
    tiles: dict[tuple[int, int, int], bytes],
    *,
    metadata: dict | None = None,
    zooms: tuple[int, int] | None = None,
    bounds: tuple[float, float, float, float] = (-180, -85.0511287, 180, 85.0511287),
    tile_type: TileType = TileType.PNG,
    codec: str = "gzip",
) -> Path:
    """Tiles keyed (zoom, row, col) written by the pmtiles package's Writer. With ``codec``
    zstd or brotli, the tiles are compressed with it and the writer's gzip directories and
    metadata recompressed with it (the writer itself only writes gzip). ``zooms`` overrides
    the header's zoom range (the writer sets it from the tiles)."""
    compression = {"gzip": Compression.GZIP, "zstd": Compression.ZSTD, "brotli": Compression.BROTLI}
    squeeze = {
        "gzip": lambda b: gzip.compress(b, mtime=0),
        "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
        "brotli": brotli.compress,
    }[codec]
    with open(path, "wb") as f:
        writer = pmtiles_writer.Writer(f)
        for tile_id, data in sorted((zxy_to_tileid(z, c, r), d) for (z, r, c), d in tiles.items()):
            writer.write_tile(tile_id, squeeze(data))
        writer.finalize(
            {
                "tile_type": tile_type,
                "tile_compression": compression[codec],
                "min_lon_e7": round(bounds[0] * 1e7),
                "min_lat_e7": round(bounds[1] * 1e7),
                "max_lon_e7": round(bounds[2] * 1e7),
                "max_lat_e7": round(bounds[3] * 1e7),
                "center_zoom": 0,
                "center_lon_e7": 0,
                "center_lat_e7": 0,
            },
            metadata or {},
        )
    raw = path.read_bytes()
    header = deserialize_header(raw[:127])
    if zooms is not None:
        header["min_zoom"], header["max_zoom"] = zooms
    if codec != "gzip":  # recompress the metadata, each leaf, then the root pointing at them

        def section(name: str) -> bytes:
            start = header[f"{name}_offset"]
            return raw[start : start + header[f"{name}_length"]]

        def directory(entries: list) -> bytes:
            return squeeze(gzip.decompress(serialize_directory(entries)))

        leaves_in = section("leaf_directory")
        root = deserialize_directory(section("root"))
        leaves = b""
        for entry in root:
            if entry.run_length == 0:  # a leaf directory
                leaf = leaves_in[entry.offset : entry.offset + entry.length]
                packed = directory(deserialize_directory(leaf))
                entry.offset, entry.length = len(leaves), len(packed)
                leaves += packed
        parts = {
            "root": directory(root),
            "metadata": squeeze(gzip.decompress(section("metadata"))),
            "leaf_directory": leaves,
        }
        tile_data = raw[header["tile_data_offset"] :]
        header["internal_compression"] = compression[codec]
        offset = 127
        for name, part in parts.items():
            header[f"{name}_offset"], header[f"{name}_length"] = offset, len(part)
            offset += len(part)
        header["tile_data_offset"] = offset
        raw = serialize_header(header) + b"".join(parts.values()) + tile_data
    else:
        raw = serialize_header(header) + raw[127:]
    path.write_bytes(raw)
    return path


# --- Item 4: brotli and zstd are read --------------------------------------------------------


def test_brotli_archive_of_pmtiles_rs_is_read_with_the_readme_counts(tmp_path):
    """Oracle: README, single_tile_brotli.pmtiles: z0 1 tile, 18,338 bytes; zooms 0-22."""
    archive = _copy("single_tile_brotli.pmtiles", tmp_path)
    with formats.open_cache(archive) as reader:
        assert reader.scheme.levels == tuple(range(23))  # the header's declared zoom range
    report = operations.rebuild(archive, tmp_path / "s.gdb", workers=1, levels=[0, 1, 2])
    assert _present(report) == BROTLI_TILES
    assert report.totals.tile_bytes == BROTLI_BYTES
    assert [lv.tiles_expected for lv in report.levels] == [1, 4, 16]
    assert [lv.percent_complete for lv in report.levels] == [100.0, 0.0, 0.0]
    # verify decompresses the brotli tile body: a PNG that decodes and is not blank.
    checked = operations.verify(archive, levels=[0], decode=True, blank=True, workers=1)
    assert checked.clean and checked.totals.tiles == 1 and checked.totals.blank == 0


def test_brotli_archive_on_the_command_line(tmp_path):
    archive = _copy("single_tile_brotli.pmtiles", tmp_path)
    result = CliRunner().invoke(main, ["verify", str(archive), "--levels", "0", "--decode"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("codec", ["zstd", "brotli"])
def test_zstd_and_brotli_archives_read_like_gzip_ones(tmp_path, codec):
    tiles = {
        (z, r, c): _png(256, (z * 40, r, c)) for z in range(1, 4) for r in (0, 1) for c in (0, 1)
    }
    tiles[(0, 0, 0)] = _png(256, (0, 0, 0))
    tiles.update({(14, 5000 + i, 7000 + i): _png(256, (i, 0, 0)) for i in range(40)})
    plain = _archive(tmp_path / "gzip.pmtiles", tiles)
    packed = _archive(tmp_path / f"{codec}.pmtiles", tiles, codec=codec)
    assert packed.read_bytes()[97] == (4 if codec == "zstd" else 3)
    a = operations.rebuild(plain, tmp_path / "a.gdb", workers=1, levels=[0, 1, 3, 14])
    b = operations.rebuild(packed, tmp_path / "b.gdb", workers=1, levels=[0, 1, 3, 14])
    assert _present(a) == _present(b) == {0: 1, 1: 4, 3: 4, 14: 40}
    checked = operations.verify(packed, decode=True, workers=1)
    assert checked.clean and checked.totals.tiles == len(tiles)


def test_zstd_archive_with_leaf_directories(tmp_path):
    rng = random.Random(3)
    tiles: dict[tuple[int, int, int], bytes] = {}
    while len(tiles) < PMTILES_LEAF_TILES:
        tiles[(14, rng.randrange(2**14), rng.randrange(2**14))] = rng.randbytes(8)
    archive = _archive(tmp_path / "leaves.pmtiles", tiles, codec="zstd", tile_type=TileType.UNKNOWN)
    raw = archive.read_bytes()
    assert struct.unpack_from("<Q", raw, 48)[0] > 0  # leaf directories, compressed with zstd
    report = operations.rebuild(archive, tmp_path / "l.gdb", workers=1, levels=[14])
    assert _present(report) == {14: PMTILES_LEAF_TILES}


#: Bytes a bomb inflates to: past every cap (directories 64 MiB, tiles 32 MiB).
BOMB = 2**27


def _bomb(codec: str, size: int = BOMB) -> bytes:
    if codec == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(bytes(size))
    return brotli.compress(bytes(size), quality=1)


@pytest.mark.parametrize("codec", ["zstd", "brotli"])
def test_a_directory_bomb_is_refused_within_memory(tmp_path, codec):
    """A 128 MiB root directory compressed to kilobytes, in an archive that does not count its
    entries (so only the 64 MiB directory cap holds): refused under the address-space limit."""
    archive = _archive(tmp_path / "ok.pmtiles", {(0, 0, 0): b"x"}, codec=codec)
    raw = bytearray(archive.read_bytes())
    bomb = _bomb(codec)
    header = deserialize_header(bytes(raw[:127]))
    header["root_offset"], header["root_length"] = len(raw), len(bomb)
    header["tile_entries_count"] = 0
    archive.write_bytes(serialize_header(header) + bytes(raw[127:]) + bomb)
    result = _cli("rebuild", archive, "--workers", "1")
    assert result.returncode == 2, result.stderr
    assert "root directory is broken" in result.stderr
    assert "decompresses to more than" in result.stderr


@pytest.mark.parametrize("codec", ["zstd", "brotli"])
def test_a_tile_bomb_is_one_damaged_tile_within_memory(tmp_path, codec):
    tiles = {(1, r, c): _png(8, (r, c, 0)) for r in range(2) for c in range(2)}
    archive = _archive(tmp_path / "t.pmtiles", tiles, codec=codec)
    raw = bytearray(archive.read_bytes())
    header = deserialize_header(bytes(raw[:127]))
    # Point the last directory entry's body at a bomb: rewrite the tile data section.
    with formats.open_cache(archive) as reader:
        bundle = next(iter(reader.list_bundles(1)))
        spans = sorted(
            {(int(o), int(s)) for _, _, s, o in bundle.payload.tiles(bundle.key).tolist()}
        )
    data = bytes(raw[header["tile_data_offset"] :])
    offset, size = spans[-1]
    bomb = _bomb(codec)
    assert len(bomb) > size
    # Keep the entry's length: a bomb whose first ``size`` bytes are all the tile keeps.
    data = data[:offset] + bomb[:size]
    archive.write_bytes(bytes(raw[: header["tile_data_offset"]]) + data)
    result = _cli("verify", archive, "--workers", "1", "--json")
    assert result.returncode == 1, result.stderr
    problems = json.loads(result.stdout)["problems"]
    assert len(problems) == 1 and problems[0]["kind"] == "damaged"
    # Truncated by the cut (or over the cap): never inflated whole.
    assert "truncated" in problems[0]["detail"] or "more than" in problems[0]["detail"]


def test_a_tile_that_inflates_past_its_cap_is_damaged_not_inflated(tmp_path, monkeypatch):
    from cachestatus.formats import pmtiles

    monkeypatch.setattr(pmtiles, "TILE_CAP", 1000)
    tiles = {(0, 0, 0): _png(8, (1, 2, 3)) + bytes(5000)}
    archive = _archive(tmp_path / "cap.pmtiles", tiles, codec="zstd")
    report = operations.verify(archive, workers=1)
    (problem,) = report.problems
    assert problem.kind == "damaged" and "more than 1,000 bytes" in problem.detail


# --- Item 5: tile size from the metadata -----------------------------------------------------


def test_a_512_px_archive_has_512_px_scales_everywhere(tmp_path):
    tiles = {(z, 0, 0): _png(512, (z, 0, 0)) for z in range(4)}
    archive = _archive(tmp_path / "hd.pmtiles", tiles, metadata={"tileSize": 512}, codec="zstd")
    with formats.open_cache(archive) as reader:
        scheme = reader.scheme
        assert (scheme.tile_cols, scheme.tile_rows) == (512, 512)
        # The resolution of zoom z on 512 px tiles is that of zoom z + 1 on 256 px tiles.
        for lod in scheme.lods:
            assert lod.resolution == pytest.approx(TILE_256 / 2 ** (lod.level + 1))
            assert lod.scale == pytest.approx(lod.resolution * 96 / 0.0254)
    # JSON of rebuild, and the store's LevelStatus.
    result = CliRunner().invoke(
        main, ["rebuild", str(archive), "--status", str(tmp_path / "hd.gdb"), "--json"]
    )
    assert result.exit_code == 0, result.output
    levels = json.loads(result.stdout)["levels"]
    assert [round(lv["resolution"], 6) for lv in levels] == [
        round(TILE_256 / 2 ** (z + 1), 6) for z in range(4)
    ]
    from pyogrio.raw import read

    meta, _, _, values = read(tmp_path / "hd.gdb", layer="LevelStatus", read_geometry=False)
    column = dict(zip(meta["fields"], values, strict=True))
    assert sorted(column["resolution"].round(6).tolist()) == sorted(
        round(TILE_256 / 2 ** (z + 1), 6) for z in range(4)
    )
    # --scales matches the 512 px scale of zoom 2, which a 256 px reading puts at zoom 3.
    scale_z2 = TILE_256 / 2**3 * 96 / 0.0254
    chosen = CliRunner().invoke(
        main, ["verify", str(archive), "--scales", f"{scale_z2:.2f}", "--json"]
    )
    assert chosen.exit_code == 0, chosen.output
    assert [lv["level"] for lv in json.loads(chosen.stdout)["levels"]] == [2]
    # Without a declared tile size, tiles are 256 px.
    plain = _archive(tmp_path / "sd.pmtiles", {(0, 0, 0): _png(8, (0, 0, 0))})
    with formats.open_cache(plain) as reader:
        assert reader.scheme.tile_cols == 256
        assert reader.scheme.lods[0].resolution == pytest.approx(TILE_256)


@pytest.mark.parametrize("value", ["abc", 0, -512, 1e9, 512.5, True, [512]])
def test_a_bad_tile_size_is_refused_naming_it(tmp_path, value):
    archive = _archive(tmp_path / "bad.pmtiles", {(0, 0, 0): b"x"}, metadata={"tileSize": value})
    with pytest.raises(InvalidCacheConfig, match=r"metadata: tileSize is .*whole number"):
        formats.open_cache(archive)
    result = _cli("rebuild", archive, "--workers", "1")
    assert result.returncode == 2 and "tileSize is" in result.stderr


@pytest.mark.parametrize("codec", ["gzip", "zstd", "brotli"])
def test_metadata_bombs_and_deep_nesting_are_refused_within_memory(tmp_path, codec):
    archive = _archive(tmp_path / "m.pmtiles", {(0, 0, 0): b"x"}, codec=codec)
    raw = archive.read_bytes()
    header = deserialize_header(raw[:127])
    squeeze = {
        "gzip": lambda b: gzip.compress(b, mtime=0),
        "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
        "brotli": lambda b: brotli.compress(b, quality=1),
    }[codec]
    for body, message in [
        (b'{"a": "' + b" " * 2**25 + b'"}', "decompresses to more than"),
        (b"[" * 100_000 + b"]" * 100_000, "nested 100,000 deep"),
    ]:
        packed = squeeze(body)
        header["metadata_offset"], header["metadata_length"] = len(raw), len(packed)
        archive.write_bytes(serialize_header(header) + raw[127:] + packed)
        result = _cli("rebuild", archive, "--workers", "1")
        assert result.returncode == 2, result.stderr
        assert "metadata" in result.stderr and message in result.stderr


# --- Items 1, 2, 7: declared bounds and zoom range -------------------------------------------


def _tile_of(lon: float, lat: float, zoom: int) -> tuple[int, int]:
    """(row, col) of the tile holding a WGS 84 point: the slippy-map formula, on its own."""
    n = 2**zoom
    col = math.floor((lon + 180) / 360 * n)
    rad = math.radians(lat)
    row = math.floor((1 - math.log(math.tan(rad) + 1 / math.cos(rad)) / math.pi) / 2 * n)
    return row, col


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ((8.5417, 47.3769, 8.5417, 47.3769), lambda z: 1),  # a point: one tile a level
        ((0.0, 10.0, 0.0, 10.0), lambda z: 1),  # a point on a column edge at every zoom
        ((8.0, 47.3769, 8.0, 47.3769), lambda z: 1),
    ],
)
def test_a_point_extent_expects_the_tile_holding_it(tmp_path, bounds, expected):
    archive = _archive(tmp_path / "p.pmtiles", {(0, 0, 0): b"x"}, bounds=bounds, zooms=(0, 20))
    report = operations.rebuild(archive, tmp_path / "p.gdb", workers=1)
    assert [lv.tiles_expected for lv in report.levels] == [expected(z) for z in range(21)]
    from cachestatus import grid
    from cachestatus.plan import plan_levels

    with formats.open_cache(archive) as reader:
        for plan in plan_levels(reader, [3, 15, 20]):
            block = plan.expected.bounds
            z = plan.lod.level
            assert (block.row0, block.col0) == _tile_of(bounds[0], bounds[1], z)
            assert grid.bundle_count(block) == 1


def test_header_bounds_in_degrees_give_the_expected_tiles_in_web_mercator(tmp_path):
    """A rectangle and a line, both in degrees: each level expects the tiles the slippy-map
    formula (computed here on its own) puts them in."""
    bounds = (5.9, 45.8, 10.5, 47.8)  # Switzerland
    archive = _archive(tmp_path / "ch.pmtiles", {(0, 0, 0): b"x"}, bounds=bounds, zooms=(0, 12))
    report = operations.rebuild(archive, tmp_path / "ch.gdb", workers=1)
    for lv in report.levels:
        top, left = _tile_of(bounds[0], bounds[3], lv.level)
        bottom, right = _tile_of(bounds[2], bounds[1], lv.level)
        assert lv.tiles_expected == (bottom - top + 1) * (right - left + 1), lv.level
    bounds = (8.2, 47.3769, 9.6, 47.3769)  # a parallel from 8.2 to 9.6 degrees east
    archive = _archive(tmp_path / "l.pmtiles", {(0, 0, 0): b"x"}, bounds=bounds, zooms=(0, 14))
    report = operations.rebuild(archive, tmp_path / "l.gdb", workers=1)
    for lv in report.levels:
        _, left = _tile_of(bounds[0], bounds[1], lv.level)
        _, right = _tile_of(bounds[2], bounds[1], lv.level)
        assert lv.tiles_expected == right - left + 1
    assert not any("declares no full extent" in w for w in report.warnings)


def test_the_declared_zoom_range_is_expected_and_only_it(tmp_path):
    tiles = {(z, 0, 0): _png(8, (z, 0, 0)) for z in range(4)}
    tiles[(6, 1, 1)] = _png(8, (9, 9, 9))
    archive = _archive(tmp_path / "z.pmtiles", tiles, zooms=(1, 5), bounds=(-180, -85, 180, 85))
    report = operations.rebuild(archive, tmp_path / "z.gdb", workers=1)
    assert [lv.level for lv in report.levels] == [1, 2, 3, 4, 5]
    assert [lv.tiles_present for lv in report.levels] == [1, 1, 1, 0, 0]
    assert [lv.percent_complete for lv in report.levels][3:] == [0.0, 0.0]  # declared, unbuilt
    assert any("z0" in w for w in report.warnings)  # listed outside the declared range
    assert any("z6" in w for w in report.warnings)


# --- Item 9: verify on an archive that declares no tile type ---------------------------------


def test_verify_does_not_judge_tiles_against_a_type_nobody_declared(tmp_path):
    """Oracle: README, leaf.pmtiles: tile type 0 (unknown), five intact 1-byte tiles ("0".."4",
    inside the tile data section): nothing to call wrong, one warning saying so. The counts,
    z0:1 z1:4 (5 bytes, through a leaf directory), are the README's too."""
    archive = _copy("leaf.pmtiles", tmp_path)
    status = operations.rebuild(archive, tmp_path / "leaf.gdb", workers=1)
    assert _present(status) == LEAF_TILES
    assert status.totals.tile_bytes == 5
    report = operations.verify(archive, workers=1)
    assert report.clean and report.totals.tiles == 5
    (warning,) = [w for w in report.warnings if "declares no tile type" in w]
    assert "5 tiles of no recognised kind were not judged" in warning
    result = CliRunner().invoke(main, ["verify", str(archive)])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("declares no tile type") == 1


def test_recognised_signatures_are_still_checked_without_a_declared_type(tmp_path):
    tiles = {
        (1, 0, 0): b"\x00\x01 of no known kind",
        (1, 0, 1): _png(8, (1, 1, 1)),
        (1, 1, 0): b"\x89PNG\r\n\x1a\nbroken",
    }
    archive = _archive(tmp_path / "u.pmtiles", tiles, tile_type=TileType.UNKNOWN, codec="zstd")
    report = operations.verify(archive, decode=True, workers=1)
    assert {p.tile: p.kind for p in report.problems} == {"L01/R1/C0": "undecodable"}


def test_a_declared_tile_type_is_still_enforced(tmp_path):
    archive = _archive(tmp_path / "d.pmtiles", {(0, 0, 0): b"<html>502</html>"})
    report = operations.verify(archive, workers=1)
    assert [p.kind for p in report.problems] == ["not-an-image"]
    assert not any("declares no tile type" in w for w in report.warnings)


def test_an_mbtiles_without_a_declared_format_is_judged_the_same_way(tmp_path):
    """The rule holds for every format: an MBTiles whose metadata has no ``format``."""
    import sqlite3

    path = tmp_path / "plain.mbtiles"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        db.execute(
            "CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, "
            "tile_data BLOB)"
        )
        db.executemany(
            "INSERT INTO tiles VALUES (1, ?, ?, ?)",
            [(0, 0, b"\x00terrain"), (1, 0, _png(8, (1, 2, 3))), (0, 1, b"\xff\xd8\xff broken")],
        )
    db.close()
    report = operations.verify(path, decode=True, workers=1)
    assert {p.tile: p.kind for p in report.problems} == {"L01/R0/C0": "undecodable"}
    assert any("1 tiles of no recognised kind were not judged" in w for w in report.warnings)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512), st.integers(1, 4096), st.sampled_from(["gzip", "zstd", "brotli"]))
def test_inflate_stays_within_its_cap_for_every_codec(data, cap, codec):
    from cachestatus.errors import CorruptBundle
    from cachestatus.formats.pmtiles import COMPRESSION_NAMES, inflate

    method = {name: value for value, name in COMPRESSION_NAMES.items()}[codec]
    squeeze = {
        "gzip": lambda b: gzip.compress(b, mtime=0),
        "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
        "brotli": brotli.compress,
    }[codec]
    for packed in (data, squeeze(data), squeeze(data)[:-1]):
        try:
            out = inflate(packed, method, cap)
        except CorruptBundle:
            continue
        assert len(out) <= cap
        if packed is not data:  # what decompresses at all decompresses whole
            assert out == data


def test_arcgis_mixed_jpgpng_is_a_declared_type_not_an_undeclared_one():
    from cachestatus import content

    assert content.kinds_for("JPGPNG") == {content.PNG, content.JPEG}
    assert content.check(b"<html>", content.kinds_for("JPGPNG"))[0] == "not-an-image"
