"""Benchmark: a whole ``cachestatus rebuild`` from a cold disk against the best reader of the
same bytes.

Before every timed command the page cache is emptied (``sync; echo 3 >
/proc/sys/vm/drop_caches``: Linux, as root). The floor is the best concurrent reader of what a
rebuild must read: one process that lists the level folders and reads every bundle's 131,136
header+index bytes from :data:`THREADS` threads, each file opened with ``POSIX_FADV_RANDOM`` (no
read-ahead), nothing else. Measured: ``cachestatus rebuild`` as a whole process, with its
default workers, and with ``--io-concurrency 16``; with ``--baseline SRC``, also the rebuild of
another source tree (``SRC``, its ``src`` folder: the tree before reads were tuned). Every
round runs each command once, in a rotated order; the ratios are the medians of the per-round
ratios. The CPU seconds (user and system, the process and its workers) say where the time goes
when the bar is missed: a command that spends its wall time on the CPU waits on no disk; so
does the warm rebuild printed last (the same command with the page cache full), the part of a
cold rebuild that no reader can save.

It is its own script, not ``bench_rebuild.py --cold``, because its floor and its rounds are
other: every run cold, a concurrent floor, and several commands per round.

    python benchmarks/bench_cold.py [--bundles 20000] [--repeat 3] [--baseline SRC]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_rebuild import build
from benchmarks.timing import compile_package, drop_page_cache, from_tree, runs, timed

#: Reads in flight of the floor.
THREADS = 32
#: What the floor reads of each bundle: its header and index.
HEADER_INDEX = 131_136

FLOOR = """
import os, sys
from concurrent.futures import ThreadPoolExecutor
layers = os.path.join(sys.argv[1], "_alllayers")
threads, length = int(sys.argv[2]), int(sys.argv[3])
paths = []
for level in sorted(os.listdir(layers)):
    with os.scandir(os.path.join(layers, level)) as entries:
        paths.extend(e.path for e in entries if e.name.endswith(".bundle"))
def read(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        return len(os.pread(fd, length, 0))
    finally:
        os.close(fd)
with ThreadPoolExecutor(threads) as pool:
    print(sum(pool.map(read, paths, chunksize=64)))
"""


class Run(NamedTuple):
    """One cold run: wall seconds, and CPU seconds of the process tree (user, system)."""

    wall: float
    user: float
    system: float


def cold_run(cmd: list[str]) -> Run:
    """``cmd`` run once after the page cache is emptied; fails if the command fails."""
    drop_page_cache()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Run(wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)


def rounds(commands: dict[str, list[str]], repeat: int) -> dict[str, list[Run]]:
    """Every command once per round, cold, the order rotated each round."""
    names = list(commands)
    found: dict[str, list[Run]] = {name: [] for name in names}
    for i in range(repeat):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            found[name].append(cold_run(commands[name]))
    return found


def per_round(found: dict[str, list[Run]], top: str, bottom: str) -> tuple[float, list[float]]:
    """The median of the per-round ratios ``top / bottom`` (wall), and the ratios."""
    ratios = [a.wall / b.wall for a, b in zip(found[top], found[bottom], strict=True)]
    return statistics.median(ratios), ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundles", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-cold"))
    parser.add_argument(
        "--baseline", type=Path, help="the src folder of the tree before, timed the same way"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("emptying the page cache needs root", file=sys.stderr)
        return 2
    compile_package()
    args.workdir.mkdir(parents=True, exist_ok=True)
    cache = build(args.workdir, args.bundles)
    bundles = sum(1 for _ in (cache / "_alllayers" / "L15").iterdir())
    cachestatus = [sys.executable, "-m", "cachestatus.cli", "-q", "rebuild", str(cache)]

    def status(tag: str) -> list[str]:
        return ["--status", str(args.workdir / f"{cache.name}-{tag}.gdb")]

    commands = {
        "floor": [sys.executable, "-c", FLOOR, str(cache), str(THREADS), str(HEADER_INDEX)],
        # --full: every run reads every bundle (an unchanged cache would otherwise be reused).
        "rebuild": [*cachestatus, "--full", *status("rebuild")],
        "rebuild --io-concurrency 16": [
            *cachestatus,
            "--full",
            *status("in-flight"),
            "--io-concurrency",
            "16",
        ],
    }
    if args.baseline is not None:
        commands["baseline rebuild"] = from_tree(
            args.baseline, [*cachestatus, "--full", *status("baseline")]
        )
    found = rounds(commands, args.repeat)
    warm = [timed(commands["rebuild"]) for _ in range(3)][1:]  # the first one warms the cache

    print(f"bundles {bundles:,}, page cache emptied before every run, {args.repeat} rounds")
    for name, measured in found.items():
        walls = [r.wall for r in measured]
        user = statistics.median(r.user for r in measured)
        system = statistics.median(r.system for r in measured)
        print(
            f"{name:<28} median {statistics.median(walls):7.3f} s   CPU {user + system:6.2f} s "
            f"(system {system:5.2f})   runs {runs(walls)}"
        )
    cold = statistics.median(r.wall for r in found["rebuild"])
    print(
        f"warm rebuild (page cache full: CPU only) median {statistics.median(warm):.3f} s   "
        f"runs {runs(warm)}; cold - warm {cold - statistics.median(warm):.3f} s"
    )
    for name in commands:
        if name.startswith("rebuild"):
            ratio, ratios = per_round(found, name, "floor")
            print(f"ratio {name} / floor: {ratio:.2f}   (rounds {runs(ratios)}; bar: <= 1.30)")
    if args.baseline is not None:
        for name in ("rebuild", "rebuild --io-concurrency 16"):
            faster, ratios = per_round(found, "baseline rebuild", name)
            print(f"{name}: {faster:.2f}x faster than the baseline (rounds {runs(ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
