"""Benchmark: an incremental ``cachestatus rebuild`` against a listing of the same files.

On the synthetic 20,000-bundle Compact V2 cache of ``bench_rebuild.py`` (its bundles dated an
hour ago), a full rebuild writes the status store; then, alternately with the floor
``find DIR -type f -printf '%s %T@\\n'`` (the sizes and mtimes of the same files), the
rebuild of the unchanged cache, which reads no bundle. Bar: <= 3x the floor. Then 1 % of the
bundles are changed (their mtime moved: a stamp the rebuild cannot trust) before each
rebuild: the time it gains over the unchanged run is compared with the time a full rebuild
spends on those bundles (its median x 1 %). Bar: no more than that.

    python benchmarks/bench_incremental.py [--bundles 20000] [--repeat 3] [--changed 0.01]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_rebuild import build
from benchmarks.timing import alternate, compile_package, median, runs, timed

#: The bundles' mtime: clearly before every run (an incremental rebuild reads again a bundle
#: written less than 2 s before the previous run).
AGE_NS = 3600 * 10**9


def bundle_paths(cache: Path) -> list[Path]:
    """Every bundle file of the cache, in a fixed order."""
    return sorted((cache / "_alllayers").rglob("*.bundle"))


def date(paths: list[Path], when: int) -> None:
    """Set the mtime of ``paths`` to ``when`` (ns)."""
    for path in paths:
        os.utime(path, ns=(when, when))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundles", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--changed", type=float, default=0.01, help="share of bundles changed")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cachestatus-bench"
    )
    args = parser.parse_args()
    compile_package()
    args.workdir.mkdir(parents=True, exist_ok=True)
    cache = build(args.workdir, args.bundles)
    paths = bundle_paths(cache)
    old = time.time_ns() - AGE_NS
    date(paths, old)
    status = args.workdir / f"{cache.name}-incremental.gdb"
    cli = [sys.executable, "-m", "cachestatus.cli", "-q", "rebuild", str(cache)]
    full_cmd = [*cli, "--full", "--status", str(status)]
    incremental_cmd = [*cli, "--status", str(status)]
    floor_cmd = ["find", str(cache), "-type", "f", "-printf", "%s %T@\\n"]

    fulls = [timed(full_cmd) for _ in range(args.repeat)]
    floors, unchanged = alternate(floor_cmd, incremental_cmd, args.repeat)
    step = max(1, round(1 / args.changed))
    changed_paths = paths[::step]
    changed = []
    for run in range(args.repeat):
        date(changed_paths, old + (run + 1) * 10**6)  # another stamp, still long ago
        changed.append(timed(incremental_cmd))

    full, floor, same, some = median(fulls), median(floors), median(unchanged), median(changed)
    budget = full * len(changed_paths) / len(paths)
    print(f"bundles                      {len(paths):,}")
    print(f"full rebuild                 median {full:.3f} s   runs {runs(fulls)}")
    print(f"floor (find -printf)         median {floor:.3f} s   runs {runs(floors)}")
    print(f"rebuild, unchanged           median {same:.3f} s   runs {runs(unchanged)}")
    print(f"ratio unchanged / floor      {same / floor:.2f}   (bar: <= 3.0)")
    print(
        f"rebuild, {len(changed_paths):,} changed        median {some:.3f} s   runs {runs(changed)}"
    )
    print(
        f"extra time for the changed   {some - same:.3f} s against {budget:.3f} s "
        f"(full rebuild x {len(changed_paths) / len(paths):.1%}); "
        f"ratio {(some - same) / budget:.2f}   (bar: <= 1.0)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
