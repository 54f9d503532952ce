"""A cache whose report page shows every kind of bundle the browser tests look for, written by
MapProxy (Compact V2, Web Mercator, 10 LODs, the world as its full extent):

- levels 0-3 complete, each tile a small PNG of its own colour (the background);
- level 8 (2 x 2 bundles): R0000C0000 and R0000C0080 PARTIAL, R0080C0000 CORRUPT (its file
  truncated after writing), R0080C0080 MISSING (no file); MissingAreas on every level past 3;
- a file in L08 named like a bundle that is none (``BAD_NAME``);
- tile L08/R3/C6 holds an HTML error page, not an image (``BAD_TILE``, which ``verify`` finds;
  it is not among ``tiles``, the images the map may draw).
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import NamedTuple

from click.testing import CliRunner

from cachestatus.cli import main
from tests.builders import build

LEVELS = 10
#: The bundle whose file is cut short, and the one that has no file.
CORRUPT_BUNDLE = "L08/R0080C0000"
MISSING_BUNDLE = "L08/R0080C0080"
BAD_NAME = "R00zzC0000.bundle"
#: The tile that holds an HTML page, and its bytes.
BAD_TILE = (8, 3, 6)
HTML_PAGE = b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>"


class ReportCache(NamedTuple):
    """The cache, its status store and the tiles written (keyed (level, row, col))."""

    cache: Path
    status: Path
    tiles: dict[tuple[int, int, int], bytes]


def png(colour: tuple[int, int, int]) -> bytes:
    """A 256 x 256 PNG of one colour."""
    from PIL import Image

    out = BytesIO()
    Image.new("RGB", (256, 256), colour).save(out, "PNG")
    return out.getvalue()


def _tiles() -> dict[tuple[int, int, int], bytes]:
    tiles = {}
    for level in range(4):
        for row in range(2**level):
            for col in range(2**level):
                tiles[level, row, col] = png((40 * level, 120 + 8 * row, 200 - 8 * col))
    for row, col in ((3, 5), (100, 7), (20, 130), (127, 255), (140, 20)):
        tiles[8, row, col] = png((250, 250, 120))
    return tiles


def rebuild(cache: Path, status: Path) -> None:
    """``cachestatus rebuild`` of ``cache`` into ``status``."""
    result = CliRunner().invoke(main, ["rebuild", str(cache), "--status", str(status)])
    assert result.exit_code == 0, result.output


def report_cache(root: Path) -> ReportCache:
    """Write the cache under ``root``, damage one bundle, and rebuild its status."""
    tiles = _tiles()
    cache = build("compact-v2", root / "cache", {**tiles, BAD_TILE: HTML_PAGE}, levels=LEVELS).path
    bundle = cache / "_alllayers" / "L08" / "R0080C0000.bundle"
    bundle.write_bytes(bundle.read_bytes()[:40])
    (bundle.parent / BAD_NAME).write_bytes(b"not a bundle")
    status = root / "Status.gdb"
    rebuild(cache, status)
    return ReportCache(cache, status, tiles)
