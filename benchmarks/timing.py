"""Timing whole processes for the benchmarks: alternate runs, medians."""

from __future__ import annotations

import compileall
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def compile_package() -> None:
    """Byte-compile cachestatus, as installing it does: runs then measure the work, not the
    compiling of sources that an environment with PYTHONDONTWRITEBYTECODE would redo each time."""
    import importlib.util

    spec = importlib.util.find_spec("cachestatus")
    assert spec is not None and spec.submodule_search_locations, "cachestatus is not installed"
    for folder in spec.submodule_search_locations:
        compileall.compile_dir(folder, quiet=1)


def drop_page_cache() -> None:
    """Empty the kernel's page cache (Linux, as root), so that the next run reads from disk."""
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def timed(cmd: list[str], cold: bool = False) -> float:
    """Wall time of one run of ``cmd`` (its output discarded); fails if the command fails.
    With ``cold``, the page cache is emptied first."""
    if cold:
        drop_page_cache()
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def alternate(
    first: list[str], second: list[str], repeat: int, cold: bool = False
) -> tuple[list[float], list[float]]:
    """Run both commands once to warm the page cache (or, with ``cold``, empty it before every
    run), then ``repeat`` times each, alternately, so that both see the same machine state."""
    if not cold:
        timed(first)
        timed(second)
    a, b = [], []
    for _ in range(repeat):
        a.append(timed(first, cold))
        b.append(timed(second, cold))
    return a, b


def median(times: list[float]) -> float:
    """The median of a list of times."""
    return statistics.median(times)


def runs(times: list[float]) -> str:
    """The times as ``0.123, 0.125, ...``."""
    return ", ".join(f"{t:.3f}" for t in times)


def from_tree(src: Path, cmd: list[str]) -> list[str]:
    """``cmd`` run with the ``cachestatus`` of another source tree (``src``, its ``src`` folder)."""
    return ["env", f"PYTHONPATH={src}", *cmd]


def compare_trees(
    label: str, baseline: Path, make_cmd: Callable[[str], list[str]], repeat: int, bar: float = 1.05
) -> float:
    """Time the command ``make_cmd(tag)`` from the ``baseline`` source tree and from this one,
    alternately (``tag`` tells the two runs' outputs apart); print both medians and the ratio
    this tree / baseline, which is returned."""
    here = Path(__file__).resolve().parent.parent / "src"
    for tree in (baseline, here):
        compileall.compile_dir(str(tree), quiet=1)
    bases, ours = alternate(
        from_tree(baseline, make_cmd("baseline")), from_tree(here, make_cmd("ours")), repeat
    )
    ratio = median(ours) / median(bases)
    print(f"{label}: baseline median {median(bases):.3f} s   runs {runs(bases)}")
    print(f"{label}: this tree median {median(ours):.3f} s   runs {runs(ours)}")
    print(f"{label}: ratio this tree / baseline   {ratio:.3f}   (bar: <= {bar:.2f})")
    return ratio
