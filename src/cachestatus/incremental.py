"""Incremental rebuild: the rows of bundles unchanged since the previous rebuild are reused,
only the others are read.

A rebuild's store keeps, beside ``TaskStatus``, a ``BundleFiles`` table: per bundle file read,
its exact size and stamp as read (``st_mtime_ns`` for a local file, the ETag for an object), the
block of its row and the holes it sent (:func:`bundle_files`). The next rebuild of the same
request (the same cache, levels, counts and store, and the same tiling scheme and full extent:
:func:`same_request`) by the same major version loads them (:func:`previous_status`) and splits
its listing (:meth:`Previous.split`): a bundle whose listed size and stamp equal those it was
read with has its previous row and holes handed to the folds as they are; every other bundle
is read as in a full rebuild. Always read: bundles new in the listing, bundles locked now,
bundles whose previous row is ``CORRUPT`` or ``IN_PROGRESS`` (no ``BundleFiles`` row is kept
for them), and bundles whose mtime lies less than :data:`RACY_NS` before the previous run's
start, or after it: a file written in the same clock tick as that scan may change again
without moving its mtime (and FAT or SMB times are coarse). Bundles gone from the listing get
no row from here: they become ``MISSING`` by the normal path. Virtual bundles (formats without
bundle files) and codecs that do not tell a stamp are always read.

The result equals a full rebuild's: the same rows, totals and missing areas, since a reused
bundle brings the very row and holes its reading gave.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import __version__
from .formats.base import BundleFile, CacheReader, LevelListing
from .missing_areas import HOLE, tagged_holes
from .models import BUNDLE_SIZE, BundleState, Problem, RowBatch
from .request import Execution
from .scan import Listing, ScanBatch
from .store import read_jobs
from .store.reader import read_bundle_files
from .store.records import BundleFileRows, decode_holes, encode_holes

#: A bundle whose mtime lies less than this before the previous run's start (or after it) is
#: read again: it may have changed since without moving its mtime (nanoseconds).
RACY_NS = 2_000_000_000
#: Reused rows handed to the folds at a time.
REUSED_BATCH = 10_000
#: Previous rows whose bundles are always read again.
_REREAD = {BundleState.CORRUPT.value, BundleState.IN_PROGRESS.value}


def tiling(reader: CacheReader) -> str:
    """A digest of the cache's tiling scheme and full extent: rows depend on them, so a rebuild
    records it with its request and reuses rows only under the same one."""
    text = repr((reader.scheme, reader.full_extent))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def same_request(previous: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether two recorded requests (a job's ``parameters``) ask the same question: equal but
    for how they run (:class:`~cachestatus.request.Execution`'s keys)."""
    running = Execution().to_json().keys()
    current = json.loads(json.dumps(current))  # as the Jobs table holds it
    return {k: v for k, v in previous.items() if k not in running} == {
        k: v for k, v in current.items() if k not in running
    }


def _keys(rows: RowBatch | BundleFileRows) -> Iterator[tuple[int, int, int]]:
    """The bundle keys of rows, as tuples (equal to :class:`~cachestatus.models.BundleKey`)."""
    return zip(rows.level.tolist(), rows.row.tolist(), rows.col.tolist(), strict=True)


def _major(version: str) -> str:
    return version.split(".", 1)[0]


def _take(rows: RowBatch, which: npt.NDArray[np.intp], **replaced: Any) -> RowBatch:
    """The rows at the positions ``which``, with the columns ``replaced`` given whole."""
    columns: dict[str, Any] = {}
    for name in RowBatch.COLUMNS:
        values = getattr(rows, name)
        columns[name] = (
            [values[i] for i in which.tolist()] if isinstance(values, list) else values[which]
        )
    return RowBatch(**{**columns, **replaced})


@dataclass
class Previous:
    """The previous rebuild's rows of the bundle files it read, aligned with their
    ``BundleFiles`` rows, and when it started."""

    rows: RowBatch
    files: BundleFileRows
    #: When the previous rebuild started, nanoseconds since the epoch.
    started_ns: int

    def __post_init__(self) -> None:
        self._where = {key: i for i, key in enumerate(_keys(self.files))}

    def _reusable(self, bundle: BundleFile) -> int | None:
        """The position of the bundle's previous row when it can be reused."""
        at = self._where.get(bundle.key)
        if at is None or bundle.locked or bundle.payload is not None:
            return None
        size, stamp = bundle.size, bundle.stamp
        if stamp is None:  # a local listing: one stat, as `find -printf '%s %T@'` does
            try:
                st = os.stat(bundle.path)
            except OSError:
                return None
            size, stamp = st.st_size, st.st_mtime_ns
        if size != self.files.size[at] or str(stamp) != self.files.stamp[at]:
            return None
        if isinstance(stamp, int) and stamp >= self.started_ns - RACY_NS:
            return None
        return at

    def split(self, listing: Listing) -> Listing:
        """The listing of the bundles to read; the rows of the others, reused, in its
        :attr:`~cachestatus.scan.Listing.reused`."""
        to_read: dict[int, list[BundleFile]] = {p.lod.level: [] for p in listing.plans}
        kept: list[int] = []
        for bundle in listing.bundles():
            at = self._reusable(bundle)
            if at is None:
                to_read[bundle.key.level].append(bundle)
            else:
                kept.append(at)
        return Listing(
            listing.reader,
            listing.plans,
            listing.policy,
            [_Kept(level, bundles) for level, bundles in to_read.items()],
            count=sum(len(b) for b in to_read.values()),
            problems=listing.problems,
            reused=list(self._batches(np.array(kept, dtype=np.intp))),
        )

    def _batches(self, kept: npt.NDArray[np.intp]) -> Iterator[ScanBatch]:
        for start in range(0, len(kept), REUSED_BATCH):
            which = kept[start : start + REUSED_BATCH]
            files = self.files.take(which)
            holes = [
                (level, decode_holes(text))
                for level, text in zip(files.level.tolist(), files.holes, strict=True)
                if text
            ]
            yield ScanBatch(_take(self.rows, which), tagged_holes(holes), files=files)


class _Kept(LevelListing):
    """The bundles of a level left to read."""

    def __init__(self, level: int, bundles: list[BundleFile]) -> None:
        self.level, self.bundles = level, bundles

    @property
    def count(self) -> int:
        """How many."""
        return len(self.bundles)

    def __iter__(self) -> Iterator[BundleFile | Problem]:
        """The bundles, in the listing's order."""
        return iter(self.bundles)


def _nanoseconds(when: datetime) -> int:
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def previous_status(target: Path, recorded: Mapping[str, Any], mode: str) -> Previous | None:
    """What the store at ``target`` lets a rebuild reuse: ``None`` unless its last job is a
    successful ``mode`` job of the same request (``recorded``: the ``parameters`` the new job
    records) by the same major version, and the store keeps ``BundleFiles``."""
    if not target.exists():
        return None
    try:
        jobs = read_jobs(target)
        last = jobs[-1] if jobs else None
        if (
            last is None
            or last.mode != mode
            or not last.outcome.startswith("succeeded")
            or _major(last.tool_version) != _major(__version__)
            or not same_request(json.loads(last.parameters), recorded)
        ):
            return None
        stored = read_bundle_files(target)
    except Exception:  # an unreadable old store (pyogrio's errors, bad JSON): a full scan
        return None
    if stored is None:
        return None
    files, rows = stored
    files.stamp = [s or "" for s in files.stamp]
    position = {key: i for i, key in enumerate(_keys(rows))}
    pairs = [
        (f, r)
        for f, key in enumerate(_keys(files))
        for r in [position.get(key)]
        if r is not None and rows.state[r] not in _REREAD
    ]
    file_at = np.array([f for f, _ in pairs], dtype=np.intp)
    row_at = np.array([r for _, r in pairs], dtype=np.intp)
    files = files.take(file_at)
    blocks = np.column_stack([files.row0, files.row1, files.col0, files.col1]).reshape(-1, 4)
    rows = _take(rows, row_at, tiles=blocks)
    return Previous(rows, files, _nanoseconds(last.started))


def bundle_files(batch: ScanBatch) -> BundleFileRows:
    """The ``BundleFiles`` rows of a batch: those it reused, or those of its rows whose bundle
    file told its stamp, with the holes it sent for them."""
    if batch.files is not None:
        return batch.files
    rows = batch.rows
    known = np.array([s is not None for s in batch.stamps], dtype=np.bool_).reshape(-1)
    which = np.flatnonzero(known)
    level, row, col = rows.level[which], rows.row[which], rows.col[which]
    tiles = rows.tiles[which]
    holes = _holes_by_bundle(batch.holes)
    return BundleFileRows(
        level=level,
        row=row,
        col=col,
        size=rows.file_bytes[which],
        stamp=[str(batch.stamps[i]) for i in which.tolist()],
        row0=tiles[:, 0],
        row1=tiles[:, 1],
        col0=tiles[:, 2],
        col1=tiles[:, 3],
        holes=[
            holes.get(key, "")
            for key in zip(level.tolist(), row.tolist(), col.tolist(), strict=True)
        ],
    )


def _holes_by_bundle(tagged: npt.NDArray[np.int64]) -> dict[tuple[int, int, int], str]:
    """The tagged holes of a batch, encoded per bundle (:func:`encode_holes`), by bundle key:
    a hole's bundle is that of its first tile (a block's top-left, a row's first column)."""
    if not len(tagged):
        return {}
    col = np.where(tagged[:, 1] == HOLE, tagged[:, 4], tagged[:, 3])
    keys = np.column_stack(
        [tagged[:, 0], tagged[:, 2] - tagged[:, 2] % BUNDLE_SIZE, col - col % BUNDLE_SIZE]
    )
    order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0]))  # stable: rows keep their order
    keys, tagged = keys[order], tagged[order]
    starts = np.flatnonzero(np.r_[True, (keys[1:] != keys[:-1]).any(axis=1)])
    ends = np.r_[starts[1:], len(keys)]
    return {
        (int(keys[s, 0]), int(keys[s, 1]), int(keys[s, 2])): encode_holes(tagged[s:e, 1:])
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
    }


__all__ = [
    "RACY_NS",
    "Previous",
    "bundle_files",
    "previous_status",
    "same_request",
    "tiling",
]
