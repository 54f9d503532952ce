"""Benchmark: MBTiles, GeoPackage and tile folders against the bare tools listing the same tiles.

Tile sizes are not read (no ``--sizes``), as neither floor reads them.

- MBTiles and GeoPackage: a whole ``cachestatus rebuild`` against the ``sqlite3`` command line
  running ``SELECT zoom_level, tile_column, tile_row FROM tiles`` on the same file (bar: <= 1.5).
- XYZ folder and ArcGIS exploded cache: a whole ``cachestatus rebuild`` against
  ``find DIR -type f | wc -l`` on the same tree (bar: <= 1.5).
- Compact V1: bytes of the ``.bundle`` files read per present tile while every bundle of a
  synthetic V1 cache is read, as the kernel counts them (``/proc/self/io``; bar: <= 4).

The caches hold the same synthetic tiles (small bodies) over a few levels, built once.

    python benchmarks/bench_formats.py [--tiles 200000[,2000000]] [--repeat 5]

With two sizes it also prints the per-tile ratios: the extra time from the smaller cache to the
larger one, ours against the floor's (the fixed cost of a Python process that imports GDAL and
writes a geodatabase, about 0.4 s here, left out).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.timing import alternate, compare_trees, compile_package, median, runs


def tile_set(count: int) -> list[tuple[int, int, int]]:
    """(zoom, x, y) of ``count`` tiles: full blocks at zooms 14-16 around one place."""
    out: list[tuple[int, int, int]] = []
    zoom = 14
    while len(out) < count:
        side = 2 ** (zoom - 6)  # a square of tiles per zoom
        x0, y0 = 2 ** (zoom - 1), 2 ** (zoom - 1)
        for i in range(min(side * side, count - len(out))):
            out.append((zoom, x0 + i % side, y0 + i // side))
        zoom += 1
    return out


def build_mbtiles(path: Path, tiles: list[tuple[int, int, int]]) -> None:
    if path.exists():
        return
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE tiles (zoom_level integer, tile_column integer, "
            "tile_row integer, tile_data blob)"
        )
        db.execute("CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)")
        db.execute("CREATE TABLE metadata (name text, value text)")
        # The data's bounds, as MBTiles writers record them (WGS 84).
        # Fractions of the world (0..1) covered by the tiles of every zoom.
        left = min(x / 2**z for z, x, _ in tiles)
        right = max((x + 1) / 2**z for z, x, _ in tiles)
        top = min(y / 2**z for z, _, y in tiles)
        bottom = max((y + 1) / 2**z for z, _, y in tiles)
        west, east = left * 360 - 180, right * 360 - 180
        north = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * top))))
        south = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * bottom))))
        db.execute("INSERT INTO metadata VALUES ('bounds', ?)", (f"{west},{south},{east},{north}",))
        db.executemany(
            "INSERT INTO tiles VALUES (?, ?, ?, ?)",
            ((z, x, (1 << z) - 1 - y, b"tile" * 50) for z, x, y in tiles),
        )


def build_geopackage(path: Path, tiles: list[tuple[int, int, int]]) -> None:
    """The same tiles in a GeoPackage tile table (rows counted down), as the spec lays it out."""
    if path.exists():
        return
    half = 20037508.342789244
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT, srs_id INTEGER PRIMARY KEY,
                organization TEXT, organization_coordsys_id INTEGER, definition TEXT,
                description TEXT);
            CREATE TABLE gpkg_contents (table_name TEXT PRIMARY KEY, data_type TEXT,
                identifier TEXT, description TEXT, last_change TEXT, min_x REAL, min_y REAL,
                max_x REAL, max_y REAL, srs_id INTEGER);
            CREATE TABLE gpkg_tile_matrix_set (table_name TEXT PRIMARY KEY, srs_id INTEGER,
                min_x REAL, min_y REAL, max_x REAL, max_y REAL);
            CREATE TABLE gpkg_tile_matrix (table_name TEXT, zoom_level INTEGER,
                matrix_width INTEGER, matrix_height INTEGER, tile_width INTEGER,
                tile_height INTEGER, pixel_x_size REAL, pixel_y_size REAL,
                PRIMARY KEY (table_name, zoom_level));
            CREATE TABLE tiles (id INTEGER PRIMARY KEY AUTOINCREMENT, zoom_level INTEGER,
                tile_column INTEGER, tile_row INTEGER, tile_data BLOB,
                UNIQUE (zoom_level, tile_column, tile_row));
            """
        )
        db.execute(
            "INSERT INTO gpkg_spatial_ref_sys VALUES ('Web Mercator', 3857, 'EPSG', 3857, "
            "'undefined', '')"
        )
        # The data's bounds, as GDAL records them: fractions of the world covered at every zoom.
        left = min(x / 2**z for z, x, _ in tiles)
        right = max((x + 1) / 2**z for z, x, _ in tiles)
        top = min(y / 2**z for z, _, y in tiles)
        bottom = max((y + 1) / 2**z for z, _, y in tiles)
        db.execute(
            "INSERT INTO gpkg_contents VALUES "
            "('tiles', 'tiles', 'tiles', '', '', ?, ?, ?, ?, 3857)",
            (
                -half + 2 * half * left,
                half - 2 * half * bottom,
                -half + 2 * half * right,
                half - 2 * half * top,
            ),
        )
        db.execute(
            "INSERT INTO gpkg_tile_matrix_set VALUES ('tiles', 3857, ?, ?, ?, ?)",
            (-half, -half, half, half),
        )
        db.executemany(
            "INSERT INTO gpkg_tile_matrix VALUES ('tiles', ?, ?, ?, 256, 256, ?, ?)",
            [(z, 2**z, 2**z, 2 * half / 256 / 2**z, 2 * half / 256 / 2**z) for z in range(19)],
        )
        db.executemany(
            "INSERT INTO tiles (zoom_level, tile_column, tile_row, tile_data) VALUES (?, ?, ?, ?)",
            ((z, x, y, b"tile" * 50) for z, x, y in tiles),
        )


def build_folder(root: Path, tiles: list[tuple[int, int, int]]) -> None:
    if root.exists():
        return
    for z, x, y in tiles:
        folder = root / str(z) / str(x)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{y}.png").write_bytes(b"tile" * 50)


def build_exploded(root: Path, tiles: list[tuple[int, int, int]]) -> None:
    """The same tiles as an ArcGIS exploded cache: ``_alllayers/Lzz/Rrrrrrrrr/Ccccccccc.png``."""
    from tests.helpers import write_conf

    if (root / "conf.xml").exists():
        return
    write_conf(root, 20, storage="esriMapCacheStorageModeExploded")
    for z, x, y in tiles:
        folder = root / "_alllayers" / f"L{z:02d}" / f"R{y:08x}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"C{x:08x}.png").write_bytes(b"tile" * 50)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--tiles",
        default="200000",
        help="tiles per cache; two sizes (200000,2000000) also give the per-tile ratios",
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="the src folder of another cachestatus tree to time against this one",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cachestatus-bench"
    )
    args = parser.parse_args()
    compile_package()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    sqlite = shutil.which("sqlite3")
    if sqlite is None:
        print("sqlite3 command line not found: apt-get install sqlite3")
        return 1
    sizes = [int(n) for n in str(args.tiles).split(",")]
    medians = [run_size(work, n, args.repeat, sqlite, args.baseline) for n in sizes]
    if len(sizes) == 2:
        # The extra time from the smaller cache to the larger one: the cost per tile, without
        # the fixed cost of starting a Python process, importing GDAL and writing the store.
        for i, name in enumerate(("MBTiles", "GeoPackage", "XYZ folder", "exploded")):
            (floor_a, ours_a), (floor_b, ours_b) = medians[0][i], medians[1][i]
            extra = (ours_b - ours_a) / (floor_b - floor_a)
            print(f"per-tile ratio {name:<10} {extra:.2f}   ({sizes[0]:,} -> {sizes[1]:,} tiles)")
    v1_bytes_per_tile(work)
    return 0


def tagged(rebuild: list[str]) -> Callable[[str], list[str]]:
    """A rebuild command whose status store (its last argument) is named after a tag."""
    return lambda tag: [*rebuild[:-1], rebuild[-1].replace(".gdb", f"-{tag}.gdb")]


def run_size(
    work: Path, count: int, repeat: int, sqlite: str, baseline: Path | None = None
) -> list[tuple[float, float]]:
    """Both comparisons on caches of ``count`` tiles: (floor, rebuild) medians of each; with
    ``baseline``, each rebuild also timed against that source tree's."""
    tiles = tile_set(count)
    mbtiles = work / f"formats-{count}.mbtiles"
    folder = work / f"formats-{count}-xyz"
    geopackage = work / f"formats-{count}.gpkg"
    build_mbtiles(mbtiles, tiles)
    build_geopackage(geopackage, tiles)
    build_folder(folder, tiles)
    exploded = work / f"formats-{count}-exploded"
    build_exploded(exploded, tiles)
    cli = [sys.executable, "-m", "cachestatus.cli", "-q", "rebuild"]
    print(f"tiles                   {len(tiles):,} at zooms {tiles[0][0]}-{tiles[-1][0]}")
    found = []
    for name, path in (("MBTiles", mbtiles), ("GeoPackage", geopackage)):
        floor = [sqlite, str(path), "SELECT zoom_level, tile_column, tile_row FROM tiles"]
        ours = [*cli, str(path), "--status", str(work / f"formats-{path.suffix[1:]}.gdb")]
        a, b = alternate(floor, ours, repeat)
        print(f"sqlite3 SELECT          median {median(a):.3f} s   runs {runs(a)}")
        print(f"rebuild {name:<15} median {median(b):.3f} s   runs {runs(b)}")
        print(f"ratio {name:<17} {median(b) / median(a):.2f}   (bar: <= 1.5)")
        found.append((median(a), median(b)))
        if baseline is not None:
            compare_trees(name, baseline, tagged(ours), repeat)
    for name, tree in (("XYZ folder", folder), ("exploded", exploded)):
        find = ["sh", "-c", f"find '{tree}' -type f | wc -l"]
        ours = [*cli, str(tree), "--status", str(work / f"formats-{tree.name}.gdb")]
        c, d = alternate(find, ours, repeat)
        print(f"find | wc -l            median {median(c):.3f} s   runs {runs(c)}")
        print(f"rebuild {name:<15} median {median(d):.3f} s   runs {runs(d)}")
        print(f"ratio {name:<17} {median(d) / median(c):.2f}   (bar: <= 1.5)")
        found.append((median(c), median(d)))
        if baseline is not None:
            compare_trees(name, baseline, tagged(ours), repeat)
    return found


def v1_bytes_per_tile(work: Path, side: int = 8) -> None:
    """Read every bundle of a synthetic V1 cache; print the .bundle bytes read per present tile."""
    from tests.helpers import bytes_read, synthetic_sizes, synthetic_v1_bundle, write_conf

    from cachestatus.formats import BundleFile, open_cache
    from cachestatus.formats.compact_v1 import BUNDLX_SIZE

    if not Path("/proc/self/io").exists():
        print("Compact V1 bytes read: needs Linux's /proc/self/io")
        return
    cache = work / f"v1-{side * side}"
    if not (cache / "conf.xml").exists():
        rng = np.random.default_rng(1)
        write_conf(cache, 14, storage="esriMapCacheStorageModeCompact")
        for i in range(side * side):
            r, c = divmod(i, side)
            synthetic_v1_bundle(
                cache / f"_alllayers/L12/R{r * 128:04x}C{c * 128:04x}.bundle", synthetic_sizes(rng)
            )
    with open_cache(cache) as reader:
        bundles = [b for b in reader.list_bundles(12) if isinstance(b, BundleFile)]
        reader.read_bundle(bundles[0])  # first-use costs out of the way
        start = bytes_read()
        before = bytes_read()  # reading the counter counts too
        present = sum(reader.read_bundle(b).tiles for b in bundles)
        read = bytes_read() - before - (before - start) - len(bundles) * BUNDLX_SIZE
    print(f"Compact V1 bundles      {len(bundles):,}, {present:,} present tiles")
    print(f"V1 .bundle bytes read   {read:,}: {read / present:.2f} per present tile (bar: <= 4)")


if __name__ == "__main__":
    sys.exit(main())
