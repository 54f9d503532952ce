"""MissingAreas is never dropped: exact polygons of scattered missing tiles, a cover beyond.

Each check is against a brute force over tile squares built here (not by the grid module): the
exact polygons equal the union of the missing tiles' squares, a cover holds every missing tile's
centre, the count is exact in both, and ``missing --tiles`` lists exactly the missing tiles.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from pyogrio.raw import read

from cachestatus import operations
from cachestatus.missing_areas import MAX_EXACT_BLOCKS
from tests.helpers import WEB_MERCATOR_HALF, mapproxy_v2_cache, synthetic_bundle, write_conf

H = WEB_MERCATOR_HALF


def _size(level: int) -> float:
    return 2 * H / 2**level


def _squares(level: int, cells: set[tuple[int, int]]) -> np.ndarray:
    """The square of each tile (row, col), from the Web Mercator origin and tile size."""
    rc = np.array(sorted(cells), dtype=np.float64).reshape(-1, 2)
    s = _size(level)
    return shapely.box(
        -H + rc[:, 1] * s, H - (rc[:, 0] + 1) * s, -H + (rc[:, 1] + 1) * s, H - rc[:, 0] * s
    )


def _centres(level: int, cells: set[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    rc = np.array(sorted(cells), dtype=np.float64).reshape(-1, 2)
    s = _size(level)
    return -H + (rc[:, 1] + 0.5) * s, H - (rc[:, 0] + 0.5) * s


def _expected_in(level: int, area: shapely.Geometry) -> set[tuple[int, int]]:
    """Tiles whose square shares interior with ``area``, by brute force over its bounding rows."""
    s = _size(level)
    xmin, ymin, xmax, ymax = area.bounds
    rows = range(int((H - ymax) // s), int((H - ymin) // s) + 1)
    cols = range(int((xmin + H) // s), int((xmax + H) // s) + 1)
    cells = {(r, c) for r in rows for c in cols}
    squares = _squares(level, cells)
    keep = shapely.area(shapely.intersection(squares, area)) > 1e-6 * s * s
    return {cell for cell, k in zip(sorted(cells), keep.tolist(), strict=True) if k}


def _missing_layer(path: str | Path) -> dict[int, tuple[shapely.Geometry, int, int]]:
    """Level -> (geometry, tilesMissing, exact) of a MissingAreas layer (store or --out file)."""
    shapefile = str(path).endswith(".shp")  # its one layer is named after the file
    meta, _, geometry, values = read(str(path), layer=None if shapefile else "MissingAreas")
    names = [n[:10] for n in meta["fields"]]  # a Shapefile cuts tilesMissing to tilesMissi
    col = {n: values[names.index(n[:10])] for n in ("levelID", "tilesMissing", "exact")}
    return {
        int(lv): (shapely.from_wkb(g), int(n), int(e))
        for lv, g, n, e in zip(
            col["levelID"], geometry, col["tilesMissing"], col["exact"], strict=True
        )
    }


def _listed(path: Path) -> set[tuple[int, int, int]]:
    """``z/x/y`` lines as (level, row, col), every line once."""
    lines = path.read_text().splitlines()
    out = {(int(z), int(y), int(x)) for z, x, y in (line.split("/") for line in lines)}
    assert len(out) == len(lines)  # no tile listed twice
    return out


# An area of interest across four bundles of level 9 (bundle borders at rows and cols 128, 256),
# not aligned to tiles; MapProxy stores most of its tiles, leaving scattered holes.
AOI = shapely.Polygon(
    [
        (-H + 90.3 * _size(9), H - 100.2 * _size(9)),
        (-H + 250.6 * _size(9), H - 95.1 * _size(9)),
        (-H + 230.4 * _size(9), H - 240.7 * _size(9)),
        (-H + 110.9 * _size(9), H - 250.2 * _size(9)),
    ]
)


@pytest.fixture(scope="module")
def scattered(tmp_path_factory):
    """A MapProxy cache whose level 9 misses one tile in three of the area, here and there."""
    rng = random.Random(10)
    expected = _expected_in(9, AOI)
    stored = {cell for cell in expected if rng.random() < 0.67}
    stored |= {(5, 7), (300, 300)}  # stored tiles outside the area too
    tiles = {(9, r, c): rng.randbytes(rng.randrange(1, 50)) for r, c in stored}
    root = mapproxy_v2_cache(tmp_path_factory.mktemp("mp") / "cache", tiles, levels=10)
    return root, expected, stored


def test_report_over_scattered_holes_gets_the_exact_missing_tiles(scattered, tmp_path):
    """Oracle: the union of the missing tiles' squares, built here with shapely."""
    root, expected, stored = scattered
    missing = expected - stored
    assert len(missing) > 5000  # thousands of scattered holes: far beyond 256 blocks a bundle
    for fmt in ("gdb", "gpkg"):
        report = operations.report(
            root, tmp_path / fmt, levels=[9], aoi=AOI, store_format=fmt, workers=1
        )
        assert not any("MissingAreas" in w for w in report.warnings)
        assert report.levels[0].tiles_expected - report.levels[0].tiles_present == len(missing)
        geometry, count, exact = _missing_layer(report.status_path)[9]
        truth = shapely.coverage_union_all(_squares(9, missing))
        assert count == len(missing) and exact == 1
        assert geometry.is_valid
        assert geometry.area == pytest.approx(len(missing) * _size(9) ** 2, rel=1e-9)
        # ~0: what the store rounds coordinates to (1e-4 m), far below one tile (6e9 m²)
        assert shapely.symmetric_difference(geometry, truth).area < 1e-3 * _size(9) ** 2


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".shp"])
def test_missing_lists_exactly_the_scattered_tiles(scattered, tmp_path, suffix):
    root, expected, stored = scattered
    missing = expected - stored
    out, listing = tmp_path / f"todo{suffix}", tmp_path / "todo.txt"
    result = operations.missing(root, out, tiles=listing, levels=[9], aoi=AOI, workers=1)
    assert [(a.level, a.tiles_missing, a.exact) for a in result.areas] == [(9, len(missing), True)]
    assert _listed(listing) == {(9, r, c) for r, c in missing}
    geometry, count, exact = _missing_layer(out)[9]
    assert count == len(missing) and exact == 1
    assert geometry.area == pytest.approx(len(missing) * _size(9) ** 2, rel=1e-9)


def _checkerboard_cache(root: Path, rows: int, cols: int, level: int = 10) -> tuple[Path, set]:
    """``rows`` x ``cols`` synthetic bundles of ``level`` (the extent), each missing every other
    tile (no two missing tiles share an edge: the most pieces tiles can be in); the missing
    tiles as (row, col)."""
    size = 128 * _size(level)
    write_conf(root, level + 1, (-H, H - rows * size, -H + cols * size, H))
    r, c = np.indices((128, 128))
    sizes = np.where((r + c) % 2 == 0, 0, 120)
    for br in range(rows):
        for bc in range(cols):
            name = f"R{br * 128:04x}C{bc * 128:04x}.bundle"
            synthetic_bundle(root / f"_alllayers/L{level:02d}" / name, sizes)
    rr, cc = np.nonzero(np.tile(sizes == 0, (rows, cols)))
    return root, set(zip(rr.tolist(), cc.tolist(), strict=True))


def test_a_hundred_thousand_missing_tiles_in_the_most_pieces_are_exact(tmp_path):
    """3 x 4 bundles missing every other tile: 98,304 one-tile pieces, all drawn exactly.
    Oracle: every missing tile's centre inside, every present one's outside, the area."""
    root, missing = _checkerboard_cache(tmp_path / "cache", 3, 4)
    everything = {(r, c) for r in range(384) for c in range(512)}
    report = operations.rebuild(root, workers=1)
    geometry, count, exact = _missing_layer(report.status_path)[10]
    assert count == len(missing) == 98_304 and exact == 1
    assert geometry.area == pytest.approx(len(missing) * _size(10) ** 2, rel=1e-9)
    assert shapely.contains_xy(geometry, *_centres(10, missing)).all()
    assert not shapely.intersects_xy(geometry, *_centres(10, everything - missing)).any()


def test_beyond_what_is_drawn_exactly_a_cover_holds_every_missing_tile(tmp_path):
    """6 x 6 bundles missing every other tile: more pieces than are drawn exactly. The polygon
    is a cover (exact = 0) holding every missing tile's centre; the count and the tile list
    stay exact."""
    from tests.test_old_readers import _old_gdal

    root, missing = _checkerboard_cache(tmp_path / "cache", 6, 6)
    assert len(missing) > MAX_EXACT_BLOCKS > 100_000
    report = operations.rebuild(root, workers=1)
    assert any("level 10" in w and "exact = 0" in w for w in report.warnings)
    layer = _missing_layer(report.status_path)
    geometry, count, exact = layer[10]
    assert count == len(missing) and exact == 0
    assert shapely.contains_xy(geometry, *_centres(10, missing)).all()
    assert layer[9][2] == 1  # a level without files is drawn exactly still
    old_rows, _ = _old_gdal(Path(report.status_path), "MissingAreas")  # Debian's GDAL 3.6
    assert {row["levelID"]: row["exact"] for row in old_rows}["10"] == "0"
    out, listing = tmp_path / "todo.shp", tmp_path / "todo.txt"
    result = operations.missing(root, out, tiles=listing, levels=[10], workers=1)
    assert [(a.tiles_missing, a.exact) for a in result.areas] == [(len(missing), False)]
    assert _listed(listing) == {(10, r, c) for r, c in missing}
    assert _missing_layer(out)[10][1:] == (len(missing), 0)
    assert pyogrio.read_info(str(out))["fields"].tolist()[-1] == "exact"


def test_unreadable_bundles_are_part_of_the_missing_area(tmp_path):
    """A bundle that cannot be read counts its expected tiles missing: the polygon and the tile
    list hold them too, so that area = count x tile area stays true."""
    level, span = 10, 256 * _size(10)
    root = write_conf(tmp_path / "cache", level + 1, (-H, H - span, -H + span, H))
    sizes = np.full((128, 128), 50)
    sizes[3, 4] = 0
    synthetic_bundle(root / "_alllayers/L10/R0000C0000.bundle", sizes)
    (root / "_alllayers/L10/R0000C0080.bundle").write_bytes(b"not a bundle" * 100)
    missing = {(3, 4)} | {(r, c) for r in range(128) for c in range(128, 256)}
    missing |= {(r, c) for r in range(128, 256) for c in range(256)}  # two bundles without file
    listing = tmp_path / "todo.txt"
    result = operations.missing(root, tmp_path / "todo.geojson", tiles=listing, levels=[10])
    (area,) = result.areas
    assert area.tiles_missing == len(missing) and area.exact
    assert area.geometry.area == pytest.approx(len(missing) * _size(10) ** 2, rel=1e-9)
    assert _listed(listing) == {(10, r, c) for r, c in missing}


def test_merged_blocks_cover_the_same_tiles_in_fewer_blocks():
    """What a scan keeps of its bundle files' blocks: the same tiles, as rasterised, in fewer
    blocks (a square of bundles in one)."""
    from cachestatus.missing_areas import merged_blocks

    rng = np.random.default_rng(3)
    square = np.array(
        [(r, r + 128, c, c + 128) for r in range(0, 1280, 128) for c in range(0, 1280, 128)]
    )
    scattered = square[rng.random(len(square)) < 0.6]
    for blocks in (square, scattered):
        merged = merged_blocks(blocks[rng.permutation(len(blocks))])
        before, after = np.zeros((1280, 1280), np.int64), np.zeros((1280, 1280), np.int64)
        for target, parts in ((before, blocks), (after, merged)):
            for r0, r1, c0, c1 in parts:
                target[r0:r1, c0:c1] += 1
        assert np.array_equal(before, after) and after.max() == 1
        assert len(merged) <= len(blocks)
    assert len(merged_blocks(square)) == 1


@pytest.mark.parametrize("part", [1, 3, 8_192])
def test_hole_rows_decode_to_the_missing_tiles_a_part_at_a_time(
    part: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bundles' bit-mask rows of missing tiles, with holes given as blocks among them, decode
    to exactly the tiles the masks and blocks say, however many rows are decoded at a time."""
    from cachestatus import missing_areas
    from cachestatus.missing_areas import HOLE, ROW_BITS, hole_blocks, row_bits

    monkeypatch.setattr(missing_areas, "_DECODED", part)
    rng = np.random.default_rng(part)
    tagged, expected = [], np.zeros((2, 256, 256), dtype=np.int64)
    for level, row0, col0 in [(0, 0, 0), (0, 128, 128), (1, 0, 128), (1, 128, 0)]:
        mask = rng.random((128, 128)) < 0.3
        expected[level, row0 : row0 + 128, col0 : col0 + 128] += mask
        bits = row_bits(mask, row0, col0)
        tagged += [(level, ROW_BITS, *row) for row in bits.tolist()]
        tagged.append((level, HOLE, 250, 252, col0, col0 + 3))  # a block too
        expected[level, 250:252, col0 : col0 + 3] += 1
    levels, blocks = hole_blocks(np.array(tagged, dtype=np.int64))
    found = np.zeros_like(expected)
    for level, (r0, r1, c0, c1) in zip(levels.tolist(), blocks.tolist(), strict=True):
        found[level, r0:r1, c0:c1] += 1
    assert np.array_equal(found, expected)
