"""The contract's tiles, and their caches in every registered format, built once a session.

The tiles (rows counted down, on the Web Mercator grid; the full extent declared by each
format, its edges inside tiles so that no rounding of degrees moves a tile in or out):

- L02, one bundle: all 16 tiles, 9 of them expected: ``COMPLETE`` with 7 stray;
- L08, 2 x 2 bundles: ``R0000C0000`` full (16,384 byte-identical tiles, as ocean tiles are);
  ``R0000C0080`` a checkerboard of 8 x 8 blocks over its top half, partly outside the extent:
  ``PARTIAL`` with strays; ``R0080C0000`` absent: ``MISSING``; ``R0080C0080`` two tiles
  written then removed by the writer: a bundle file holding no tile where bundles are files;
- L12, 32 x 32 bundles: scattered tiles, most bundles ``MISSING``, some ``PARTIAL``, a few
  wholly outside the extent holding only strays: ``EMPTY``.

Every tile but the L08 ocean ones is a distinct PNG (its address in a ``tEXt`` chunk).
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import cachestatus
from cachestatus import formats
from tests.builders import BuiltCache, build
from tests.helpers import WEB_MERCATOR_HALF
from tests.status_rows import task_rows

KINDS = formats.names()
#: LODs 0-12 where a format declares LODs.
LEVELS = 13
LEVELS_WITH_TILES = (2, 8, 12)
#: One tile of level 12, in metres.
TILE_12 = 2 * WEB_MERCATOR_HALF / 2**12


def at_12(col: float, row: float) -> tuple[float, float]:
    """The EPSG:3857 point at (fractional) column and row ``col``, ``row`` of level 12."""
    return -WEB_MERCATOR_HALF + col * TILE_12, WEB_MERCATOR_HALF - row * TILE_12


def box_12(cols: tuple[float, float], rows: tuple[float, float]) -> tuple[float, ...]:
    """The box between level-12 columns ``cols`` and rows ``rows``: xmin, ymin, xmax, ymax."""
    (xmin, ymax), (xmax, ymin) = at_12(cols[0], rows[0]), at_12(cols[1], rows[1])
    return xmin, ymin, xmax, ymax


#: The full extent: the grid's west and north edges, east and south edges inside tiles.
EXTENT = box_12((0, 3048.25), (0, 3000.25))
#: A selection area inside it, its edges inside tiles at every level.
AREA = box_12((1000.5, 2600.5), (500.5, 2500.5))
REMOVED = ((8, 130, 130), (8, 200, 250))

#: Formats whose bundles are virtual (128 x 128 blocks of the grid, not files): a bundle
#: holding no tile is not there to be ``EMPTY``; it is ``MISSING`` (docs/formats.md).
VIRTUAL_BUNDLES = frozenset({"mbtiles", "geopackage", "exploded", "xyz", "tms", "pmtiles"})
assert set(KINDS) >= VIRTUAL_BUNDLES, VIRTUAL_BUNDLES - set(KINDS)


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png(text: str) -> bytes:
    """A 1 x 1 PNG carrying ``text`` in a ``tEXt`` chunk: a valid image, distinct per text."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)  # 1 x 1, 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"tEXt", b"Comment\x00" + text.encode())
        + _chunk(b"IDAT", zlib.compress(b"\x00\x00\x5a\xa0\xff"))
        + _chunk(b"IEND", b"")
    )


def contract_tiles() -> dict[tuple[int, int, int], bytes]:
    """The contract's tiles keyed ``(level, row, col)``; see the module's docstring."""
    keys = [(2, row, col) for row in range(4) for col in range(4)]
    keys += [
        (8, row, col)
        for row in range(64)
        for col in range(128, 256)
        if (row // 8 + col // 8) % 2 == 0
    ]
    rng = random.Random(11)
    keys += [(12, rng.randrange(3200), rng.randrange(3200)) for _ in range(150)]
    keys += [(12, 100, 3100), (12, 101, 3101), (12, 5, 3150)]
    tiles = {key: png("L{}/R{}/C{}".format(*key)) for key in keys}
    ocean = png("ocean")
    tiles.update({(8, row, col): ocean for row in range(128) for col in range(128)})
    return tiles


TILES = contract_tiles()
T = TypeVar("T")


class Rebuilt(NamedTuple):
    """What a rebuild found: the ``TaskStatus`` rows by bundle name, and per level the
    expected, present and stray tiles and the tile bytes."""

    rows: dict[str, dict[str, Any]]
    levels: dict[int, tuple[int, int, int, int]]


class Builds:
    """Each format's cache, built on first use and kept for the session, and what was found
    in it, computed once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.found: dict[tuple[str, ...], Any] = {}

    def once(self, key: tuple[str, ...], compute: Callable[[], T]) -> T:
        """``compute()``, computed the first time ``key`` is asked for."""
        if key not in self.found:
            self.found[key] = compute()
        result: T = self.found[key]
        return result

    def cache(self, kind: str) -> BuiltCache:
        """The cache of ``kind`` holding :data:`TILES`."""
        return self.once(
            ("cache", kind),
            lambda: build(
                kind, self.root / kind, TILES, levels=LEVELS, extent=EXTENT, removed=REMOVED
            ),
        )

    def rebuild(self, kind: str, sizes: bool) -> Rebuilt:
        """The rebuild of the cache of ``kind``, its status kept outside the cache."""

        def rebuild() -> Rebuilt:
            cache = self.cache(kind)
            store = self.root / "status" / f"{kind}-{sizes}.gdb"
            report = cachestatus.rebuild(cache.path, store, workers=1, sizes=sizes, **cache.opening)
            assert not report.problems, report.problems
            levels = {
                lv.level: (lv.tiles_expected, lv.tiles_present, lv.tiles_stray, lv.tile_bytes)
                for lv in report.levels
            }
            return Rebuilt(task_rows(report.status_path), levels)

        return self.once(("rebuild", kind, str(sizes)), rebuild)


def linked_copy(source: Path, target: Path, change: Callable[[Path, Path], bytes | None]) -> Path:
    """A copy of the cache file or folder ``source`` at ``target``: hard links to its files,
    but for those that ``change`` rewrites (given a file's path relative to ``source`` and its
    path; ``None``: kept), which are new files. Nothing is written through a link: the
    session's cache stays as built."""
    if source.is_file():
        pairs = [(Path(source.name), source, target)]
    else:
        target.mkdir(parents=True)
        for folder in (p for p in source.rglob("*") if p.is_dir()):
            (target / folder.relative_to(source)).mkdir(parents=True, exist_ok=True)
        pairs = [
            (p.relative_to(source), p, target / p.relative_to(source))
            for p in source.rglob("*")
            if p.is_file()
        ]
    target.parent.mkdir(parents=True, exist_ok=True)
    for relative, path, dest in pairs:
        changed = change(relative, path)
        if changed is None:
            dest.hardlink_to(path)
        else:
            dest.write_bytes(changed)
    return target
