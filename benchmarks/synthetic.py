"""Build synthetic Compact V2 caches for benchmarks: real headers and indexes, sparse tile bodies.

Only the header and index of each bundle hold real bytes; the file is then extended to the size its
index implies with ``truncate`` (a sparse file on most filesystems), so a 20,000-bundle cache costs
about 2.6 GB of page cache, not hundreds of GB of tiles.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

WEB_MERCATOR_HALF = 20037508.342787001
HEADER = struct.pack("<4I3Q6I", 3, 16384, 0, 5, 0, 0, 40, 0, 3, 16, 16384, 5, 131072)


def conf_xml(levels: int) -> str:
    lods = []
    for level in range(levels):
        res = 2 * WEB_MERCATOR_HALF / 256 / 2**level
        lods.append(
            f"<LODInfo><LevelID>{level}</LevelID><Scale>{res * 96 / 0.0254!r}</Scale>"
            f"<Resolution>{res!r}</Resolution></LODInfo>"
        )
    return (
        "<?xml version='1.0' encoding='utf-8'?><CacheInfo><TileCacheInfo>"
        "<SpatialReference><WKID>102100</WKID><LatestWKID>3857</LatestWKID></SpatialReference>"
        f"<TileOrigin><X>{-WEB_MERCATOR_HALF!r}</X><Y>{WEB_MERCATOR_HALF!r}</Y></TileOrigin>"
        "<TileCols>256</TileCols><TileRows>256</TileRows><DPI>96</DPI>"
        f"<LODInfos>{''.join(lods)}</LODInfos></TileCacheInfo>"
        "<TileImageInfo><CacheTileFormat>PNG</CacheTileFormat></TileImageInfo>"
        "<CacheStorageInfo><StorageFormat>esriMapCacheStorageModeCompactV2</StorageFormat>"
        "<PacketSize>128</PacketSize></CacheStorageInfo></CacheInfo>"
    )


def build(root: Path, bundles: int, level: int = 15, seed: int = 0) -> Path:
    """A cache of at least ``bundles`` bundles in a square block at ``level``; returns its folder.

    ``conf.cdi`` is the block's extent, so every bundle is expected and none is missing.
    """
    side = math.ceil(math.sqrt(bundles))
    if side > 2 ** (level - 7):
        raise ValueError(f"level {level} has fewer than {bundles} bundles")
    rng = np.random.default_rng(seed)
    folder = root / f"_alllayers/L{level:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    (root / "conf.xml").write_text(conf_xml(level + 2))
    res = 2 * WEB_MERCATOR_HALF / 256 / 2**level
    span = 128 * 256 * res
    xmin, ymax = -WEB_MERCATOR_HALF, WEB_MERCATOR_HALF
    (root / "conf.cdi").write_text(
        f"<EnvelopeN><XMin>{xmin!r}</XMin><YMin>{ymax - side * span!r}</YMin>"
        f"<XMax>{xmin + side * span!r}</XMax><YMax>{ymax!r}</YMax></EnvelopeN>"
    )
    for i in range(side * side):
        r, c = divmod(i, side)
        sizes = rng.integers(200, 3000, 16384, dtype=np.uint64)
        sizes[rng.random(16384) < 0.1] = 0  # some holes: a realistic, partial cache
        ends = 131136 + np.cumsum(sizes + 4)
        offsets = np.where(sizes > 0, ends - sizes, 4)
        index = (offsets | (sizes << np.uint64(40))).astype("<u8")
        path = folder / f"R{r * 128:04x}C{c * 128:04x}.bundle"
        with open(path, "wb") as f:
            f.write(HEADER)
            f.write(index.tobytes())
            f.truncate(int(ends[-1]))
    return root


def floor_script() -> str:
    """The floor: one single-threaded process that opens each bundle and reads its index."""
    return (
        "import os, sys\n"
        "n = 0\n"
        "layers = os.path.join(sys.argv[1], '_alllayers')\n"
        "for level in sorted(os.listdir(layers)):\n"
        "    for e in os.scandir(os.path.join(layers, level)):\n"
        "        if e.name.endswith('.bundle'):\n"
        "            fd = os.open(e.path, os.O_RDONLY)\n"
        "            n += len(os.read(fd, 131136))\n"
        "            os.close(fd)\n"
        "print(n)\n"
    )


if __name__ == "__main__":
    import sys

    build(Path(sys.argv[1]), int(sys.argv[2]))
