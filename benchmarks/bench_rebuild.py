"""Benchmark: a whole ``cachestatus rebuild`` process against the floor of its reads.

The floor is one single-threaded process that only lists the level folders, opens each bundle and
reads its 131,136 header+index bytes, nothing else. Both run on the same synthetic Compact V2
cache (real headers and indexes, sparse tile bodies), with a warm page cache, alternately, several
times; the medians are compared. Peak RSS of the rebuild is measured at two cache sizes to show
that memory does not grow with the number of bundles.

    python benchmarks/bench_rebuild.py [--bundles 20000] [--small 5000] [--repeat 5] [--cold]
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import synthetic_cache

from benchmarks.timing import alternate, compile_package, median, runs

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

# Runs a command and prints the peak RSS (KiB) of its process tree: RUSAGE_CHILDREN covers every
# descendant that was waited for, worker processes included.
RSS_WRAPPER = (
    "import resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def build(root: Path, bundles: int) -> Path:
    """A square block of at least ``bundles`` synthetic bundles at level 15 (built once)."""
    side = math.ceil(math.sqrt(bundles))
    cache = root / f"cache-v2-{side * side}"
    if not (cache / "conf.xml").exists():
        print(f"building {side * side:,} bundles in {cache} ...", file=sys.stderr)
        shutil.rmtree(cache, ignore_errors=True)
        synthetic_cache(cache, side, level=15)
    return cache


def peak_rss_kib(cmd: list[str]) -> int:
    out = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, *cmd], check=True, capture_output=True, text=True
    ).stdout
    return int(out.strip().splitlines()[-1])


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
    args = parser.parse_args()
    compile_package()
    args.workdir.mkdir(parents=True, exist_ok=True)
    cachestatus = [sys.executable, "-m", "cachestatus.cli", "-q"]

    cache = build(args.workdir, args.bundles)
    status = args.workdir / "bench-status.gdb"
    floor_cmd = [sys.executable, "-c", FLOOR, str(cache)]
    rebuild_cmd = [*cachestatus, "rebuild", str(cache), "--status", str(status)]
    floors, rebuilds = alternate(floor_cmd, rebuild_cmd, args.repeat)
    floor, rebuild = median(floors), median(rebuilds)
    bundles = sum(1 for _ in (cache / "_alllayers" / "L15").iterdir())

    small = build(args.workdir, args.small)
    small_bundles = sum(1 for _ in (small / "_alllayers" / "L15").iterdir())
    small_cmd = [*cachestatus, "rebuild", str(small), "--status", str(args.workdir / "small.gdb")]
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
    print(f"peak RSS at {bundles:>6,} bundles   {rss_big / 1024:.1f} MiB")
    print(f"peak RSS at {small_bundles:>6,} bundles   {rss_small / 1024:.1f} MiB")
    print(f"RSS ratio {rss_big / rss_small:.2f} for {bundles / small_bundles:.2f}x the bundles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
