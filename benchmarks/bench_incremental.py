"""Benchmark: an incremental ``cachestatus rebuild`` against a listing of the same files.

On the synthetic 20,000-bundle Compact V2 cache of ``bench_rebuild.py`` (its bundles dated an
hour ago), a full rebuild writes the status store; then, alternately with the floor
``find DIR -type f -printf '%s %T@\\n'`` (the sizes and mtimes of the same files), the
rebuild of the unchanged cache, which reads no bundle. Bar: <= 3x the floor. Then 1 % of the
bundles are changed (their mtime moved: a stamp the rebuild cannot trust) before each
rebuild: the time it gains over the unchanged run is compared with the time a full rebuild
spends on those bundles (its median x 1 %). Bar: no more than that.

With two sizes (``--bundles 20000,100000``) it also prints the per-bundle ratio: the extra
time of the unchanged rebuild from the smaller cache to the larger one against the floor's.
The fixed cost of a Python process that imports GDAL (measured in the same run: unchanged
rebuilds of a 1-bundle cache) is printed beside the ratio: at 20,000 bundles it alone is
several times the floor. For each size it also times, in one process, the parts no rebuild can
skip (:data:`PARTS`): what bounds both ratios from below.

With ``--store gpkg`` the status store is a GeoPackage, which an incremental rebuild updates
in place (rows of changed bundles deleted and appended) instead of writing it again, and
whose unchanged rebuild is answered through SQLite without numpy or GDAL
(:mod:`cachestatus.unchanged`).

    python benchmarks/bench_incremental.py [--bundles 20000[,100000]] [--repeat 3]
        [--changed 0.01] [--store gdb|gpkg]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_rebuild import build
from benchmarks.timing import alternate, compile_package, median, runs, timed
from cachestatus.request import MAX_MISSING_ROWS

#: The status stores, by suffix: their GDAL drivers.
DRIVERS = {"gdb": "OpenFileGDB", "gpkg": "GPKG"}

#: The bundles' mtime: clearly before every run (an incremental rebuild reads again a bundle
#: written less than 2 s before the previous run).
AGE_NS = 3600 * 10**9

#: The parts no incremental rebuild of a FileGDB store written through pyogrio can skip, timed
#: in one process (printed as JSON, seconds): the imports (numpy, GDAL through pyogrio) after
#: the interpreter started, reading the previous store's bundle stamps, listing and stat-ing
#: the bundle files; and reading and writing again the store's per-bundle rows (TaskStatus with
#: polygons, BundleFiles), which pyogrio can neither update nor delete in place: what a rebuild
#: with any bundle changed costs more, at least.
PARTS = """
import json, os, shutil, sys, time, warnings
start = time.perf_counter()
import numpy, pyogrio.raw
found = {"imports": time.perf_counter() - start}
from cachestatus.incremental import StoredFiles
store, layers, out, driver = sys.argv[1:5]
def remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)
start = time.perf_counter()
StoredFiles.read(__import__("pathlib").Path(store))
found["read stamps"] = time.perf_counter() - start
start = time.perf_counter()
for level in os.scandir(layers):
    for entry in os.scandir(level.path):
        entry.stat()
found["list and stat"] = time.perf_counter() - start
found["read rows"] = found["write rows"] = 0.0
remove(out)
for layer in ("TaskStatus", "BundleFiles"):
    start = time.perf_counter()
    meta, _, wkb, values = pyogrio.raw.read(store, layer=layer, read_geometry=True)
    found["read rows"] += time.perf_counter() - start
    spatial = meta["geometry_type"] is not None
    extra = {"geometry_type": meta["geometry_type"], "crs": meta["crs"]} if spatial else {}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pyogrio.raw.write(out, wkb, values, meta["fields"], layer=layer, driver=driver,
                          append=layer != "TaskStatus", **extra)
    found["write rows"] += time.perf_counter() - start
remove(out)
print(json.dumps(found))
"""


#: The changed bundles read alone: a process that imports numpy (the index decoder), reads the
#: 131,136 header+index bytes of each bundle named in the file ``sys.argv[1]`` and decodes its
#: index (tiles present: a non-zero size in the top 24 bits of each 8-byte entry). The least
#: any program reading those bundles with the decoder costs, start-up included.
READ_ALONE = """
import os, sys
import numpy as np
present = 0
for path in open(sys.argv[1]).read().split("\\n"):
    fd = os.open(path, os.O_RDONLY)
    data = os.read(fd, 131136)
    os.close(fd)
    present += int(np.count_nonzero(np.frombuffer(data, "<u8", offset=64) >> 40))
print(present)
"""

#: What the answer of an unchanged rebuild into a .gpkg store imports, printing the table.
ANSWER_IMPORTS = (
    "import cachestatus.unchanged, cachestatus.render, sys; "
    "assert 'numpy' not in sys.modules and 'rich' not in sys.modules"
)


def bundle_paths(cache: Path) -> list[Path]:
    """Every bundle file of the cache, in a fixed order."""
    return sorted((cache / "_alllayers").rglob("*.bundle"))


def date(paths: list[Path], when: int) -> None:
    """Set the mtime of ``paths`` to ``when`` (ns)."""
    for path in paths:
        os.utime(path, ns=(when, when))


def run_size(
    workdir: Path, bundles: int, repeat: int, share: float, store: str
) -> tuple[float, float]:
    """Build (once) a cache of about ``bundles`` bundles, time a full rebuild, the floor, an
    unchanged and a ``share``-changed incremental rebuild; print them. Returns the medians of
    the floor and of the unchanged rebuild."""
    cache = build(workdir, bundles)
    paths = bundle_paths(cache)
    old = time.time_ns() - AGE_NS
    date(paths, old)
    status = workdir / f"{cache.name}-incremental.{store}"
    cli = [sys.executable, "-m", "cachestatus.cli", "-q", "rebuild", str(cache)]
    full_cmd = [*cli, "--full", "--status", str(status)]
    incremental_cmd = [*cli, "--status", str(status)]
    floor_cmd = ["find", str(cache), "-type", "f", "-printf", "%s %T@\\n"]

    timed(full_cmd)  # warms the page cache
    fulls = [timed(full_cmd) for _ in range(repeat)]
    floors, unchanged = alternate(floor_cmd, incremental_cmd, repeat)
    # The same unchanged rebuild by the normal path: an option (the default cap, given: the
    # same request) that the answer through SQLite of a .gpkg store leaves to it. The changed
    # run's extra time is given against both.
    normal_cmd = [*incremental_cmd, "--max-missing-rows", str(MAX_MISSING_ROWS)]
    timed(normal_cmd)
    unchanged_normal = [timed(normal_cmd) for _ in range(repeat)]
    step = max(1, round(1 / share))
    changed_paths = paths[::step]
    changed = []
    for run in range(repeat):
        date(changed_paths, old + (run + 1) * 10**6)  # another stamp, still long ago
        changed.append(timed(incremental_cmd))
    date(changed_paths, old)
    names = workdir / "changed-bundles.txt"
    names.write_text("\n".join(str(p) for p in changed_paths))
    alone = [timed([sys.executable, "-c", READ_ALONE, str(names)]) for _ in range(repeat)]
    interpreter = median([timed([sys.executable, "-c", "pass"]) for _ in range(repeat)])
    parts = [
        json.loads(
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    PARTS,
                    str(status),
                    str(cache / "_alllayers"),
                    str(workdir / f"parts.{store}"),
                    DRIVERS[store],
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        for _ in range(repeat)
    ]

    full, floor, same, some = median(fulls), median(floors), median(unchanged), median(changed)
    budget = full * len(changed_paths) / len(paths)
    print(f"bundles                      {len(paths):,}   store .{store}")
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
    read_alone = median(alone)
    print(
        f"those bundles read alone     median {read_alone:.3f} s   runs {runs(alone)} (a process "
        f"importing numpy, reading and decoding their indexes); the extra against it "
        f"{(some - same) / read_alone:.2f}"
    )
    normal = median(unchanged_normal)
    print(
        f"unchanged, normal path       median {normal:.3f} s   runs {runs(unchanged_normal)}; "
        f"the changed run's extra over it {some - normal:.3f} s, "
        f"ratio {(some - normal) / budget:.2f}"
    )
    print(f"unavoidable parts (medians; the floor {floor:.3f} s):")
    print(f"  interpreter                {interpreter:.3f} s")
    for name in parts[0]:
        part = median([p[name] for p in parts])
        print(f"  {name:<26} {part:.3f} s")
    rows = ("read rows", "write rows")
    least = interpreter + sum(median([p[n] for p in parts]) for n in parts[0] if n not in rows)
    again = sum(median([p[n] for p in parts]) for n in rows)
    print(
        f"  unchanged at least         {least:.3f} s = {least / floor:.2f}x the floor; any "
        f"bundle changed: + {again:.3f} s to read and write the rows again "
        f"({again / budget:.1f}x the budget)"
    )
    if store == "gpkg":
        print("  (a .gpkg is updated in place: only the read of the rows is left of these two)")
        # An unchanged rebuild into a .gpkg is answered through SQLite (cachestatus.unchanged):
        # its process imports neither numpy nor GDAL, only what this loads.
        light = median([timed([sys.executable, "-c", ANSWER_IMPORTS]) for _ in range(repeat)])
        print(
            f"  .gpkg unchanged: interpreter and imports of the answer through SQLite "
            f"{light:.3f} s (numpy, GDAL and rich not loaded)"
        )
    return floor, same


def start_up(workdir: Path, repeat: int, store: str) -> float:
    """The fixed cost of an incremental rebuild: the median of unchanged rebuilds of a
    1-bundle cache (a Python process importing GDAL, reading and copying a store)."""
    cache = build(workdir, 1)
    date(bundle_paths(cache), time.time_ns() - AGE_NS)
    status = workdir / f"{cache.name}-incremental.{store}"
    cmd = [sys.executable, "-m", "cachestatus.cli", "-q", "rebuild", str(cache)]
    timed([*cmd, "--full", "--status", str(status)])
    timed([*cmd, "--status", str(status)])
    return median([timed([*cmd, "--status", str(status)]) for _ in range(repeat)])


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--bundles",
        default="20000",
        help="bundles per cache; two sizes (20000,100000) also give the per-bundle ratio",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--changed", type=float, default=0.01, help="share of bundles changed")
    parser.add_argument("--store", choices=sorted(DRIVERS), default="gdb", help="status store")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cachestatus-bench"
    )
    args = parser.parse_args()
    compile_package()
    args.workdir.mkdir(parents=True, exist_ok=True)
    sizes = [int(n) for n in str(args.bundles).split(",")]
    medians = []
    for bundles in sizes:
        medians.append(run_size(args.workdir, bundles, args.repeat, args.changed, args.store))
        print()
    fixed = start_up(args.workdir, args.repeat, args.store)
    for bundles, (floor, same) in zip(sizes, medians, strict=True):
        print(
            f"start-up (1-bundle cache)    median {fixed:.3f} s = {fixed / floor:.2f}x the floor "
            f"of {bundles:,} bundles, whose ratio is {same / floor:.2f}"
        )
    if len(sizes) == 2:
        # The extra time from the smaller cache to the larger one: the cost per bundle, without
        # the fixed cost of a Python process that imports GDAL.
        (floor_a, same_a), (floor_b, same_b) = medians
        print(
            f"per-bundle ratio unchanged   {(same_b - same_a) / (floor_b - floor_a):.2f}   "
            f"({sizes[0]:,} -> {sizes[1]:,} bundles: {same_b - same_a:.3f} s against "
            f"{floor_b - floor_a:.3f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
