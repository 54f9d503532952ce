"""Benchmark: single tile reads (``read_tile``) against the floor of their reads.

A synthetic Compact V2 cache (real headers and indexes, every tile a body of its own) is read
one tile at a time, in screens of 16 x 16 tiles at random places, as a map client asks for them.
The floor is the least any reader can do per tile, in the same process: open the bundle, read
the tile's 8-byte index entry, read the tile, close it. ``read_tile`` finds the bundle (a
``stat``), keeps its decoded index (an LRU) and reads the tile. Both run single-threaded on a
warm page cache, alternately, several times; the medians are compared. Then ``read_tile`` from
16 threads on one reader gives the rate a server sharing it can reach (the GIL and the cores
bound it), and ``presence`` of a 32 x 32 window (a ``tilemap`` block) is timed.

    python benchmarks/bench_tiles.py [--side 8] [--screens 40] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import synthetic_bundle, write_conf

from benchmarks.timing import median, runs
from cachestatus import open_cache

LEVEL = 12
SCREEN = 16


def build(root: Path, side: int) -> Path:
    """A ``side`` x ``side`` block of full V2 bundles at :data:`LEVEL`, each tile 512 bytes."""
    write_conf(root, LEVEL + 2, None)
    for i in range(side * side):
        r, c = divmod(i, side)
        path = root / f"_alllayers/L{LEVEL:02d}/R{r * 128:04x}C{c * 128:04x}.bundle"
        synthetic_bundle(path, np.full((128, 128), 512), b"\x89PNG" + bytes(508))
    return root


def screens(side: int, count: int, seed: int = 1) -> list[tuple[int, int]]:
    """``count`` screens of :data:`SCREEN` x :data:`SCREEN` tiles: each tile's (row, col)."""
    rng = np.random.default_rng(seed)
    tiles = []
    for row0, col0 in rng.integers(0, side * 128 - SCREEN, (count, 2)).tolist():
        tiles += [(row0 + r, col0 + c) for r in range(SCREEN) for c in range(SCREEN)]
    return tiles


def floor(root: Path, tiles: list[tuple[int, int]]) -> int:
    """Each tile read with the fewest system calls: open, two preads, close."""
    got = 0
    folder = root / "_alllayers" / f"L{LEVEL:02d}"
    for row, col in tiles:
        br, bc = row - row % 128, col - col % 128
        fd = os.open(folder / f"R{br:04x}C{bc:04x}.bundle", os.O_RDONLY)
        entry = int.from_bytes(os.pread(fd, 8, 64 + 8 * (128 * (row - br) + col - bc)), "little")
        got += len(os.pread(fd, entry >> 40, entry & (1 << 40) - 1))
        os.close(fd)
    return got


def timed(work: Callable[[], int]) -> float:
    """Wall time of ``work()``."""
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=8, help="bundles a side (default 8)")
    parser.add_argument("--screens", type=int, default=40, help="screens read (default 40)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, open_cache(build(Path(tmp), args.side)) as reader:
        root = Path(tmp)
        tiles = screens(args.side, args.screens)

        def ours() -> int:
            return sum(len(reader.read_tile(LEVEL, row, col) or b"") for row, col in tiles)

        assert ours() == floor(root, tiles) == 512 * len(tiles)  # warm: indexes decoded
        base, mine = [], []
        for _ in range(args.repeat):
            base.append(timed(lambda: floor(root, tiles)))
            mine.append(timed(ours))
        print(f"{len(tiles):,} tiles in {args.screens} screens of {SCREEN} x {SCREEN}")
        print(f"floor (open, 2 preads, close) : {runs(base)}  median {median(base):.3f} s")
        print(f"read_tile                     : {runs(mine)}  median {median(mine):.3f} s")
        print(f"ratio read_tile / floor       : {median(mine) / median(base):.2f}")

        with ThreadPoolExecutor(16) as pool:
            start = time.perf_counter()
            list(pool.map(lambda t: reader.read_tile(LEVEL, *t), tiles))
            threaded = time.perf_counter() - start
        print(f"16 threads, one reader        : {len(tiles) / threaded:,.0f} tiles/s")
        start = time.perf_counter()
        for row, col in tiles[:: SCREEN * SCREEN]:
            reader.presence(LEVEL, row - row % 32, col - col % 32, 32, 32)
        each = (time.perf_counter() - start) / args.screens
        print(f"presence of a 32 x 32 block   : {each * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
