"""Benchmark: a report over a country-sized irregular area against a rebuild of the same bundles.

The cache holds the bundles of one level (15, Web Mercator) that meet an irregular polygon with a
hole, as a cache built for a country would; its full extent is the polygon's bounding box. A
whole ``cachestatus report --aoi`` process is timed against a whole ``cachestatus rebuild``
process on the same cache, alternately, several times; the medians are compared.

    python benchmarks/bench_report.py [--side 71] [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import shapely
from pyogrio.raw import write

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import WEB_MERCATOR_HALF, synthetic_bundle, synthetic_sizes, write_conf

from benchmarks.timing import alternate, compare_trees, compile_package, median, runs

LEVEL = 15


def country(side: int) -> shapely.Polygon:
    """A 60-vertex irregular polygon with a hole, filling most of ``side`` x ``side`` bundles."""
    span = 128 * 256 * (2 * WEB_MERCATOR_HALF / 256 / 2**LEVEL)
    cx, cy = -WEB_MERCATOR_HALF + side * span / 2, WEB_MERCATOR_HALF - side * span / 2
    rng = np.random.default_rng(1)
    angles = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    radius = side * span * 0.42 * (0.75 + 0.25 * rng.random(60))
    hole = side * span * 0.08
    return shapely.Polygon(
        np.column_stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)]),
        [np.column_stack([cx + hole * np.cos(angles[::-1]), cy + hole * np.sin(angles[::-1])])],
    )


def build(root: Path, side: int) -> tuple[Path, Path]:
    """The cache of the bundles meeting the polygon, and the polygon as GeoJSON (built once)."""
    cache, aoi = root / f"country-v2-{side}", root / f"country-{side}.geojson"
    area = country(side)
    if (cache / "conf.xml").exists() and aoi.exists():
        return cache, aoi
    shutil.rmtree(cache, ignore_errors=True)
    write(
        str(aoi),
        shapely.to_wkb(np.array([area])),
        [],
        [],
        driver="GeoJSON",
        geometry_type="Polygon",
        crs="EPSG:3857",
    )
    write_conf(cache, LEVEL + 2, area.bounds)
    size = 128 * 256 * (2 * WEB_MERCATOR_HALF / 256 / 2**LEVEL)
    rng = np.random.default_rng(0)
    shapely.prepare(area)
    for r in range(side):
        for c in range(side):
            square = shapely.box(
                -WEB_MERCATOR_HALF + c * size,
                WEB_MERCATOR_HALF - (r + 1) * size,
                -WEB_MERCATOR_HALF + (c + 1) * size,
                WEB_MERCATOR_HALF - r * size,
            )
            if shapely.intersects(area, square):
                synthetic_bundle(
                    cache / f"_alllayers/L{LEVEL:02d}/R{r * 128:04x}C{c * 128:04x}.bundle",
                    synthetic_sizes(rng),
                )
    return cache, aoi


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--side", type=int, default=71, help="bundles across the area's box")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="the src folder of another cachestatus tree to time the report against",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cachestatus-bench"
    )
    args = parser.parse_args()
    compile_package()
    args.workdir.mkdir(parents=True, exist_ok=True)
    cache, aoi = build(args.workdir, args.side)
    cli = [sys.executable, "-m", "cachestatus.cli", "-q"]
    rebuild = [
        *cli,
        "rebuild",
        str(cache),
        "--full",  # every bundle read, as a report reads them
        "--status",
        str(args.workdir / "country-status.gdb"),
    ]
    report = [
        *cli,
        "report",
        str(cache),
        "--out",
        str(args.workdir / "country-report"),
        "--levels",
        str(LEVEL),
        "--aoi",
        str(aoi),
        "--overwrite",
    ]
    rebuilds, reports = alternate(rebuild, report, args.repeat)
    a, b = median(rebuilds), median(reports)
    bundles = sum(1 for _ in (cache / "_alllayers" / f"L{LEVEL:02d}").iterdir())
    print(f"bundles                 {bundles:,} at level {LEVEL} (meeting the area)")
    print(f"rebuild                 median {a:.3f} s   runs {runs(rebuilds)}")
    print(f"report --aoi            median {b:.3f} s   runs {runs(reports)}")
    print(f"ratio report / rebuild  {b / a:.2f}   (bar: <= 1.5)")
    if args.baseline is not None:
        out = report.index("--out") + 1
        compare_trees(
            "report --aoi",
            args.baseline,
            lambda tag: [*report[:out], f"{report[out]}-{tag}", *report[out + 1 :]],
            args.repeat,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
