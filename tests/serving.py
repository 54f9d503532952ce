"""Helpers of the tests and the benchmark of ``cachestatus serve``: PNG tiles whose every pixel
is known, a cache in a custom CRS with non-power-of-two resolutions (written by MapProxy),
``cachestatus serve`` in a subprocess, and a burst of concurrent requests."""

from __future__ import annotations

import http.client
import io
import math
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NamedTuple
from urllib.parse import urlsplit

import numpy as np

from tests.helpers import conf_cdi, conf_xml, mapproxy_v2_cache, stop_program

Key = tuple[int, int, int]

#: A custom scheme: EPSG:25832, resolutions 4000/2000/1000/400 m (not powers of two apart).
UTM_ORIGIN = (-5_120_900.0, 9_998_100.0)
UTM_RESOLUTIONS = (4000.0, 2000.0, 1000.0, 400.0)
#: The full extent, on whole pixels of every level (so that GDAL's windows fall on pixels).
UTM_EXTENT = (279_100.0, 5_230_100.0, 919_100.0, 6_110_100.0)


def png_tile(seed: int, size: int = 256) -> bytes:
    """An opaque PNG of 8 x 8 blocks of colours drawn from ``seed``: cheap to store, and every
    pixel known."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    pixels = np.repeat(np.repeat(blocks, size // 8, axis=0), size // 8, axis=1)
    rgba = np.dstack([pixels, np.full((size, size), 255, dtype=np.uint8)])
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, format="PNG")
    return out.getvalue()


def decoded(data: bytes) -> np.ndarray:
    """A tile's pixels as (bands, rows, cols) RGBA, decoded by Pillow."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGBA")).transpose(2, 0, 1)


def utm_tiles(hole: int = 3) -> dict[Key, bytes]:
    """Every tile of the custom scheme's four levels over :data:`UTM_EXTENT`, but those of
    level 3 with ``(row + col) % hole == 0`` (the holes)."""
    tiles = {}
    xmin, ymin, xmax, ymax = UTM_EXTENT
    for level, res in enumerate(UTM_RESOLUTIONS):
        span = 256 * res
        rows = range(
            math.floor((UTM_ORIGIN[1] - ymax) / span), math.ceil((UTM_ORIGIN[1] - ymin) / span)
        )
        cols = range(
            math.floor((xmin - UTM_ORIGIN[0]) / span), math.ceil((xmax - UTM_ORIGIN[0]) / span)
        )
        for row in rows:
            for col in cols:
                if level == 3 and (row + col) % hole == 0:
                    continue
                tiles[(level, row, col)] = png_tile(level * 1_000_000 + row * 1000 + col)
    return tiles


def utm_cache(root: Path, tiles: dict[Key, bytes]) -> Path:
    """A Compact V2 cache of ``tiles`` in the custom EPSG:25832 scheme, written by MapProxy."""
    mapproxy_v2_cache(root, tiles, levels=len(UTM_RESOLUTIONS))
    lods = [(level, res / 0.0254 * 96, res) for level, res in enumerate(UTM_RESOLUTIONS)]
    (root / "conf.xml").write_text(conf_xml(lods, origin=UTM_ORIGIN, wkid=25832, latest_wkid=25832))
    (root / "conf.cdi").write_text(conf_cdi(UTM_EXTENT))
    return root


class Served(NamedTuple):
    """A running ``cachestatus serve``: the URLs it printed, and its process."""

    page: str
    map_server: str
    wmts: str
    process: subprocess.Popen[str]

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self.page.removesuffix("/report")


@contextmanager
def serving(args: Sequence[str], log: IO[str] | int = subprocess.DEVNULL) -> Iterator[Served]:
    """``cachestatus serve ARGS --port 0`` in a subprocess, its request log to ``log``; stopped
    with SIGINT on exit (its exit code is left on the process)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cachestatus.cli", "serve", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert process.stdout is not None
        urls = [process.stdout.readline().strip() for _ in range(3)]
        assert all(urls), f"serve printed {urls} and exited with {process.wait(10)}"
        yield Served(*urls, process)
    finally:
        stop_program(process, signal.SIGINT, 20)


def burst(base: str, paths: Sequence[str], in_flight: int) -> list[tuple[int, bytes]]:
    """GET every path of ``paths`` from the server at ``base``, ``in_flight`` requests at a time
    (one keep-alive connection per thread); the status and body of each, in order."""
    url = urlsplit(base)
    answers: list[tuple[int, bytes]] = [(0, b"")] * len(paths)
    lock = threading.Lock()
    todo = iter(range(len(paths)))

    def work() -> None:
        connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)
        try:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                connection.request("GET", paths[i])
                response = connection.getresponse()
                answers[i] = (response.status, response.read())
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(in_flight)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers
