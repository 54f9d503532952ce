"""``cachestatus html``: the stored status of a cache as one self-contained HTML file, with the
cache's own coarse tiles as the map's background."""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NotOurs, StatusNotFound, UsageError
from ..formats import CacheReader
from ..request import CacheSource
from ..store.reader import read_levels
from ..tilecheck import VerifyReport
from .background import DEFAULT_BUDGET, Background, background_mosaic, background_tiles
from .data import STATES, level_bundles, page_data
from .page import GENERATOR, render_page

#: ``TaskStatus`` rows a page embeds per level, at most (about 75 bytes each): a national
#: cache's finest level keeps its problem and partial bundles first, MISSING ones last (its
#: MissingAreas still show them).
MAX_EMBEDDED_ROWS = 50_000
#: Which rows a capped level keeps first: problems, then partial, complete, empty, missing.
_PRIORITY = ("CORRUPT", "IN_PROGRESS", "PARTIAL", "COMPLETE", "EMPTY", "MISSING")
#: The ``--background`` choices.
BACKGROUNDS = ("tiles", "mosaic", "none")


@dataclass(frozen=True)
class HtmlResult:
    """What ``cachestatus html`` wrote."""

    path: Path
    size: int
    levels: list[int]
    background_levels: list[int]
    background_tiles: int
    background_bytes: int
    bundles_embedded: int
    bundles_total: int
    problems: int
    #: Bad tiles and unreadable bundles the deep check found (``None``: not run).
    verify_problems: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` document (keys may be added, never renamed)."""
        return {
            "path": str(self.path),
            "bytes": self.size,
            "levels": self.levels,
            "background_levels": self.background_levels,
            "background_tiles": self.background_tiles,
            "background_bytes": self.background_bytes,
            "bundles_embedded": self.bundles_embedded,
            "bundles_total": self.bundles_total,
            "problems": self.problems,
            "verify_problems": self.verify_problems,
        }


def capped(bundles: dict[str, Any], limit: int) -> dict[str, Any]:
    """One level's columns (:func:`~.data.level_bundles`) with at most ``limit`` rows, those
    of :data:`_PRIORITY` first, in their stored order, and a ``note`` saying what was left out."""
    count = bundles["count"]
    if count <= limit:
        return bundles
    rank = [_PRIORITY.index(state) for state in STATES]
    order = sorted(range(count), key=lambda i: rank[bundles["status"][i]])
    kept = sorted(order[:limit])
    columns = {
        name: [values[i] for i in kept]
        for name, values in bundles.items()
        if isinstance(values, list) and len(values) == count
    }
    renumbered = {
        str(j): bundles["detail"][str(i)] for j, i in enumerate(kept) if str(i) in bundles["detail"]
    }
    note = (
        f"{limit:,} of {count:,} bundles of level {bundles['level']} embedded "
        f"({', '.join(_PRIORITY[:-1])} first); MissingAreas show the missing tiles"
    )
    return {**bundles, **columns, "detail": renumbered, "note": note}


#: What to do when there is no status store, as ``html`` says it.
HTML_REMEDY = (
    "run `cachestatus rebuild` first, or add --rebuild to scan before writing the page (or give "
    "--status with the store's path)"
)


def find_store(
    reader: CacheReader, status: str | os.PathLike[str] | None, remedy: str = HTML_REMEDY
) -> Path:
    """The status store the page shows: ``status``, else the cache's own (as ``summary``
    finds it: :func:`~cachestatus.operations.store_to_read`).

    Raises:
        StatusNotFound: there is none (the message says so, then ``remedy``).
    """
    from ..operations import store_to_read

    store = store_to_read(reader, status)
    if not store.exists():
        raise StatusNotFound(f"{store}: no status store here; {remedy}")
    return store


def page_path(reader: CacheReader, store: Path, out: str | os.PathLike[str] | None) -> Path:
    """Where the page goes: ``out``, else ``<store stem>.html`` beside the store. Never inside
    the cache, but for the page beside its default store (where ArcGIS keeps the status); a
    file there is replaced only when an earlier page wrote it.

    Raises:
        NotOurs: the place is the cache's, or holds a file cachestatus did not write.
        UsageError: the place is a folder, or its folder does not exist.
    """
    from ..operations import status_path
    from ..store import FORMATS
    from ..store.guard import check_outside_cache

    path = Path(out) if out is not None else store.with_suffix(".html")
    beside_default = [status_path(reader, None, fmt).with_suffix(".html") for fmt in FORMATS]
    check_outside_cache(path, reader.root, beside_default)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise UsageError(f"{path}: is not a file; give --out a file name")
    if not path.parent.is_dir():
        raise UsageError(f"{path}: its folder {path.parent} does not exist")
    if path.exists():
        with path.open("rb") as existing:
            head = existing.read(4096)
        if GENERATOR.encode() not in head:
            raise NotOurs(
                f"{path}: exists and is not a page cachestatus wrote; choose another --out"
            )
    return path


def write_html(
    source: CacheSource,
    status: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    *,
    levels: Sequence[int] | None = None,
    background: str = "tiles",
    budget: int = DEFAULT_BUDGET,
    title: str | None = None,
    max_rows: int = MAX_EMBEDDED_ROWS,
    verified: VerifyReport | None = None,
) -> HtmlResult:
    """Write the report page of ``source``'s stored status (see :func:`render_page`).

    Args:
        source: the cache.
        status: the status store (default: the cache's own, as ``summary`` finds it).
        out: the page's path (default: ``<store stem>.html`` beside the store).
        levels: only these levels (default: every level of the store).
        background: ``tiles`` (stored tiles of whole coarse levels), ``mosaic`` (one level
            composited into one image) or ``none``.
        budget: stored bytes of background tiles (or of the mosaic), at most.
        title: the page's title.
        max_rows: ``TaskStatus`` rows embedded per level, at most.
        verified: the deep check's findings (:func:`~cachestatus.operations.run_verify`),
            listed among the problems with their tiles.

    Raises:
        StatusNotFound: there is no status store (run ``cachestatus rebuild`` first).
        UsageError: an unknown background, or an output that is a folder or in none.
        NotOurs: the output lies in the cache, or exists and is not a page cachestatus wrote.
    """
    if background not in BACKGROUNDS:
        raise UsageError(f"--background {background!r}: use one of {', '.join(BACKGROUNDS)}")
    with source.open() as reader:
        store = find_store(reader, status)
        stored = read_levels(store)  # once, for the table, each level and the background
        data = page_data(
            store,
            reader,
            levels=levels,
            verified=verified,
            cache=os.fspath(source.path),
            stored_levels=stored,
        )
        target = page_path(reader, store, out)
        resolutions = {lv.level: lv.resolution for lv in stored}
        embedded = {
            level: capped(level_bundles(store, level, resolutions.get(level, 1.0)), max_rows)
            for level in sorted({*data["bundleLevels"], *data["areaLevels"]})
        }
        tiles = Background(note="none asked for (--background none)")
        if background == "tiles":
            tiles = background_tiles(reader, budget, stored)
        elif background == "mosaic":
            tiles = background_mosaic(reader, budget, stored)
    notes = tuple(b["note"] for b in embedded.values() if "note" in b)
    page = render_page(data, bundles=embedded, background=tiles, title=title, notes=notes)
    encoded = page.encode("utf-8")
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        temporary.write_bytes(encoded)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return HtmlResult(
        path=target,
        size=len(encoded),
        levels=[row["level"] for row in data["levels"]],
        background_levels=list(tiles.levels),
        background_tiles=tiles.tile_count,
        background_bytes=tiles.stored_bytes,
        bundles_embedded=sum(len(b["row"]) for b in embedded.values()),
        bundles_total=sum(b["count"] for b in embedded.values()),
        problems=len(data["problems"]),
        verify_problems=None if verified is None else len(verified.problems),
    )
