"""Single-file caches are found by their content, whatever they are called: every format under
a missing, a foreign or a wrong suffix; the suffix only breaks ties and names the reader of a
damaged file. Detection stays cheap (a few KB) and never blocks on a FIFO."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from cachestatus import formats
from cachestatus.errors import UnsupportedFormat
from cachestatus.formats import base
from tests.builders import zip_tpk
from tests.helpers import mapproxy_v2_cache
from tests.test_blobs_hostile import _cli
from tests.test_compact_v1 import EXTENT

USA = Path(__file__).parent / "data" / "esri" / "Usa.tpkx"
BKG = Path(__file__).parent / "data" / "realworld" / "mbtiles" / "02.mbtile"
SUFFIXES = {
    "mbtiles": ".mbtiles",
    "geopackage": ".gpkg",
    "pmtiles": ".pmtiles",
    "tpkx": ".tpkx",
    "tpk": ".tpk",
}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(24)


def _mbtiles(path: Path) -> Path:
    """MapProxy's MBTiles cache of two tiles."""
    from mapproxy.cache.mbtiles import MBTilesCache
    from mapproxy.cache.tile import Tile
    from mapproxy.image import ImageResult

    cache = MBTilesCache(str(path))
    for coord in [(0, 0, 1), (1, 1, 1)]:
        assert cache.store_tile(Tile(coord, ImageResult(BytesIO(PNG))))
    cache.update_metadata(name="t", format="png")
    cache.cleanup()
    return path


def _geopackage(path: Path, table: str = "tiles") -> Path:
    """MapProxy's GeoPackage cache of two tiles, in a table named ``table``."""
    from mapproxy.cache.geopackage import GeopackageCache
    from mapproxy.cache.tile import Tile
    from mapproxy.grid.tile_grid import tile_grid
    from mapproxy.image import ImageResult

    cache = GeopackageCache(str(path), tile_grid(3857, origin="nw"), table)
    for coord in [(0, 0, 1), (1, 1, 1)]:
        cache.store_tile(Tile(coord, ImageResult(BytesIO(PNG))))
    cache.cleanup()
    return path


def _pmtiles(path: Path) -> Path:
    """An archive of two tiles written by the pmtiles package."""
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import Writer

    with open(path, "wb") as f:
        writer = Writer(f)
        for z, x, y in sorted([(1, 0, 0), (1, 1, 1)], key=lambda t: zxy_to_tileid(*t)):
            writer.write_tile(zxy_to_tileid(z, x, y), PNG)
        writer.finalize(
            {"tile_type": TileType.PNG, "tile_compression": Compression.NONE},
            {"name": "t"},
        )
    return path


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> dict[str, Path]:
    """One cache of each single-file format, under its usual suffix."""
    root = tmp_path_factory.mktemp("formats")
    rng = random.Random(3)
    tiles = {(3, rng.randrange(8), rng.randrange(8)): rng.randbytes(50) for _ in range(10)}
    v1 = mapproxy_v2_cache(root / "v1", tiles, levels=5, extent=EXTENT, version=1)
    found = {
        "mbtiles": _mbtiles(root / "a.mbtiles"),
        "geopackage": _geopackage(root / "a.gpkg"),
        "pmtiles": _pmtiles(root / "a.pmtiles"),
        "tpkx": root / "a.tpkx",
        "tpk": zip_tpk(v1, root / "a.tpk"),
    }
    shutil.copyfile(USA, found["tpkx"])
    return found


@pytest.mark.parametrize("name", sorted(SUFFIXES))
@pytest.mark.parametrize("suffix", ["", ".dat", ".sqlite", ".zip", ".MBTILE", ".bin"])
def test_every_single_file_format_is_found_by_content_under_any_name(
    caches, tmp_path, name, suffix
):
    path = tmp_path / f"cache{suffix}"
    shutil.copyfile(caches[name], path)
    assert formats.detect(path).name == name
    with formats.open_cache(path) as reader:
        assert reader.name == name
        assert reader.scheme.levels
        assert reader.status_dir == tmp_path  # its status beside it, as for its usual name


@pytest.mark.parametrize("name", sorted(SUFFIXES))
def test_a_file_named_like_another_format_is_read_as_its_content_says(
    caches, tmp_path, caplog, name
):
    for other, suffix in SUFFIXES.items():
        if other == name:
            continue
        path = tmp_path / f"{name}-named-{other}{suffix}"
        shutil.copyfile(caches[name], path)
        caplog.clear()
        assert formats.detect(path).name == name, suffix
        assert f"named like {other} ({suffix}) but its content is {name}" in caplog.text


def test_the_cli_reads_a_renamed_file_and_warns(caches, tmp_path):
    path = tmp_path / "world.mbtiles"
    shutil.copyfile(caches["pmtiles"], path)
    result = _cli("info", path, "--json")
    assert result.returncode == 0, result.stderr
    assert '"format": "pmtiles"' in result.stdout
    assert "named like mbtiles (.mbtiles) but its content is pmtiles" in result.stderr


def test_bkg_mbtile_without_metadata_is_found_without_a_hint(tmp_path):
    """02.mbtile (tests/data/realworld/README.md): no metadata rows, a non-unique index on
    tile_column, an extra last_modified column, the suffix .mbtile."""
    path = tmp_path / "02.mbtile"
    shutil.copyfile(BKG, path)
    result = _cli("info", path, "--json")
    assert result.returncode == 0, result.stderr
    assert '"format": "mbtiles"' in result.stdout


def test_a_geopackage_whose_tile_table_is_called_tiles_is_never_mbtiles(tmp_path, caplog):
    """Its rows count down, MBTiles' up: read as MBTiles, every row would be flipped."""
    path = _geopackage(tmp_path / "g.mbtiles", table="tiles")
    assert formats.detect(path).name == "geopackage"
    assert "named like mbtiles" in caplog.text


def test_the_suffix_breaks_a_tie(caches, tmp_path):
    """A zip holding both root.json and conf.xml: its suffix says which package it is."""
    both = tmp_path / "both.bin"
    with zipfile.ZipFile(caches["tpk"]) as src, zipfile.ZipFile(both, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr("root.json", "{}")
    for suffix, name in [(".tpk", "tpk"), (".tpkx", "tpkx"), (".zip", "tpkx")]:
        path = both.with_suffix(suffix)
        shutil.copyfile(both, path)
        assert formats.detect(path).name == name, suffix


@pytest.mark.parametrize(
    ("suffix", "content", "message"),
    [
        ("", b"just some bytes\n" * 100, "it is not a cache file this version reads"),
        (".dat", b"PMTiles\x02" + bytes(200), "a PMTiles archive of version 2"),
        (".sqlite", None, "an SQLite file without tile tables"),
        (".gpkg", "vector", "a GeoPackage without tile tables"),
        (".zip", "zip", "a zip holding no root.json (.tpkx) nor conf.xml (.tpk)"),
    ],
)
def test_a_file_of_no_known_content_says_what_it_is(tmp_path, suffix, content, message):
    path = tmp_path / f"thing{suffix}"
    if content is None or content == "vector":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE things (a)")
            if content == "vector":
                db.execute("PRAGMA application_id = 1196444487")  # GPKG
                db.execute("CREATE TABLE gpkg_contents (table_name, data_type)")
                db.execute("INSERT INTO gpkg_contents VALUES ('things', 'features')")
        db.close()
    elif content == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "hello")
    else:
        path.write_bytes(content)
    with pytest.raises(UnsupportedFormat, match="not a tile cache") as caught:
        formats.detect(path)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        (".mbtiles", "not a readable SQLite file"),
        (".gpkg", "not a readable SQLite file"),
        (".pmtiles", "no 'PMTiles' magic number"),
        (".tpkx", "not a readable zip"),
        (".tpk", "not a readable zip"),
    ],
)
def test_a_damaged_file_is_read_by_its_suffix_and_its_reader_says_why(tmp_path, suffix, message):
    path = tmp_path / f"damaged{suffix}"
    path.write_bytes(b"PK not really anything " * 20)
    result = _cli("info", path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("suffix", "hint"),
    [(suffix, None) for suffix in ["", *SUFFIXES.values()]] + [(".dat", hint) for hint in SUFFIXES],
)
def test_a_fifo_never_hangs_detection_nor_a_single_file_reader(tmp_path, suffix, hint):
    """Nothing writes to the FIFO: a reader that opened it blocking would wait for ever."""
    path = tmp_path / f"fifo{suffix}"
    os.mkfifo(path)
    args = ["info", path] + (["--format-hint", hint] if hint else [])
    result = _cli(*args)  # under a time limit: a hang fails the test
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and str(path) in lines[0]
    if hint:
        assert "special file" in lines[0]


def test_detection_reads_a_few_kilobytes_of_a_large_file(tmp_path, monkeypatch):
    """A 64 MiB file: detection reads its head, and of a zip its end and a bounded part of its
    central directory, never the rest."""
    read: list[int] = []
    original = base.read_exactly

    def counting(fd: int, offset: int, length: int, end: int) -> bytes:
        data = original(fd, offset, length, end)
        read.append(len(data))
        return data

    monkeypatch.setattr(base, "read_exactly", counting)
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(64 << 20)
    with pytest.raises(UnsupportedFormat):
        formats.detect(big)
    assert 0 < sum(read) <= base.HEAD_BYTES
    read.clear()
    archive = tmp_path / "many.zip"  # a central directory far larger than what is read
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(6000):
            z.writestr(f"tile/L{i % 20:02d}/R{i:04x}C0000.bundle", b"")
        z.writestr("root.json", "{}")  # after the part of the directory detection reads
    with pytest.raises(UnsupportedFormat, match="among its first"):
        formats.detect(archive)
    assert sum(read) <= base.HEAD_BYTES + 42 + base.ZIP_NAMES_BYTES
    # Named .tpkx, the suffix decides: its reader finds root.json in the whole directory.
    named = archive.with_suffix(".tpkx")
    shutil.copyfile(archive, named)
    assert formats.detect(named).name == "tpkx"


def test_zip64_archives_are_read_by_their_zip64_end_record(tmp_path, monkeypatch):
    """Packages of more than 65,535 members or 4 GiB carry a ZIP64 end record: its directory
    offset is the one to follow (the classic record holds 0xFFFFFFFF there)."""
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 3)  # a ZIP64 end record for 4 members
    path = tmp_path / "pkg"
    shutil.copyfile(USA, path)
    big = tmp_path / "big.pkg"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(big, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
    raw = big.read_bytes()
    assert b"PK\x06\x06" in raw and b"PK\x06\x07" in raw
    with open(big, "rb") as f:
        names, complete = base.zip_member_names(f.fileno(), len(raw))
    assert "root.json" in names and complete
    assert formats.detect(big).name == "tpkx"


def test_a_zip_with_a_comment_is_read_by_its_end_record(tmp_path):
    """The end record is then not the last 22 bytes: it is looked for in the zip's tail."""
    path = tmp_path / "commented"
    with zipfile.ZipFile(USA) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.comment = b"PK\x05\x06 is not here " * 100
    assert formats.detect(path).name == "tpkx"


def test_detection_in_a_subprocess_under_a_memory_limit(caches, tmp_path):
    """The command line on each format under a foreign name, under the hostile-input limits."""
    for name, source in caches.items():
        path = tmp_path / f"{name}.bin"
        shutil.copyfile(source, path)
        result = _cli("info", path, "--json")
        assert result.returncode == 0, (name, result.stderr)
        assert f'"format": "{name}"' in result.stdout
