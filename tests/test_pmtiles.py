"""PMTiles archives written by the pmtiles package: tile IDs, runs, leaf directories, bundles."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest
import shapely
from click.testing import CliRunner

from cachestatus import formats, operations
from cachestatus.cli import main
from cachestatus.formats.pmtiles import (
    FEW_POSITIONS,
    PMTilesCache,
    decode_header,
    first_tile_id,
    hilbert_xy,
    tile_zxy,
)
from tests.builders import PMTILES_LEAF_TILES, WORLD, write_pmtiles
from tests.helpers import WEB_MERCATOR_HALF, mapproxy_v2_cache
from tests.status_rows import stored_tiles

pytest.importorskip("pmtiles.writer")
from pmtiles.tile import zxy_to_tileid


@pytest.fixture(scope="module")
def tiles() -> dict:
    rng = random.Random(21)
    out: dict[tuple[int, int, int], bytes] = {}
    for level, row0, col0, span in [(0, 0, 0, 1), (6, 10, 20, 40), (12, 1000, 2000, 300)]:
        for _ in range(80):
            row, col = row0 + rng.randrange(span), col0 + rng.randrange(span)
            out[(level, row, col)] = rng.randbytes(rng.randrange(1, 200))
    # A block of identical tiles: the writer stores them as runs of one body.
    for row in range(3000, 3004):
        for col in range(4000, 4016):
            out[(13, row, col)] = b"ocean"
    return out


def test_tile_ids_decode_like_the_pmtiles_package():
    rng = random.Random(4)
    cases = [(z, rng.randrange(2**z), rng.randrange(2**z)) for z in range(25) for _ in range(30)]
    z, x, y = tile_zxy(np.array([zxy_to_tileid(*c) for c in cases], dtype=np.int64))
    assert list(zip(z.tolist(), x.tolist(), y.tolist(), strict=True)) == cases


@pytest.mark.parametrize("count", [1, 2, FEW_POSITIONS, FEW_POSITIONS + 1, 500])
def test_hilbert_positions_decode_like_the_pmtiles_package(count):
    """A few positions take Python ints, many take arrays: both as the package decodes them."""
    rng = random.Random(count)
    for zoom in (0, 1, 7, 14, 25):
        cases = [(rng.randrange(2**zoom), rng.randrange(2**zoom)) for _ in range(count)]
        ids = np.array([zxy_to_tileid(zoom, x, y) for x, y in cases], dtype=np.int64)
        x, y = hilbert_xy(zoom, ids - first_tile_id(zoom))
        assert x.dtype == y.dtype == np.int64 and x.shape == y.shape == (count,)
        assert list(zip(x.tolist(), y.tolist(), strict=True)) == cases


def test_archive_matches_a_v2_cache_of_the_same_tiles(tiles, tmp_path):
    archive = write_pmtiles(tmp_path / "t.pmtiles", tiles)
    with formats.open_cache(archive) as reader:
        assert reader.name == "pmtiles"
        assert reader.scheme.levels == tuple(range(0, 14))
    v2 = mapproxy_v2_cache(tmp_path / "v2", tiles, levels=14, extent=WORLD)
    a = operations.rebuild(archive, tmp_path / "a.gdb", workers=1, max_missing_rows=0)
    b = operations.rebuild(v2, tmp_path / "b.gdb", workers=1, max_missing_rows=0)
    assert stored_tiles(a.status_path) == stored_tiles(b.status_path)
    assert a.totals.tiles_present == len(tiles)
    assert a.status_path == str(tmp_path / "a.gdb")


def test_leaf_directories_are_followed(tmp_path):
    rng = random.Random(2)
    many: dict[tuple[int, int, int], bytes] = {}
    while len(many) < PMTILES_LEAF_TILES:
        many[(14, rng.randrange(2**14), rng.randrange(2**14))] = rng.randbytes(8)
    archive = write_pmtiles(tmp_path / "many.pmtiles", many)
    with open(archive, "rb") as f:
        header = f.read(127)
    assert struct.unpack_from("<Q", header, 48)[0] > 0  # the archive has leaf directories
    assert decode_header(header).max_zoom == 14
    report = operations.rebuild(archive, tmp_path / "m.gdb", workers=1, max_missing_rows=0)
    assert report.levels[-1].tiles_present == PMTILES_LEAF_TILES
    assert report.levels[-1].tile_bytes == 8 * PMTILES_LEAF_TILES
    # Mostly empty bundles: their missing area is their expected tiles less those present.
    from pyogrio.raw import read

    _, _, geometry, values = read(report.status_path, layer="MissingAreas")
    areas = dict(zip(values[0].tolist(), geometry, strict=True))
    tile = 2 * WEB_MERCATOR_HALF / 2**14
    assert shapely.from_wkb(areas[14]).area == pytest.approx(
        (4**14 - PMTILES_LEAF_TILES) * tile**2, rel=1e-9
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not an archive" * 20, "no 'PMTiles' magic number"),
        (b"PMTiles\x02" + bytes(200), "PMTiles version 2"),
    ],
)
def test_bad_archives_exit_2(tmp_path, content, message):
    path = tmp_path / "bad.pmtiles"
    path.write_bytes(content)
    result = CliRunner().invoke(main, ["rebuild", str(path)])
    assert result.exit_code == 2 and message in result.stderr


def test_leaf_directories_that_loop_are_refused_not_followed_forever(tmp_path):
    """A leaf entry pointing back at the root directory: refused, exit 2, no hang."""
    from pmtiles.tile import Entry, serialize_directory

    length = 10
    for _ in range(5):  # the root holds its own length: settle it
        root = serialize_directory([Entry(0, 0, length, 0)])  # id, offset, length, run 0
        length = len(root)
    header = bytearray(b"PMTiles\x03" + bytes(127 - 8))
    struct.pack_into("<QQ", header, 8, 127, len(root))  # root directory
    struct.pack_into("<QQ", header, 40, 127, len(root))  # leaf directories: the same bytes
    struct.pack_into("<QQ", header, 56, 127 + len(root), 0)
    header[97], header[99], header[100], header[101] = 2, 2, 0, 3
    path = tmp_path / "loop.pmtiles"
    path.write_bytes(bytes(header) + root)
    result = CliRunner().invoke(main, ["rebuild", str(path), "--workers", "1"])
    assert result.exit_code == 2 and "leaf directories form a loop" in result.stderr


def test_tile_reads_look_up_only_the_directories_on_the_way(tmp_path, monkeypatch):
    """``read_tile`` and ``presence`` of an archive with leaf directories read the root and
    the leaves their tiles fall in, never every directory; what they find is what the pmtiles
    package's reader finds."""
    from pmtiles.reader import MmapSource, Reader

    rng = random.Random(5)
    many: dict[tuple[int, int, int], bytes] = {}
    while len(many) < 30000:
        many[(14, rng.randrange(2**14), rng.randrange(2**14))] = rng.randbytes(8)
    archive = write_pmtiles(tmp_path / "many.pmtiles", many)

    def every_directory(self):
        raise AssertionError("every directory read for one tile")

    monkeypatch.setattr(PMTilesCache, "_load", every_directory)
    with open(archive, "rb") as f, formats.open_cache(archive) as reader:
        theirs = Reader(MmapSource(f))
        read = []
        original = PMTilesCache._decoded_directory

        def counted(self, offset, length):
            read.append(offset)
            return original(self, offset, length)

        monkeypatch.setattr(PMTilesCache, "_decoded_directory", counted)
        (z, row, col), data = next(iter(many.items()))
        assert reader.read_tile(z, row, col) == data == theirs.get(z, col, row)
        assert len(read) == 2  # the root and one leaf
        for (z, row, col), data in list(many.items())[::997]:
            assert reader.read_tile(z, row, col) == theirs.get(z, col, row) == data
        for row, col in [(rng.randrange(2**14), rng.randrange(2**14)) for _ in range(20)]:
            if (14, row, col) not in many:
                assert reader.read_tile(14, row, col) is None
                assert theirs.get(14, col, row) is None
        top, left = next(iter(many))[1:]
        window = reader.presence(14, top - 100, left - 100, 256, 256)
        expected = np.zeros((256, 256), dtype=bool)
        for _, r, c in many:  # what the writer was given
            if 0 <= r - top + 100 < 256 and 0 <= c - left + 100 < 256:
                expected[r - top + 100, c - left + 100] = True
        assert (window == expected).all() and window.any()
