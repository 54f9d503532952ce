"""Benchmark: a whole ``cachestatus rebuild`` process against the floor of its reads.

The floor is one single-threaded process that only lists the level folders, opens each bundle and
reads its 131,136 header+index bytes, nothing else. Both run on the same synthetic Compact V2
cache (real headers and indexes, sparse tile bodies), with a warm page cache, alternately, several
times; the medians are compared. Peak RSS of the rebuild is measured at two cache sizes to show
that memory does not grow with the number of bundles.

With ``--holes scattered`` the cache's partial bundles miss tiles here and there (one bundle in
four misses from 0.1 % to 5 % of its tiles, at random) instead of one block each. With
``--baseline SRC``, ``cachestatus rebuild`` is also timed from another source tree (``SRC`` is
its ``src`` folder, e.g. the main branch's), alternately with this one, and the medians compared.

    python benchmarks/bench_rebuild.py [--bundles 20000] [--small 5000] [--repeat 5] [--cold]
        [--holes blocks|scattered] [--baseline SRC]
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from tests.helpers import (
    WEB_MERCATOR_HALF,
    peak_rss_kib,
    synthetic_bundle,
    synthetic_cache,
    write_conf,
)

from benchmarks.timing import alternate, compare_trees, compile_package, median, runs

FLOOR = """
import os, sys
layers = os.path.join(sys.argv[1], "_alllayers")
n = 0
for level in sorted(os.listdir(layers)):
    with os.scandir(os.path.join(layers, level)) as entries:
        for e in entries:
            if e.name.endswith(".bundle"):
                fd = os.open(e.path, os.O_RDONLY)
                n += len(os.read(fd, 131136))
                os.close(fd)
print(n)
"""


def scattered_cache(root: Path, side: int, level: int = 15, seed: int = 0) -> Path:
    """Like :func:`~tests.helpers.synthetic_cache`, but one bundle in four misses tiles here
    and there (0.1 % to 5 % of them), as seeding failures leave them."""
    rng = np.random.default_rng(seed)
    span = 128 * 256 * (2 * WEB_MERCATOR_HALF / 256 / 2**level)
    half = WEB_MERCATOR_HALF
    write_conf(root, level + 2, (-half, half - side * span, -half + side * span, half))
    for i in range(side * side):
        r, c = divmod(i, side)
        sizes = rng.integers(200, 3000, (128, 128))
        if rng.random() < 0.25:
            sizes[rng.random((128, 128)) < rng.uniform(0.001, 0.05)] = 0
        synthetic_bundle(
            root / f"_alllayers/L{level:02d}/R{r * 128:04x}C{c * 128:04x}.bundle", sizes
        )
    return root


def build(root: Path, bundles: int, holes: str = "blocks") -> Path:
    """A square block of at least ``bundles`` synthetic bundles at level 15 (built once)."""
    side = math.ceil(math.sqrt(bundles))
    cache = (
        root / f"cache-v2-{side * side}"
        if holes == "blocks"
        else root / f"cache-v2-{holes}-{side * side}"
    )
    if not (cache / "conf.xml").exists():
        print(f"building {side * side:,} bundles in {cache} ...", file=sys.stderr)
        shutil.rmtree(cache, ignore_errors=True)
        if holes == "blocks":
            synthetic_cache(cache, side, level=15)
        else:
            scattered_cache(cache, side, level=15)
    return cache


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundles", type=int, default=20_000)
    parser.add_argument("--small", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--cold",
        action="store_true",
        help="also time both from disk, emptying the page cache before each run (Linux, root)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cachestatus-bench"
    )
    parser.add_argument("--holes", choices=["blocks", "scattered"], default="blocks")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="the src folder of another cachestatus tree to time against this one",
    )
    args = parser.parse_args()
    compile_package()
    args.workdir.mkdir(parents=True, exist_ok=True)
    cachestatus = [sys.executable, "-m", "cachestatus.cli", "-q"]

    cache = build(args.workdir, args.bundles, args.holes)
    # Each cache its own stores: a store is refused for a cache other than the one it records.
    status = args.workdir / f"{cache.name}-status.gdb"
    floor_cmd = [sys.executable, "-c", FLOOR, str(cache)]
    # --full: every run reads every bundle (an unchanged cache would otherwise be reused).
    rebuild_cmd = [*cachestatus, "rebuild", str(cache), "--full", "--status", str(status)]
    floors, rebuilds = alternate(floor_cmd, rebuild_cmd, args.repeat)
    floor, rebuild = median(floors), median(rebuilds)
    bundles = sum(1 for _ in (cache / "_alllayers" / "L15").iterdir())

    small = build(args.workdir, args.small, args.holes)
    small_bundles = sum(1 for _ in (small / "_alllayers" / "L15").iterdir())
    small_cmd = [
        *cachestatus,
        "rebuild",
        str(small),
        "--full",
        "--status",
        str(args.workdir / f"{small.name}-status.gdb"),
    ]
    rss_big, rss_small = peak_rss_kib(rebuild_cmd), peak_rss_kib(small_cmd)

    print(f"bundles                 {bundles:,}")
    print(f"floor (read indexes)    median {floor:.3f} s   runs {runs(floors)}")
    print(f"cachestatus rebuild     median {rebuild:.3f} s   runs {runs(rebuilds)}")
    print(f"ratio rebuild / floor   {rebuild / floor:.2f}   (bar: <= 2.0)")
    if args.cold:
        cold_floors, cold_rebuilds = alternate(floor_cmd, rebuild_cmd, 2, cold=True)
        print(
            f"cold floor              median {median(cold_floors):.3f} s   runs {runs(cold_floors)}"
        )
        print(
            f"cold rebuild            median {median(cold_rebuilds):.3f} s   "
            f"runs {runs(cold_rebuilds)}"
        )
        print(f"cold ratio              {median(cold_rebuilds) / median(cold_floors):.2f}")
    if args.baseline is not None:
        compare_trees(
            "rebuild",
            args.baseline,
            # --full for both: a baseline with incremental rebuilds would reuse its rows.
            lambda tag: [
                *rebuild_cmd[:-2],
                "--status",
                str(args.workdir / f"{cache.name}-{tag}.gdb"),
            ],
            args.repeat,
        )
    print(f"peak RSS at {bundles:>6,} bundles   {rss_big / 1024:.1f} MiB")
    print(f"peak RSS at {small_bundles:>6,} bundles   {rss_small / 1024:.1f} MiB")
    print(f"RSS ratio {rss_big / rss_small:.2f} for {bundles / small_bundles:.2f}x the bundles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
