"""GeoPackage tiles written by MapProxy: the same stored tiles, bundle by bundle, as a V2 cache."""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from io import BytesIO
from pathlib import Path

import pytest
from click.testing import CliRunner

from cachestatus import formats, operations
from cachestatus.cli import main
from tests.builders import WORLD, write_geopackage
from tests.helpers import WEB_MERCATOR_HALF, mapproxy_v2_cache
from tests.status_rows import stored_tiles


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path, dict]:
    rng = random.Random(8)
    tiles = {}
    for level, row0, col0, span in [(1, 0, 0, 2), (9, 100, 300, 200), (18, 131000, 131300, 300)]:
        for _ in range(60):
            row, col = row0 + rng.randrange(span), col0 + rng.randrange(span)
            tiles[(level, row, col)] = rng.randbytes(rng.randrange(1, 300))
    root = tmp_path_factory.mktemp("gpkg")
    return (
        write_geopackage(root / "tiles.gpkg", tiles),
        mapproxy_v2_cache(root / "v2", tiles, levels=20, extent=WORLD),
        tiles,
    )


def test_geopackage_and_v2_store_the_same_tiles_bundle_by_bundle(pair, tmp_path):
    gpkg, v2, tiles = pair
    with formats.open_cache(gpkg) as reader:
        assert reader.name == "geopackage"
        assert reader.scheme.levels == tuple(range(20))  # every tile matrix, built or not
        assert reader.scheme.spatial_reference.user_input() == "EPSG:3857"
        assert reader.full_extent is not None
        assert reader.full_extent.xmax == pytest.approx(WEB_MERCATOR_HALF)
    a = operations.rebuild(gpkg, tmp_path / "a.gdb", workers=1, sizes=True, max_missing_rows=0)
    b = operations.rebuild(v2, tmp_path / "b.gdb", workers=1, max_missing_rows=0)
    assert stored_tiles(a.status_path) == stored_tiles(b.status_path)

    def counts(report):
        return [
            (
                lv.level,
                lv.bundles,
                lv.tiles_expected,
                lv.tiles_present,
                lv.tiles_stray,
                lv.tile_bytes,
            )
            for lv in report.levels
        ]

    assert counts(a) == counts(b)  # same grid, same full extent: same totals
    assert a.totals.tiles_present == len(tiles)


def test_geopackage_is_left_untouched(pair, tmp_path):
    gpkg, _, _ = pair
    before = (hashlib.sha256(gpkg.read_bytes()).hexdigest(), gpkg.stat().st_mtime_ns)
    operations.rebuild(gpkg, tmp_path / "s.gdb", workers=1, sizes=True, max_missing_rows=0)
    assert (hashlib.sha256(gpkg.read_bytes()).hexdigest(), gpkg.stat().st_mtime_ns) == before


def test_a_status_geopackage_is_not_a_tile_cache(tmp_path, sample):
    report = operations.rebuild(sample, store_format="gpkg", workers=1)
    result = CliRunner().invoke(main, ["info", report.status_path])
    assert result.exit_code == 2 and "not a tile cache" in result.stderr


def test_several_tile_tables_are_refused(pair, tmp_path):
    gpkg, _, _ = pair
    copy = tmp_path / "two.gpkg"
    copy.write_bytes(gpkg.read_bytes())
    with sqlite3.connect(copy) as db:
        db.execute(
            "INSERT INTO gpkg_contents (table_name, data_type, srs_id) "
            "VALUES ('more', 'tiles', 3857)"
        )
        # A row naming a table the file does not hold is left out (MapProxy's test file has
        # one): the second tile table must exist to count.
        db.execute("CREATE TABLE more (zoom_level, tile_column, tile_row, tile_data)")
    result = CliRunner().invoke(main, ["rebuild", str(copy)])
    assert result.exit_code == 2 and "several tile tables (more, tiles)" in result.stderr
    assert "--table" in result.stderr


def test_table_option_chooses_among_tile_tables(pair, tmp_path):
    """Two tile tables written by MapProxy into one file: each read on its own, each with its
    own default status store beside the file."""
    _, _, tiles = pair
    gpkg = tmp_path / "two.gpkg"
    items = sorted(tiles.items())
    write_geopackage(gpkg, dict(items[:50]))
    write_geopackage(gpkg, dict(items[50:]), table="roads")
    counts = {}
    for table in ("tiles", "roads"):
        result = CliRunner().invoke(
            main, ["rebuild", str(gpkg), "--table", table, "--json", "--workers", "1"]
        )
        assert result.exit_code == 0, result.output
        totals = json.loads(result.stdout)["totals"]
        counts[table] = totals["tiles_present"] + totals["tiles_stray"]
        assert (tmp_path / f"two.{table}.Status.gdb").is_dir()
    assert counts == {"tiles": 50, "roads": len(items) - 50}
    result = CliRunner().invoke(main, ["info", str(gpkg), "--table", "rivers"])
    assert result.exit_code == 2
    assert "no tile table 'rivers'; its tile tables: roads, tiles" in result.stderr


def test_table_option_is_refused_for_other_formats(sample):
    result = CliRunner().invoke(main, ["info", str(sample), "--table", "tiles"])
    assert result.exit_code == 2 and "only GeoPackages hold several tile tables" in result.stderr


def test_geographic_geopackage_any_crs(tmp_path):
    """A GeoPackage on an EPSG:4326 grid: origin, resolutions and bundles from its tables."""
    from collections import Counter

    from mapproxy.cache.geopackage import GeopackageCache
    from mapproxy.cache.tile import Tile
    from mapproxy.grid.tile_grid import tile_grid
    from mapproxy.image import ImageResult

    rng = random.Random(3)
    tiles = {}
    for level in (1, 5, 9):
        for _ in range(40):
            row, col = rng.randrange(2**level), rng.randrange(2 ** (level + 1))
            tiles[(level, row, col)] = rng.randbytes(rng.randrange(1, 100))
    mp_grid = tile_grid(4326, origin="nw", name="geodetic")
    cache = GeopackageCache(str(tmp_path / "geo.gpkg"), mp_grid, "tiles")
    for (level, row, col), data in tiles.items():
        cache.store_tile(Tile((col, row, level), ImageResult(BytesIO(data))))
    cache.cleanup()
    with formats.open_cache(tmp_path / "geo.gpkg") as reader:
        scheme = reader.scheme
        assert scheme.spatial_reference.user_input() == "EPSG:4326"
        assert (scheme.origin_x, scheme.origin_y) == pytest.approx((-180.0, 90.0))
        assert scheme.lod(5).resolution == pytest.approx(mp_grid.resolution(5))
    report = operations.rebuild(tmp_path / "geo.gpkg", workers=1, sizes=True, max_missing_rows=0)
    per_level = Counter(level for level, _, _ in tiles)
    for lv in report.levels:
        assert lv.tiles_present + lv.tiles_stray == per_level.get(lv.level, 0), lv.level
    stored = stored_tiles(report.status_path)
    bundles = Counter(f"L{lv:02d}/R{r - r % 128:04x}C{c - c % 128:04x}" for lv, r, c in tiles)
    assert {k: v[0] for k, v in stored.items()} == dict(bundles)
