"""Benchmark: tiles per second served by ``cachestatus serve`` under a burst of concurrent
requests, against the same reads done in-process.

A synthetic Compact V2 cache (``--side`` x ``--side`` bundles at level 12) is served by
``cachestatus serve --port 0`` in a subprocess; this process sends ``--requests`` tile requests
for random stored tiles, ``--in-flight`` at a time (one keep-alive connection per thread), and
checks every answer's bytes. The floor is measured in the same run: the same tiles read by
``read_tile`` on one shared reader from the same number of threads, in this process. Runs
alternate ``--repeat`` times; medians are compared.

    python benchmarks/bench_serve.py [--side 3] [--requests 2000] [--in-flight 32] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import synthetic_cache
from tests.serving import burst, serving

from benchmarks.timing import compile_package, median, runs
from cachestatus import open_cache

LEVEL = 12


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--side", type=int, default=3, help="bundles across the cache")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cachestatus-bench"
    )
    args = parser.parse_args()
    compile_package()
    cache = args.workdir / f"serve-v2-{args.side}"
    if not (cache / "conf.xml").exists():
        synthetic_cache(cache, args.side, LEVEL)
    rng = np.random.default_rng(3)
    with open_cache(cache) as reader:
        present = reader.presence(LEVEL, 0, 0, 128 * args.side, 128 * args.side)
        rows, cols = np.nonzero(present)
        picked = rng.integers(0, len(rows), args.requests)
        tiles = [(LEVEL, int(rows[i]), int(cols[i])) for i in picked]
        expected = [reader.read_tile(*tile) for tile in tiles]

        def read(tile: tuple[int, int, int]) -> bytes | None:
            return reader.read_tile(*tile)

        served_times, floor_times = [], []
        with serving([str(cache)]) as server:
            prefix = server.map_server.removeprefix(server.base)
            paths = [f"{prefix}/tile/{level}/{row}/{col}" for level, row, col in tiles]
            burst(server.base, paths[:100], args.in_flight)  # warm both sides up
            for _ in range(args.repeat):
                start = time.perf_counter()
                answers = burst(server.base, paths, args.in_flight)
                served_times.append(time.perf_counter() - start)
                assert all(
                    status == 200 and body == data
                    for (status, body), data in zip(answers, expected, strict=True)
                ), "a served tile differs from read_tile's bytes"
                start = time.perf_counter()
                with ThreadPoolExecutor(args.in_flight) as pool:
                    read_back = list(pool.map(read, tiles))
                floor_times.append(time.perf_counter() - start)
                assert read_back == expected
    served_rate = args.requests / median(served_times)
    floor_rate = args.requests / median(floor_times)
    print(f"cache                   {args.side}x{args.side} bundles at level {LEVEL}")
    print(f"burst                   {args.requests:,} requests, {args.in_flight} in flight")
    print(
        f"served                  median {median(served_times):.3f} s   runs {runs(served_times)}"
    )
    print(f"read_tile in-process    median {median(floor_times):.3f} s   runs {runs(floor_times)}")
    print(f"rate served             {served_rate:,.0f} tiles/s")
    print(f"rate in-process         {floor_rate:,.0f} tiles/s")
    print(f"ratio served / floor    {served_rate / floor_rate:.3f}")
    print(f"load                    {os.getloadavg()[0]:.2f} (1-minute average)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
