"""Builders of test caches: ``conf.xml``/``conf.cdi`` text and bundles written by MapProxy.

Bundles come from MapProxy's ``CompactCacheV2`` (an independent writer); the synthetic writer
below exists only for benchmarks and large parallel tests, where MapProxy would be too slow.
Test doubles of :class:`~cachestatus.formats.bytesource.ByteSource`: bytes in memory for the
decoders, and a source that a caching job writes while it is read.
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

from cachestatus.formats.arcgis_layout import FolderLayout
from cachestatus.formats.bytesource import ByteSource, Version
from cachestatus.models import LOD, SpatialReference, TilingScheme

WEB_MERCATOR_HALF = 20037508.342787001
SAMPLE_CACHE = Path(__file__).parent / "data" / "esri" / "sample_cache"
V2_HEADER = struct.pack("<4I3Q6I", 3, 16384, 0, 5, 0, 0, 40, 0, 3, 16, 16384, 5, 131072)


def web_mercator_lods(count: int) -> list[tuple[int, float, float]]:
    """(level, scale, resolution) of the first ``count`` Web Mercator levels at 96 DPI."""
    out = []
    for level in range(count):
        res = 2 * WEB_MERCATOR_HALF / 256 / 2**level
        out.append((level, res * 96 / 0.0254, res))
    return out


def web_mercator_scheme(levels: int = 24) -> TilingScheme:
    """The Web Mercator tiling scheme of ArcGIS Online, 256 px tiles, ``levels`` LODs."""
    return TilingScheme(
        SpatialReference(102100, 3857),
        -WEB_MERCATOR_HALF,
        WEB_MERCATOR_HALF,
        256,
        256,
        96.0,
        tuple(LOD(*lod) for lod in web_mercator_lods(levels)),
    )


def conf_xml(
    lods: Iterable[tuple[int, float, float]],
    origin: tuple[float, float] = (-WEB_MERCATOR_HALF, WEB_MERCATOR_HALF),
    tile_size: int = 256,
    wkid: int | None = 102100,
    latest_wkid: int | None = 3857,
    wkt: str | None = None,
    storage: str = "esriMapCacheStorageModeCompactV2",
    tile_format: str = "PNG",
) -> str:
    """The text of an ArcGIS ``conf.xml``."""
    lod_xml = "".join(
        f"<LODInfo><LevelID>{lv}</LevelID><Scale>{scale!r}</Scale>"
        f"<Resolution>{res!r}</Resolution></LODInfo>"
        for lv, scale, res in lods
    )
    sr = ""
    if wkt:
        sr += f"<WKT>{wkt}</WKT>"
    if wkid is not None:
        sr += f"<WKID>{wkid}</WKID>"
    if latest_wkid is not None:
        sr += f"<LatestWKID>{latest_wkid}</LatestWKID>"
    return (
        "<?xml version='1.0' encoding='utf-8'?>"
        "<CacheInfo xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance'>"
        f"<TileCacheInfo><SpatialReference>{sr}</SpatialReference>"
        f"<TileOrigin><X>{origin[0]!r}</X><Y>{origin[1]!r}</Y></TileOrigin>"
        f"<TileCols>{tile_size}</TileCols><TileRows>{tile_size}</TileRows><DPI>96</DPI>"
        f"<LODInfos>{lod_xml}</LODInfos></TileCacheInfo>"
        f"<TileImageInfo><CacheTileFormat>{tile_format}</CacheTileFormat></TileImageInfo>"
        f"<CacheStorageInfo><StorageFormat>{storage}</StorageFormat>"
        "<PacketSize>128</PacketSize></CacheStorageInfo></CacheInfo>"
    )


def conf_cdi(extent: tuple[float, float, float, float]) -> str:
    """The text of an ArcGIS ``conf.cdi`` envelope."""
    xmin, ymin, xmax, ymax = extent
    return (
        "<?xml version='1.0' encoding='utf-8'?><EnvelopeN>"
        f"<XMin>{xmin!r}</XMin><YMin>{ymin!r}</YMin><XMax>{xmax!r}</XMax><YMax>{ymax!r}</YMax>"
        "</EnvelopeN>"
    )


def write_conf(
    root: Path,
    levels: int = 20,
    extent: tuple[float, float, float, float] | None = None,
    **conf: object,
) -> Path:
    """Write ``conf.xml`` (Web Mercator, ``levels`` LODs) and, with ``extent``, ``conf.cdi``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "conf.xml").write_text(conf_xml(web_mercator_lods(levels), **conf))  # type: ignore[arg-type]
    if extent is not None:
        (root / "conf.cdi").write_text(conf_cdi(extent))
    return root


def mapproxy_v2_cache(
    root: Path,
    tiles: Mapping[tuple[int, int, int], bytes],
    levels: int = 20,
    extent: tuple[float, float, float, float] | None = None,
    version: int = 2,
) -> Path:
    """A Compact V2 (or, with ``version=1``, V1) cache written by MapProxy; ``tiles`` maps
    (level, row, col) to data."""
    from mapproxy.cache.compact import CompactCacheV1, CompactCacheV2
    from mapproxy.cache.tile import Tile
    from mapproxy.image import ImageResult

    v2 = version == 2
    write_conf(
        root, levels, extent, storage="esriMapCacheStorageModeCompact" + ("V2" if v2 else "")
    )
    cache = (CompactCacheV2 if v2 else CompactCacheV1)(str(root / "_alllayers"))
    # One store per bundle, its tiles in order: the files of storing them one by one, faster.
    bundles: dict[tuple[int, int, int], list[Tile]] = {}
    for (level, row, col), data in tiles.items():
        tile = Tile((col, row, level), ImageResult(BytesIO(data)))
        bundles.setdefault((level, row // 128, col // 128), []).append(tile)
    for bundle in bundles.values():
        assert cache.store_tiles(bundle)
    return root


def copy_sample(dest: Path) -> Path:
    """A writable copy of Esri's sample cache."""
    shutil.copytree(SAMPLE_CACHE, dest)
    for path in dest.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    dest.chmod(0o755)
    return dest


def synthetic_bundle(path: Path, sizes: np.ndarray, body: bytes | None = None) -> None:
    """A V2 bundle with a real header and index for ``sizes`` (128 x 128) and a sparse body;
    with ``body`` (every size must then be its length or 0), each tile's size prefix and bytes."""
    flat = sizes.astype(np.uint64).ravel()
    ends = 131136 + np.cumsum(flat + 4)
    offsets = np.where(flat > 0, ends - flat, 4).astype(np.uint64)
    index = (offsets | (flat << np.uint64(40))).astype("<u8")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(V2_HEADER)
        f.write(index.tobytes())
        f.truncate(int(ends[-1]))
        if body is not None:
            for offset in offsets[flat > 0].tolist():
                f.seek(offset - 4)
                f.write(len(body).to_bytes(4, "little") + body)


def synthetic_v1_bundle(path: Path, sizes: np.ndarray) -> None:
    """A Compact V1 ``.bundle`` + ``.bundlx`` pair for ``sizes`` (128 x 128, row-major): real
    size words and offsets, sparse tile bodies. Empty slots point into the reserved zone."""
    flat = sizes.astype(np.int64).T.ravel()  # the .bundlx runs column by column
    reserved = 60 + 4 * np.arange(flat.size)
    ends = 65_596 + np.cumsum(np.where(flat > 0, flat + 4, 0))
    offsets = np.where(flat > 0, ends - flat - 4, reserved)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(int(ends[-1]))
        for offset, size in zip(offsets[flat > 0].tolist(), flat[flat > 0].tolist(), strict=True):
            f.seek(offset)
            f.write(size.to_bytes(4, "little"))
    index = bytearray(16) + b"".join(int(o).to_bytes(5, "little") for o in offsets) + bytes(16)
    path.with_suffix(".bundlx").write_bytes(bytes(index))


def synthetic_sizes(rng: np.random.Generator) -> np.ndarray:
    """Tile sizes of one synthetic bundle: most bundles complete, one in four missing a random
    block of tiles, as caches whose seeding stopped or skipped an area look."""
    sizes = rng.integers(200, 3000, (128, 128))
    if rng.random() < 0.25:
        r0, c0 = rng.integers(0, 128, 2)
        sizes[r0 : r0 + rng.integers(1, 64), c0 : c0 + rng.integers(1, 64)] = 0
    return sizes


def synthetic_cache(
    root: Path,
    side: int,
    level: int = 12,
    seed: int = 0,
    sizes: Callable[[np.random.Generator], np.ndarray] = synthetic_sizes,
) -> Path:
    """A complete ``side`` x ``side`` block of synthetic bundles at ``level``, with its extent;
    ``sizes`` draws each bundle's tile sizes."""
    rng = np.random.default_rng(seed)
    res = 2 * WEB_MERCATOR_HALF / 256 / 2**level
    span = 128 * 256 * res
    extent = (
        -WEB_MERCATOR_HALF,
        WEB_MERCATOR_HALF - side * span,
        -WEB_MERCATOR_HALF + side * span,
        WEB_MERCATOR_HALF,
    )
    write_conf(root, level + 2, extent)
    for i in range(side * side):
        r, c = divmod(i, side)
        synthetic_bundle(
            root / f"_alllayers/L{level:02d}/R{r * 128:04x}C{c * 128:04x}.bundle", sizes(rng)
        )
    return root


def sparse_side(bundles: int) -> int:
    """The side of :func:`sparse_cache`'s square of at least ``bundles`` bundles."""
    return -(-math.ceil(math.sqrt(bundles)) // 4) * 4


def sparse_cache(root: Path, bundles: int, level: int = 15) -> Path:
    """At least ``bundles`` bundles at ``level`` in a square, each a hard link of one of a few
    synthetic bundle files (8, or one per 50,000 bundles: a file takes 65,000 links at most;
    every fourth misses tiles here and there): the directory grows, the disk does not.

    The square's side and the number of files are multiples of 4, so that the bundles missing
    tiles are every fourth column at every size: their cover (the level's ``MissingAreas``
    polygon) is a few strips, and what is measured is the scan, not a polygon of as many parts
    as the bundles (which other sides give: such a polygon grows with them, as it must)."""
    if (root / "_alllayers" / "done").exists():
        return root
    side = sparse_side(bundles)
    span = 128 * 256 * (2 * WEB_MERCATOR_HALF / 256 / 2**level)
    half = WEB_MERCATOR_HALF
    write_conf(root, level + 2, (-half, half - side * span, -half + side * span, half))
    rng = np.random.default_rng(0)
    models = []
    for i in range(-(-max(8, -(-bundles // 50_000)) // 4) * 4):
        sizes = rng.integers(200, 3000, (128, 128))
        if i % 4 == 0:
            sizes[rng.random((128, 128)) < 0.03] = 0
        models.append(root / f"model{i}.bundle")
        synthetic_bundle(models[-1], sizes)
    folder = root / "_alllayers" / f"L{level:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(side * side):
        r, c = divmod(i, side)
        os.link(models[i % len(models)], folder / f"R{r * 128:04x}C{c * 128:04x}.bundle")
    (root / "_alllayers" / "done").touch()
    return root


# Runs a command and prints the peak RSS (KiB) of the largest process of its tree: RUSAGE_CHILDREN
# covers every descendant that was waited for, worker processes included.
RSS_WRAPPER = (
    "import resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_rss_kib(cmd: list[str]) -> int:
    """The peak RSS (KiB) of the largest process of ``cmd``'s tree (run to its end)."""
    out = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, *cmd], check=True, capture_output=True, text=True
    ).stdout
    return int(out.strip().splitlines()[-1])


def stop_program(
    process: subprocess.Popen[Any], signum: int = signal.SIGTERM, timeout: float = 10
) -> None:
    """Stop a started program by its PID with ``signum``, killing it if it does not stop within
    ``timeout`` seconds."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tree_snapshot(root: Path) -> dict[str, tuple[bytes | None, int, int]]:
    """Every path under ``root`` (or the file itself) with its bytes, mtime and mode; folders
    with their mtime and mode (a file created and removed inside changes the mtime)."""
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    return {
        str(p): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns, p.stat().st_mode)
        for p in paths
    }


def with_tile_pages_overwritten(path: Path) -> bytes:
    """The bytes of the SQLite file ``path`` with random bytes over four leaf pages in the
    middle of its ``tiles`` table (found with SQLite's ``dbstat``); the file is opened
    read-only."""
    import random
    import sqlite3

    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        leaves = [
            n
            for (n,) in db.execute(
                "SELECT pageno FROM dbstat WHERE name = 'tiles' AND pagetype = 'leaf' "
                "ORDER BY pageno"
            )
        ]
    db.close()
    data = bytearray(path.read_bytes())
    rng = random.Random(3)
    for page in leaves[len(leaves) // 2 : len(leaves) // 2 + 4]:
        data[(page - 1) * page_size : page * page_size] = rng.randbytes(page_size)
    return bytes(data)


def bytes_read() -> int:
    """Bytes this process has received from read system calls, by the kernel's count (Linux's
    ``/proc/self/io``). Reading the counter counts too: take it twice to know that cost."""
    with open("/proc/self/io") as f:
        return int(dict(line.split(": ") for line in f.read().splitlines())["rchar"])


SRC = str(Path(__file__).resolve().parent.parent / "src")


def run_limited(
    *args: object, memory: int = 2 << 30, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``cachestatus ARGS`` in a subprocess under an address-space limit of ``memory`` bytes and
    ``timeout`` seconds: what a hostile input may cost, asserted."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [sys.executable, "-m", "cachestatus.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
        env={**os.environ, "PYTHONPATH": SRC},
    )


class MemorySource(ByteSource):
    """Bytes in memory as a source, for decoders under test."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size, self.version, self.modified = len(data), Version(len(data), 0), None

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length] if offset >= 0 else b""

    def readinto(self, offset: int, view: memoryview) -> int:
        chunk = self.read(offset, len(view))
        view[: len(chunk)] = chunk
        return len(chunk)

    def current_version(self) -> Version:
        return self.version

    def close(self) -> None:
        pass


class ChangingSource(ByteSource):
    """A source that a caching job writes while it is read: every read of it moves its version
    (the job appends a byte), its bytes are those of ``source``."""

    def __init__(self, source: ByteSource) -> None:
        self.source = source
        self.size, self.version, self.modified = source.size, source.version, source.modified
        self.reads = 0

    def read(self, offset: int, length: int) -> bytes:
        self.reads += 1
        return self.source.read(offset, length)

    def readinto(self, offset: int, view: memoryview) -> int:
        self.reads += 1
        return self.source.readinto(offset, view)

    def current_version(self) -> Version:
        return Version(self.version.size + self.reads, self.version.stamp)

    def close(self) -> None:
        self.source.close()


def changing_while_read(monkeypatch, path: Path) -> None:
    """Make the file at ``path`` of any folder cache a :class:`ChangingSource` when opened."""
    opening = FolderLayout.open

    def open_changing(layout: FolderLayout, opened: str) -> ByteSource:
        source = opening(layout, opened)
        return ChangingSource(source) if Path(opened) == path else source

    monkeypatch.setattr(FolderLayout, "open", open_changing)
