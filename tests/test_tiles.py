"""Single tiles and windows of presence (``read_tile``, ``presence``) on real caches, checked
against independent readers: MapProxy's compact cache API on Esri's sample cache, the ``pmtiles``
package, ``sqlite3`` on MBTiles (rows flipped) and GeoPackage tables, and a package's bundles
read whole (``read_tiles``). Damage raises :class:`CorruptBundle`; a rewritten bundle is decoded
again, a burst of reads decodes a bundle once; a cache in moto's S3 reads the same."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from cachestatus import open_cache
from cachestatus.errors import CorruptBundle
from cachestatus.formats import CacheReader
from cachestatus.formats.tile_index import IndexCache
from cachestatus.grid import tms_row
from tests.builders import build
from tests.contract.suite import png
from tests.helpers import SAMPLE_CACHE, copy_sample, mapproxy_v2_cache
from tests.remote import S3Server, make_bucket, upload

DATA = Path(__file__).parent / "data"
REALWORLD = DATA / "realworld"
TPKX = DATA / "esri" / "Usa.tpkx"


def stored_tiles(reader: CacheReader) -> dict[tuple[int, int, int], bytes]:
    """Every tile of every bundle of the cache, read a bundle at a time."""
    return {
        (level, tile.row, tile.col): tile.data
        for level in reader.scheme.levels
        for bundle in reader.list_bundles(level)
        if hasattr(bundle, "key")
        for tile in reader.read_tiles(bundle)
    }


def table_rows(path: Path, table: str) -> list[tuple[int, int, int, bytes]]:
    """``(zoom_level, tile_column, tile_row, tile_data)`` of every row of an SQLite tile table,
    read with ``sqlite3``."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        sql = f"SELECT zoom_level, tile_column, tile_row, tile_data FROM {table}"
        return db.execute(sql).fetchall()


def presence_of(tiles: dict[tuple[int, int, int], bytes], level: int, window) -> np.ndarray:
    """Where ``tiles`` are in a window (row, col, height, width) of ``level``."""
    row, col, height, width = window
    found = np.zeros((height, width), dtype=bool)
    for lv, r, c in tiles:
        if lv == level and row <= r < row + height and col <= c < col + width:
            found[r - row, c - col] = True
    return found


def test_esri_sample_tiles_are_what_mapproxy_reads():
    from mapproxy.cache.compact import CompactCacheV2
    from mapproxy.cache.tile import Tile

    mapproxy = CompactCacheV2(str(SAMPLE_CACHE / "_alllayers"))
    found = 0
    with open_cache(SAMPLE_CACHE) as reader:
        for level in (0, 1, 2, 3):
            side = 1 << (level + 1)
            for row in range(side):
                for col in range(side):
                    tile = Tile((col, row, level))
                    expected = (
                        tile.image_result_buffer().read() if mapproxy.load_tile(tile) else None
                    )
                    found += expected is not None
                    assert reader.read_tile(level, row, col) == expected, (level, row, col)
            window = reader.presence(level, -1, -1, side, side)
            assert int(window.sum()) == sum(
                mapproxy.is_cached(Tile((c, r, level))) for r in range(side) for c in range(side)
            )
    assert found > 20


def test_pmtiles_tiles_are_what_the_pmtiles_package_reads():
    from pmtiles.reader import MmapSource, Reader, all_tiles

    path = REALWORLD / "pmtiles" / "leaf.pmtiles"
    with path.open("rb") as f, open_cache(path) as reader:
        source = MmapSource(f)
        expected = {(z, y, x): data for (z, x, y), data in all_tiles(source)}
        assert len(expected) == 5
        package = Reader(source)
        for z in reader.scheme.levels[:4]:
            side = 1 << z
            for y in range(side):
                for x in range(side):
                    assert reader.read_tile(z, y, x) == package.get(z, x, y)
            window = (-1, -1, side + 2, side + 2)
            assert np.array_equal(reader.presence(z, *window), presence_of(expected, z, window))


def test_a_brotli_pmtiles_tile_is_read_as_stored():
    # The oracle: the README's reading of the archive (one z0 tile of 18,338 stored bytes).
    with open_cache(REALWORLD / "pmtiles" / "single_tile_brotli.pmtiles") as reader:
        stored = reader.read_tile(0, 0, 0)
        (tile,) = stored_tiles(reader).values()
    assert stored is not None and len(stored) == 18_338
    assert stored != tile  # read_tiles gives the body decompressed, read_tile as stored


def test_mbtiles_tiles_are_the_table_rows_with_rows_flipped():
    path = REALWORLD / "mbtiles" / "02.mbtile"
    expected = {(z, tms_row(z, y), x): data for z, x, y, data in table_rows(path, "tiles")}
    assert len(expected) == 16
    with open_cache(path, format_hint="mbtiles") as reader:
        for z in reader.scheme.levels:
            side = 1 << z
            for y in range(-1, side + 1):
                for x in range(-1, side + 1):
                    assert reader.read_tile(z, y, x) == expected.get((z, y, x))
            for window in [(0, 0, side, side), (1, -2, 2, 3), (-1, 2, side + 2, side)]:
                assert np.array_equal(reader.presence(z, *window), presence_of(expected, z, window))


def test_geopackage_tiles_are_the_table_rows():
    path = REALWORLD / "gpkg" / "denver_tile.gpkg"
    expected = {(z, y, x): data for z, x, y, data in table_rows(path, "denver")}
    with open_cache(path) as reader:
        for (z, y, x), data in expected.items():
            assert reader.read_tile(z, y, x) == data
            assert reader.read_tile(z, y, x + 10) is None
        (z,) = {key[0] for key in expected}
        rows_ = [key[1] for key in expected]
        cols = [key[2] for key in expected]
        window = (min(rows_) - 3, min(cols) - 3, max(rows_) - min(rows_) + 6, 130)
        assert np.array_equal(reader.presence(z, *window), presence_of(expected, z, window))


@pytest.fixture(scope="module")
def tpkx_by_mapproxy(tmp_path_factory) -> dict[tuple[int, int, int], bytes]:
    """The tiles of the package's bundles as MapProxy's Compact V2 cache reads them, from the
    bundles extracted with zipfile."""
    from mapproxy.cache.compact import CompactCacheV2
    from mapproxy.cache.tile import Tile

    root = tmp_path_factory.mktemp("tpkx")
    with zipfile.ZipFile(TPKX) as package:
        package.extractall(root, [n for n in package.namelist() if n.startswith("tile/")])
    mapproxy = CompactCacheV2(str(root / "tile"))
    found = {}
    for bundle in sorted((root / "tile").glob("L*/R*C*.bundle")):
        level = int(bundle.parent.name[1:])
        row0, col0 = (int(part, 16) for part in bundle.stem[1:].split("C"))
        for row in range(row0, row0 + 128):
            for col in range(col0, col0 + 128):
                tile = Tile((col, row, level))
                if mapproxy.load_tile(tile):
                    found[(level, row, col)] = tile.image_result_buffer().read()
    return found


@pytest.mark.parametrize("package", [TPKX, "deflated"])
def test_package_tiles_are_what_mapproxy_reads_of_its_bundles(package, tpkx_by_mapproxy, tmp_path):
    path = TPKX
    if package == "deflated":  # members compressed: read through zipfile, not the package
        path = tmp_path / "deflated.tpkx"
        with zipfile.ZipFile(TPKX) as source, zipfile.ZipFile(path, "w") as target:
            for info in source.infolist():
                target.writestr(info.filename, source.read(info), zipfile.ZIP_DEFLATED)
    expected = tpkx_by_mapproxy
    assert len(expected) > 100
    with open_cache(path) as reader:
        for key, data in expected.items():
            assert reader.read_tile(*key) == data, key
        for level in reader.scheme.levels[:6]:
            for row, col in [(0, 1), (15, 15), (2, 20), (127, 127), (128, 0)]:
                if (level, row, col) not in expected:
                    assert reader.read_tile(level, row, col) is None
            for window in [(-2, -2, 20, 20), (3, 1, 130, 9)]:
                assert np.array_equal(
                    reader.presence(level, *window), presence_of(expected, level, window)
                )


def test_extracted_package_tile_is_the_bundles_tile():
    path = REALWORLD / "tpkx-extracted" / "Sample_of_extracted_TPKX _file"
    with open_cache(path) as reader:
        expected = stored_tiles(reader)
        assert len(expected) == 1
        assert {key: reader.read_tile(*key) for key in expected} == expected
        assert reader.read_tile(0, 0, 1) is None


def _truncated(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(1000)


@pytest.mark.parametrize("kind", ["compact-v2", "compact-v1", "tpkx"])
def test_a_corrupt_bundle_raises_corrupt_bundle(kind, tmp_path):
    tiles = {(3, 1, 2): png("a"), (3, 5, 6): png("b")}
    built = build(kind, tmp_path / "built", tiles, levels=5).path
    if kind == "tpkx":  # the bundle member's bytes cut short inside the package
        damaged = tmp_path / "damaged.tpkx"
        with zipfile.ZipFile(built) as source, zipfile.ZipFile(damaged, "w") as target:
            for info in source.infolist():
                data = source.read(info)
                target.writestr(info, data[:1000] if info.filename.endswith(".bundle") else data)
        built = damaged
    else:
        for bundle in built.rglob("*.bundlx" if kind == "compact-v1" else "*.bundle"):
            _truncated(bundle)
    with open_cache(built) as reader:
        with pytest.raises(CorruptBundle):
            reader.read_tile(3, 1, 2)
        with pytest.raises(CorruptBundle):
            reader.presence(3, 0, 0, 8, 8)
        assert reader.read_tile(4, 1, 2) is None  # no bundle there: nothing to decode


def test_a_v2_tile_pointing_into_the_header_raises_corrupt_bundle(tmp_path):
    tiles = {(3, 1, 2): png("a"), (3, 1, 3): png("b")}
    cache = mapproxy_v2_cache(tmp_path / "cache", tiles, levels=5)
    bundle = cache / "_alllayers" / "L03" / "R0000C0000.bundle"
    with bundle.open("r+b") as f:  # the entry of R1/C2: offset 8, its size kept
        f.seek(64 + 8 * (128 * 1 + 2))
        entry = int.from_bytes(f.read(8), "little")
        f.seek(64 + 8 * (128 * 1 + 2))
        f.write((entry >> 40 << 40 | 8).to_bytes(8, "little"))
    with open_cache(cache) as reader:
        with pytest.raises(CorruptBundle, match="L3/R1/C2: its offset lies inside"):
            reader.read_tile(3, 1, 2)
        assert reader.read_tile(3, 1, 3) == tiles[(3, 1, 3)]
        assert reader.presence(3, 1, 2, 1, 2).tolist() == [[True, True]]


def test_the_generic_reads_from_listings_equal_the_direct_lookups():
    # CacheReader's own read_tile and presence: the bundle found in the level's listing, its
    # tiles among read_tiles; MBTiles and folder readers answer with their own lookups.
    path = REALWORLD / "mbtiles" / "02.mbtile"
    with open_cache(path, format_hint="mbtiles") as reader:
        for row in range(-1, 5):
            for col in range(-1, 5):
                assert CacheReader.read_tile(reader, 2, row, col) == reader.read_tile(2, row, col)
        window = (-1, 1, 6, 3)
        assert np.array_equal(CacheReader.presence(reader, 2, *window), reader.presence(2, *window))


def test_a_pmtiles_with_a_broken_root_directory_raises_corrupt_bundle(tmp_path):
    path = build("pmtiles", tmp_path / "built", {(3, 1, 2): png("a")}, levels=5).path
    data = bytearray(path.read_bytes())
    root, length = (int.from_bytes(data[at : at + 8], "little") for at in (8, 16))
    data[root : root + length] = b"\xff" * length  # not a directory, in any compression
    path.write_bytes(bytes(data))
    with open_cache(path) as reader:
        with pytest.raises(CorruptBundle, match="root directory"):
            reader.read_tile(3, 1, 2)
        with pytest.raises(CorruptBundle, match="root directory"):
            reader.presence(3, 0, 0, 4, 4)


def test_a_damaged_tile_row_in_sqlite_raises_corrupt_bundle(tmp_path):
    path = tmp_path / "t.mbtiles"
    shutil.copy(REALWORLD / "mbtiles" / "02.mbtile", path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE tiles SET tile_data = 'text' WHERE tile_column = 1 AND tile_row = 1")
    with open_cache(path, format_hint="mbtiles") as reader:
        with pytest.raises(CorruptBundle, match="not a blob"):
            reader.read_tile(2, tms_row(2, 1), 1)
        assert reader.read_tile(2, 0, 0)


def test_a_rewritten_bundle_is_decoded_again(tmp_path):
    cache = copy_sample(tmp_path / "sample")
    with open_cache(cache) as reader:
        before = reader.read_tile(1, 0, 0)
        assert before is not None and reader.presence(1, 0, 0, 4, 4).sum() == 4
        bundle = cache / "_alllayers" / "L01" / "R0000C0000.bundle"
        shutil.copy(cache / "_alllayers" / "L02" / "R0000C0000.bundle", bundle)
        os.utime(bundle, ns=(1, 1))  # another time: the copy may land in the same tick
        with open_cache(cache) as fresh:
            level_2 = fresh.read_tile(2, 0, 0)
            level_2_presence = fresh.presence(2, 0, 0, 4, 4)
        assert reader.read_tile(1, 0, 0) == level_2 != before
        assert np.array_equal(reader.presence(1, 0, 0, 4, 4), level_2_presence)


def test_a_tile_file_added_to_a_folder_is_read_once_the_folder_changes(tmp_path):
    tiles = {(3, 1, 2): png("a")}
    cache = build("xyz", tmp_path / "xyz", tiles, levels=5).path
    with open_cache(cache) as reader:
        assert reader.read_tile(3, 2, 2) is None
        column = cache / "3" / "2"
        (column / "2.png").write_bytes(png("b"))
        later = column.stat().st_mtime_ns + 10**9  # a later write, past the clock's tick
        os.utime(column, ns=(later, later))
        assert reader.read_tile(3, 2, 2) == png("b")
        assert reader.presence(3, 0, 2, 4, 1).ravel().tolist() == [False, True, True, False]


def test_a_burst_of_reads_decodes_each_bundle_once(tmp_path, monkeypatch):
    tiles = {(3, row, col): png(f"{row}/{col}") for row in range(8) for col in range(8)}
    cache = mapproxy_v2_cache(tmp_path / "cache", tiles, levels=5)
    with open_cache(cache) as reader:
        decoded: list[object] = []
        tile_index = reader.tile_index

        def counted(bundle):
            decoded.append(bundle.key)
            return tile_index(bundle)

        monkeypatch.setattr(reader, "tile_index", counted)
        keys = list(tiles) * 8
        with ThreadPoolExecutor(16) as pool:
            read = list(pool.map(lambda key: reader.read_tile(*key), keys))
        assert read == [tiles[key] for key in keys]
        assert len(decoded) == 1


def test_the_index_cache_makes_a_value_once_and_forgets_the_oldest():
    cache: IndexCache[int, int] = IndexCache(size=2)
    made: list[int] = []
    gate = threading.Barrier(8)

    def make(key: int) -> int:
        made.append(key)
        return key * 10

    def ask(key: int) -> int:
        gate.wait()
        return cache.get(key, lambda: make(key))

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, [1] * 8)) == [10] * 8
    assert made == [1]
    cache.get(2, lambda: make(2))
    cache.get(3, lambda: make(3))  # 1 is the oldest: forgotten
    assert cache.get(1, lambda: make(1)) == 10 and made == [1, 2, 3, 1]

    def failing() -> int:
        raise CorruptBundle("broken")

    with pytest.raises(CorruptBundle):
        cache.get(4, failing)
    assert cache.get(4, lambda: make(4)) == 40  # a failure is not kept


@pytest.fixture(scope="module")
def bucket(s3: S3Server) -> str:
    return make_bucket(s3, "tile-reads")


@pytest.fixture
def remote_tiles() -> Iterator[dict[tuple[int, int, int], bytes]]:
    keys = [(3, 1, 2), (3, 5, 6), (8, 0, 0), (8, 3, 130), (8, 129, 7), (8, 127, 127)]
    yield {key: png("L{}/R{}/C{}".format(*key)) for key in keys}


@pytest.mark.parametrize("kind", ["compact-v2", "compact-v1", "exploded", "xyz", "tpkx", "pmtiles"])
def test_a_cache_in_s3_reads_as_on_disk(kind, s3_env, bucket, in_tmp, remote_tiles):
    local = build(kind, in_tmp / "built", remote_tiles, levels=10).path
    if local.is_file():  # a package, an archive: one object read by ranges
        s3_env.client().put_object(Bucket=bucket, Key=local.name, Body=local.read_bytes())
        url = f"s3://{bucket}/{local.name}"
    else:
        url = upload(s3_env, local, bucket, kind if kind == "xyz" else f"{kind}/Layers")
    with open_cache(url) as reader, ThreadPoolExecutor(16) as pool:
        assert reader.location is not None
        keys = [*remote_tiles, (8, 1, 1), (8, 200, 200), (3, -1, 0)]
        read = list(pool.map(lambda key: reader.read_tile(*key), keys * 3))
        assert read == [remote_tiles.get(key) for key in keys * 3]
        window = (120, 0, 16, 140)
        assert np.array_equal(reader.presence(8, *window), presence_of(remote_tiles, 8, window))
