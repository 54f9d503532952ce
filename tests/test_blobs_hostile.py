"""Hostile PMTiles archives, tile packages and conf.xml files, run through the command line in
a subprocess under an address-space limit and a timeout: each finishes in seconds, within
memory, with the right counts or a one-line message and exit 2 (or a CORRUPT row)."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import (
    WEB_MERCATOR_HALF,
    conf_xml,
    run_limited,
    synthetic_bundle,
    web_mercator_lods,
)

pytest.importorskip("pmtiles")
from pmtiles.tile import Entry, serialize_directory, zxy_to_tileid

LIMIT = 2 * 2**30  # bytes of address space
TIMEOUT = 60  # seconds
#: Tile IDs of zooms 0-31.
LAST = (4**32 - 1) // 3
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_limited(*args, memory=LIMIT, timeout=TIMEOUT)


def _pmtiles(
    path: Path,
    root: bytes,
    *,
    zooms: tuple[int, int] = (0, 14),
    leaves: bytes = b"",
    entries: int = 0,
    bounds: tuple[int, int, int, int] = (-1800000000, -850511287, 1800000000, 850511287),
    gzipped: bool = True,
) -> Path:
    """An archive written byte by byte: header, root directory, leaves, 10 bytes of tile data."""
    header = bytearray(b"PMTiles\x03" + bytes(127 - 8))
    struct.pack_into("<QQ", header, 8, 127, len(root))
    struct.pack_into("<QQ", header, 40, 127 + len(root), len(leaves))
    struct.pack_into("<QQ", header, 56, 127 + len(root) + len(leaves), 10)
    struct.pack_into("<Q", header, 80, entries)
    header[97], header[99] = 2 if gzipped else 1, 2
    header[100], header[101] = zooms
    struct.pack_into("<iiii", header, 102, *bounds)
    path.write_bytes(bytes(header) + root + leaves + bytes(10))
    return path


def _level_rows(result: subprocess.CompletedProcess[str]) -> dict[int, tuple[int, int, int]]:
    """Level -> (bundles, expected, present) from the report table."""
    rows = {}
    for line in result.stdout.splitlines():
        cells = [c.strip().replace(",", "") for c in line.strip("│ ").split("│")]
        if len(cells) >= 6 and cells[0].isdigit():
            rows[int(cells[0])] = (int(cells[3]), int(cells[4]), int(cells[5]))
    return rows


# --- PMTiles: runs stay runs -------------------------------------------------------------


def test_a_174_byte_archive_of_2_to_the_40_tiles_is_counted_by_arithmetic(tmp_path):
    """One entry: tile IDs 0 to 2**40 (every tile of zooms 0-19 and part of 20) sharing one
    body. Expanded tile by tile it took gigabytes; counted as runs it takes seconds."""
    archive = _pmtiles(tmp_path / "runs.pmtiles", serialize_directory([Entry(0, 0, 10, 2**40)]))
    assert archive.stat().st_size < 200
    result = _cli("rebuild", archive, "--status", tmp_path / "s.gdb", "--workers", "1")
    assert result.returncode == 0, result.stderr
    rows = _level_rows(result)
    assert sorted(rows) == list(range(15))
    for z, (bundles, expected, present) in rows.items():
        assert present == expected == 4**z
        assert bundles == max(1, 4**z // 128**2)


def test_runs_over_deep_zooms_cost_what_the_archive_holds_not_what_they_claim(tmp_path):
    """The same entry with zooms 0-31 declared: its runs cover 4**19 / 16,384 bundles at zoom 19
    and more below. A row per such bundle would take hours for 150 bytes: zooms whose runs cover
    more bundles than 65,536 (or one per directory entry) are one problem each, and the zooms
    above are counted as before."""
    root = serialize_directory([Entry(0, 0, 10, 2**40)])
    archive = _pmtiles(tmp_path / "deep.pmtiles", root, zooms=(0, 31))
    result = _cli("rebuild", archive, "--status", tmp_path / "s.gdb", "--workers", "1")
    assert result.returncode == 0, result.stderr
    rows = _level_rows(result)
    for z in range(16):
        assert rows[z][2] == 4**z  # counted as runs
    for z in range(16, 21):
        assert f"L{z:02d}: too-many-bundles" in result.stderr
        assert rows[z][0] == 0


def test_runs_crossing_levels_and_bundles_count_exactly(tmp_path):
    """Runs starting and ending inside bundles, crossing zoom boundaries, below and above
    zoom 7: present tiles per zoom are the runs' overlaps with each zoom's IDs."""
    rng = np.random.default_rng(5)
    first = [(4**z - 1) // 3 for z in range(14)]
    starts = np.sort(rng.choice(np.arange(0, first[13], 997), 40, replace=False))
    runs = [
        (int(s), int(min(rng.integers(1, 200_000), (nxt - s))))
        for s, nxt in zip(starts, [*starts[1:], first[13]], strict=True)
    ]
    root = serialize_directory([Entry(s, 0, 10, n) for s, n in runs])
    archive = _pmtiles(tmp_path / "mixed.pmtiles", root, zooms=(0, 12))
    result = _cli("rebuild", archive, "--status", tmp_path / "s.gdb", "--workers", "1")
    assert result.returncode == 0, result.stderr
    rows = _level_rows(result)
    for z in range(13):
        want = sum(max(0, min(s + n, first[z + 1]) - max(s, first[z])) for s, n in runs)
        assert rows[z][2] == want, z


def test_verify_reads_a_run_body_once_per_bundle_and_judges_every_tile(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + bytes(2)  # 10 bytes: a PNG signature, a short body
    first = zxy_to_tileid(8, 0, 0)
    archive = _pmtiles(tmp_path / "v.pmtiles", serialize_directory([Entry(first, 0, 10, 4**8)]))
    archive.write_bytes(archive.read_bytes()[:-10] + png)
    result = _cli("verify", archive, "--workers", "1")
    assert "65,536" in result.stdout  # every tile of zoom 8 was judged


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([Entry(0, 0, 10, LAST + 1)], "runs past the last tile of zoom 31"),
        ([Entry(LAST, 0, 10, 1)], "tile IDs past the last tile of zoom 31"),
    ],
)
def test_runs_past_what_any_archive_holds_exit_2(tmp_path, entries, message):
    archive = _pmtiles(tmp_path / "bad.pmtiles", serialize_directory(entries))
    result = _cli("rebuild", archive, "--workers", "1")
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_gzip_bomb_root_directory_exits_2(tmp_path):
    bomb = gzip.compress(bytes(200 * 2**20), compresslevel=9)  # 200 MiB of zeros, ~200 KiB
    archive = _pmtiles(tmp_path / "bomb.pmtiles", bomb)
    result = _cli("rebuild", archive, "--workers", "1")
    assert result.returncode == 2
    assert "decompresses to more than" in result.stderr


def test_a_bomb_leaf_is_one_corrupt_bundle_and_the_scan_goes_on(tmp_path):
    leaf = gzip.compress(bytes(100 * 2**20), compresslevel=9)
    z8 = zxy_to_tileid(8, 0, 0)
    root = serialize_directory([Entry(0, 0, 10, 5), Entry(z8, 0, len(leaf), 0)])
    archive = _pmtiles(tmp_path / "leaf.pmtiles", root, leaves=leaf, entries=6)
    result = _cli("rebuild", archive, "--status", tmp_path / "s.gdb", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "leaf directory" in result.stdout + result.stderr
    rows = _level_rows(result)
    assert rows[0][2] == 1 and rows[1][2] == 4  # the root's run is counted
    assert rows[8][0] == 1  # the broken leaf's bundle: one CORRUPT row


@pytest.mark.parametrize(
    ("zooms", "bounds", "message"),
    [
        ((0, 40), (0, 0, 10, 10), "max_zoom 40"),
        ((9, 3), (0, 0, 10, 10), "min_zoom 9, max_zoom 3"),
        ((0, 3), (-2147483648, 0, 10, 10), "min_lon_e7"),
        ((0, 3), (10, 10, 0, 0), "a minimum above its maximum"),
    ],
)
def test_impossible_header_values_exit_2_naming_them(tmp_path, zooms, bounds, message):
    root = serialize_directory([Entry(0, 0, 10, 1)])
    archive = _pmtiles(tmp_path / "h.pmtiles", root, zooms=zooms, bounds=bounds)
    result = _cli("rebuild", archive, "--workers", "1")
    assert result.returncode == 2 and message in result.stderr


# --- Tile packages and conf.xml ----------------------------------------------------------


def _root_json(lods: list[dict], **tile_info: object) -> dict:
    return {
        "tileInfo": {
            "rows": 256,
            "cols": 256,
            "dpi": 96,
            "origin": {"x": -WEB_MERCATOR_HALF, "y": WEB_MERCATOR_HALF},
            "spatialReference": {"wkid": 3857},
            "lods": lods,
            **tile_info,
        },
        "fullExtent": {"xmin": -1e6, "ymin": -1e6, "xmax": 1e6, "ymax": 1e6},
        "storageInfo": {"storageFormat": "esriMapCacheStorageModeCompactV2", "packetSize": 128},
    }


LODS = [{"level": lv, "scale": s, "resolution": r} for lv, s, r in web_mercator_lods(4)]


def _tpkx(path: Path, root: bytes | dict, members: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("root.json", root if isinstance(root, bytes) else json.dumps(root))
        for name, data in (members or {}).items():
            z.writestr(name, data)
    return path


def test_a_root_json_that_inflates_to_gigabytes_is_not_inflated(tmp_path):
    package = tmp_path / "bomb.tpkx"
    with (
        zipfile.ZipFile(package, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z,
        z.open("root.json", "w", force_zip64=True) as f,
    ):
        for _ in range(64):  # 1 GiB of spaces, 4.5 MiB compressed (level 1: 1.8 s, not 6)
            f.write(b" " * 2**24)
    result = _cli("rebuild", package, "--workers", "1")
    assert result.returncode == 2 and "larger than 16,777,216 bytes" in result.stderr


def test_a_deeply_nested_root_json_exits_2(tmp_path):
    package = _tpkx(tmp_path / "deep.tpkx", b"[" * 100_000 + b"]" * 100_000)
    result = _cli("rebuild", package, "--workers", "1")
    assert result.returncode == 2 and "nested 100,000 deep" in result.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lods": [*LODS, {"level": 2**40, "scale": 1.0, "resolution": 1.0}]}, "1099511627776"),
        ({"lods": [*LODS, {"level": -1, "scale": 1.0, "resolution": 1.0}]}, "level ID -1"),
        ({"lods": [*LODS, {"level": 1.5, "scale": 1.0, "resolution": 1.0}]}, "1.5"),
        ({"lods": [*LODS, dict(LODS[0])]}, "LevelID appears twice"),
        ({"lods": [*LODS, {"level": 9, "scale": 0, "resolution": 1.0}]}, "scale 0"),
        ({"lods": [*LODS, {"level": 9, "scale": 1.0, "resolution": -1}]}, "resolution -1"),
        ({"cols": 0}, "tile size 0 x 256"),
        ({"rows": 10**9}, "tile size 256 x 1e+09"),
        ({"dpi": 0}, "DPI is 0"),
    ],
)
def test_bad_root_json_values_exit_2_naming_the_value(tmp_path, change, message):
    package = _tpkx(tmp_path / "v.tpkx", _root_json(**{"lods": LODS, **change}))
    result = _cli("rebuild", package, "--workers", "1")
    assert result.returncode == 2, result.stdout
    assert message in result.stderr and "root.json" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_crossed_full_extent_exits_2(tmp_path):
    root = _root_json(LODS)
    root["fullExtent"] = {"xmin": 5, "ymin": 0, "xmax": 1, "ymax": 1}
    result = _cli("rebuild", _tpkx(tmp_path / "x.tpkx", root), "--workers", "1")
    assert result.returncode == 2 and "fullExtent" in result.stderr


def test_a_crs_nobody_knows_gives_a_store_without_one_and_a_warning(tmp_path):
    """Issue 10: when no CRS can be had, the store is written without one, with a warning
    decided before the scan (not a failed write after it)."""
    import pyogrio

    root = _root_json(LODS, spatialReference={"wkid": 123})
    status = tmp_path / "s.gdb"
    result = _cli("rebuild", _tpkx(tmp_path / "u.tpkx", root), "--status", status)
    assert result.returncode == 0, result.stderr
    assert "not one PROJ knows" in result.stderr and "without a coordinate system" in result.stderr
    assert pyogrio.read_info(str(status), layer="TaskStatus")["crs"] is None


def test_an_unknown_wkid_with_a_wkt_uses_the_wkt(tmp_path):
    from pyproj import CRS

    root = _root_json(LODS, spatialReference={"wkid": 123, "wkt": CRS("EPSG:3857").to_wkt()})
    result = _cli("rebuild", _tpkx(tmp_path / "w.tpkx", root), "--status", tmp_path / "s.gdb")
    assert result.returncode == 0, result.stderr


def test_forty_custom_levels_work(tmp_path):
    lods = [{"level": lv, "scale": 5e8 / 2**lv, "resolution": 1e5 / 2**lv} for lv in range(40)]
    root = _root_json(lods)
    root["fullExtent"] = {"xmin": -1.0, "ymin": -1.0, "xmax": 1.0, "ymax": 1.0}
    sizes = np.zeros((128, 128), dtype=np.uint32)
    sizes[3, 4] = 20
    synthetic_bundle(tmp_path / "b.bundle", sizes)
    package = _tpkx(
        tmp_path / "deep.tpkx",
        root,
        {"tile/L39/R0000C0000.bundle": (tmp_path / "b.bundle").read_bytes()},
    )
    result = _cli("rebuild", package, "--status", tmp_path / "s.gdb", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert sorted(_level_rows(result)) == list(range(40))


def test_a_bundle_member_declaring_absurd_sizes_is_corrupt_not_a_crash(tmp_path):
    sizes = np.zeros((128, 128), dtype=np.uint32)
    sizes[0, 0] = 20
    synthetic_bundle(tmp_path / "b.bundle", sizes)
    package = _tpkx(
        tmp_path / "p.tpkx",
        _root_json(LODS),
        {"tile/L02/R0000C0000.bundle": (tmp_path / "b.bundle").read_bytes()},
    )
    data = bytearray(package.read_bytes())
    # Zero the member's compressed bytes: inflating them fails (zlib.error / BadZipFile).
    with zipfile.ZipFile(package) as z:
        info = z.getinfo("tile/L02/R0000C0000.bundle")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start : start + info.compress_size] = b"\xff" * info.compress_size
    package.write_bytes(bytes(data))
    result = _cli("rebuild", package, "--status", tmp_path / "s.gdb", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "L02/R0000C0000" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_conf_xml_declaring_entities_is_refused(tmp_path):
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE CacheInfo [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
        + "]>"
    )
    text = conf_xml(web_mercator_lods(3)).replace("<?xml version='1.0' encoding='utf-8'?>", "")
    text = laughs + text.replace("<TileCols>256</TileCols>", "<TileCols>&i;</TileCols>")
    cache = tmp_path / "cache"
    (cache / "_alllayers").mkdir(parents=True)
    (cache / "conf.xml").write_text(text)
    result = _cli("rebuild", cache, "--workers", "1")
    assert result.returncode == 2 and "declares the XML entity" in result.stderr


def test_a_tpk_conf_xml_that_inflates_to_gigabytes_is_not_inflated(tmp_path):
    package = tmp_path / "bomb.tpk"
    with (
        zipfile.ZipFile(package, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z,
        z.open("v101/x/conf.xml", "w", force_zip64=True) as f,
    ):
        for _ in range(64):  # 1 GiB, 4.5 MiB compressed
            f.write(b" " * 2**24)
    result = _cli("rebuild", package, "--workers", "1")
    assert result.returncode == 2 and "larger than 16,777,216 bytes" in result.stderr
