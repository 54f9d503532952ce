"""Incremental rebuild: the rows of bundles unchanged since the previous rebuild are reused,
only the others are read.

A rebuild's store keeps, beside ``TaskStatus``, a ``BundleFiles`` table: per bundle file read,
its exact size and stamp as read (``st_mtime_ns`` for a local file, the ETag for an object),
the block of its row and the holes it sent (:func:`bundle_files`). The next rebuild of the same
request (the same cache, levels, counts and store, and the same tiling scheme and full extent:
:func:`~cachestatus.request.same_request`) by the same major version loads them
(:func:`previous_status`) and splits its listing (:meth:`Previous.split`): a bundle whose
listed size and stamp equal those it was read with has its previous row and holes handed to the
folds as they are; every other bundle is read as in a full rebuild. Always read: bundles new in
the listing, bundles locked now, bundles whose previous row is ``CORRUPT`` or ``IN_PROGRESS``
(no ``BundleFiles`` row is kept for them), and bundles whose mtime lies less than
:data:`RACY_NS` before the previous run's start, or after it: a file written in the same clock
tick as that scan may change again without moving its mtime (and FAT or SMB times are coarse).
Bundles gone from the listing get no row from here: they become ``MISSING`` by the normal path.
Virtual bundles (formats without bundle files) and codecs that do not tell a stamp are always
read.

The result equals a full rebuild's: the same rows, totals and missing areas, since a reused
bundle brings the very row and holes its reading gave.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import __version__
from .formats.base import BundleFile, CacheReader, LevelListing
from .missing_areas import HOLE, MissingRows, cover_warning
from .models import BUNDLE_SIZE, BundleSet, BundleState, LevelSummary, Problem, RowBatch
from .request import same_request
from .scan import Listing, Progress, Reused, ScanBatch, ScanOutcome, scan_warnings
from .storage import RACY_NS
from .store.reader import (
    count_rows,
    read_area_counts,
    read_bundle_files,
    read_file_stamps,
    read_keys,
    read_levels,
)
from .store.records import BundleFileRows, FileStamps, JobRecord, encode_holes, picked
from .store.schema import TASK_STATUS
from .store.tables import epoch_ns, is_geopackage, major
from .store.writer import updatable

#: Reused rows handed to the folds at a time: a batch's holes, decoded as it is folded, take
#: about 4 KiB a bundle that misses tiles here and there.
REUSED_BATCH = 2_048
#: Previous rows whose bundles are always read again.
_REREAD = {BundleState.CORRUPT.value, BundleState.IN_PROGRESS.value}


def tiling(reader: CacheReader) -> str:
    """A digest of the cache's tiling scheme and full extent: rows depend on them, so a rebuild
    records it with its request and reuses rows only under the same one."""
    text = repr((reader.scheme, reader.full_extent))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _take(rows: RowBatch, which: npt.NDArray[np.intp] | slice, **replaced: Any) -> RowBatch:
    """The rows at the positions ``which`` (a slice: views of the arrays, not copies), with the
    columns ``replaced`` given whole."""
    columns = {name: picked(getattr(rows, name), which) for name in RowBatch.COLUMNS}
    return RowBatch(**{**columns, **replaced})


def _packed(keys: npt.NDArray[np.int64], levels: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Bundle keys (level, row, col; shape (n, 3)) as one int64 each: the level's position in
    ``levels`` (sorted, holding every level), then the bundle row and column (24 bits each: a
    row below 2**31 over 128-tile bundles)."""
    where = np.searchsorted(levels, keys[:, 0]).astype(np.int64)
    return (where << 48) | ((keys[:, 1] // BUNDLE_SIZE) << 24) | (keys[:, 2] // BUNDLE_SIZE)


def _positions(table: npt.NDArray[np.int64], wanted: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """Where each ``wanted`` packed key is in ``table`` (keys unique), -1 where it is not."""
    if not len(table):
        return np.full(len(wanted), -1, dtype=np.intp)
    order = np.argsort(table, kind="stable")
    at = np.minimum(np.searchsorted(table[order], wanted), len(table) - 1)
    return np.where(table[order][at] == wanted, order[at], -1)


def _key_array(*columns: Any) -> npt.NDArray[np.int64]:
    """Bundle keys from their level, row and column columns, shape (n, 3)."""
    return np.column_stack([np.asarray(c, dtype=np.int64) for c in columns]).reshape(-1, 3)


#: The listed stamp of a bundle whose stamp is not a time: never too recent.
_NOT_A_TIME = np.iinfo(np.int64).min


def _listed_stamps(
    bundles: list[BundleFile], which: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.object_], npt.NDArray[np.int64]]:
    """The size, the stamp as text and the stamp as a time (ns, :data:`_NOT_A_TIME` for an
    ETag) of the bundles at ``which``, as listed; a local listing tells none, and a bundle file
    is asked (one stat, as ``find -printf '%s %T@'`` does). Size -1: it cannot be."""
    count = len(which)
    sizes = np.full(count, -1, dtype=np.int64)
    texts = np.empty(count, dtype=object)
    times = np.full(count, _NOT_A_TIME, dtype=np.int64)
    stat = os.stat
    for out, i in enumerate(which.tolist()):
        bundle = bundles[i]
        stamp = bundle.stamp
        if stamp is None:
            try:
                st = stat(bundle.path)
            except OSError:
                continue
            sizes[out], stamp = st.st_size, st.st_mtime_ns
        elif bundle.size is not None:
            sizes[out] = bundle.size
        texts[out] = str(stamp)
        if isinstance(stamp, int):
            times[out] = stamp
    return sizes, texts, times


@dataclass
class Previous:
    """What the previous rebuild's store lets this one reuse, read from it as needed: first
    the key, size and stamp of each bundle file it read; its rows and holes only when rows are
    written again."""

    #: The store.
    store: Path
    #: Its ``BundleFiles`` rows' keys, sizes and stamps.
    stamps: FileStamps
    #: Which of them may be reused (not those of ``CORRUPT`` or ``IN_PROGRESS`` rows).
    reusable: npt.NDArray[np.bool_]
    #: Its level totals.
    levels: list[LevelSummary]
    #: When the previous rebuild started, nanoseconds since the epoch.
    started_ns: int
    #: The keys of its ``CORRUPT`` and ``IN_PROGRESS`` rows, shape (n, 3).
    reread: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    #: Set by :meth:`split`: every listed bundle is reused, and they are every bundle file the
    #: store has a row of: its rows, level totals and missing areas stand as they are.
    unchanged: bool = False
    #: Set by :meth:`split`: the positions in :attr:`stamps` of the bundle files reused.
    kept: npt.NDArray[np.intp] = field(default_factory=lambda: np.zeros(0, np.intp))
    #: The store is a GeoPackage updated in place (:meth:`StatusWriter.update
    #: <cachestatus.store.writer.StatusWriter.update>`): the reused rows stay in it, so only
    #: what the level totals and missing areas are folded from is read of them.
    in_place: bool = False
    #: Its store may be carried over as it is when nothing changed: not a GeoPackage that
    #: cannot be updated in place (:attr:`in_place`: it lacks a field this version writes, or
    #: rows may not be written into it through SQLite), which is written whole, its rows
    #: reused.
    carriable: bool = True

    def gone(self) -> tuple[npt.NDArray[np.int64], ...]:
        """The keys (levels, rows, columns) of the store's bundle file rows that :meth:`split`
        did not reuse: those of bundles changed, gone or read again."""
        left = np.ones(len(self.stamps), dtype=np.bool_)
        left[self.kept] = False
        stored = _key_array(self.stamps.level, self.stamps.row, self.stamps.col)
        keys = np.concatenate([stored[left], self.reread])
        return keys[:, 0], keys[:, 1], keys[:, 2]

    def split(self, listing: Listing) -> Listing:
        """The listing of the bundles to read; the rows of the others, reused, in its
        :attr:`~cachestatus.scan.Listing.reused` (left empty when :attr:`unchanged`)."""
        bundles = list(listing.bundles())
        keys = _bundle_keys(bundles)
        stored = _key_array(self.stamps.level, self.stamps.row, self.stamps.col)
        levels = np.unique(np.concatenate([stored[:, 0], keys[:, 0]]))
        at = _positions(_packed(stored, levels), _packed(keys, levels))
        hit = at >= 0
        at[hit] = np.where(self.reusable[at[hit]], at[hit], -1)
        plain = np.array([not b.locked and b.payload is None for b in bundles], dtype=np.bool_)
        which = np.flatnonzero((at >= 0) & plain)
        sizes, texts, times = _listed_stamps(bundles, which)
        same = (
            (sizes == self.stamps.size[at[which]])
            & (texts == self.stamps.stamp[at[which]])
            & (times < self.started_ns - RACY_NS)
        )
        which = which[same]
        self.unchanged = self.carriable and (
            len(which) == len(bundles) == sum(lv.bundles for lv in self.levels)
        )
        reused: list[Reused] = []
        if not self.unchanged:
            rows_at, reused = self._reused(at[which])
            which = which[rows_at >= 0]
        self.kept = at[which]
        read = np.ones(len(bundles), dtype=np.bool_)
        read[which] = False
        to_read: dict[int, list[BundleFile]] = {p.lod.level: [] for p in listing.plans}
        for i in np.flatnonzero(read).tolist():
            to_read[bundles[i].key.level].append(bundles[i])
        return Listing(
            listing.reader,
            listing.plans,
            listing.policy,
            [_Kept(level, kept) for level, kept in to_read.items()],
            count=int(np.count_nonzero(read)),
            problems=listing.problems,
            reused=reused,
        )

    def _reused(self, kept: npt.NDArray[np.intp]) -> tuple[npt.NDArray[np.intp], list[Reused]]:
        """The previous rows and holes of the bundle files at ``kept`` (positions in
        :attr:`stamps`), in batches; and, per position, where its row is (-1: the store has
        none, the bundle is read)."""
        stored = read_bundle_files(self.store, counts_only=self.in_place)
        assert stored is not None, "the store's BundleFiles table was read before"
        files, rows = stored
        files.stamp = [s or "" for s in files.stamp]
        file_keys = _key_array(files.level[kept], files.row[kept], files.col[kept])
        row_keys = _key_array(rows.level, rows.row, rows.col)
        levels = np.unique(np.concatenate([file_keys[:, 0], row_keys[:, 0]]))
        rows_at = _positions(_packed(row_keys, levels), _packed(file_keys, levels))
        found = rows_at >= 0
        files = files.take(kept[found])
        blocks = np.column_stack([files.row0, files.row1, files.col0, files.col1]).reshape(-1, 4)
        rows = _take(rows, rows_at[found], tiles=blocks)
        return rows_at, list(_batches(rows, files))

    def outcome(
        self, listing: Listing, warnings: Sequence[str], progress: Progress | None
    ) -> ScanOutcome:
        """What :func:`~cachestatus.scan.scan_status` finds when :attr:`unchanged`: the
        store's level totals, and the warnings a scan gives, told from the store's counts."""
        reader, plans, policy = listing.reader, listing.plans, listing.policy
        reused = len(self.stamps)
        if progress:
            progress.start(reused)
            progress.advance(reused)
        found = {p.lod.level: BundleSet(p.expected.bounds) for p in plans}
        for level, bundles in found.items():
            mine = self.stamps.level == level
            bundles.add(self.stamps.row[mine], self.stamps.col[mine])
        absent = MissingRows(plans, policy, declared_extent=reader.full_extent is not None)
        absent.recount(found, count_rows(self.store, TASK_STATUS) - reused)
        covers = [
            cover_warning(lv, n) for lv, n, exact in read_area_counts(self.store) if not exact
        ]
        return ScanOutcome(
            levels=self.levels,
            problems=listing.problems,
            warnings=[*warnings, *scan_warnings(reader, policy), *absent.warnings, *covers],
            rows=reused + absent.written,
            missing_rows_omitted=absent.omitted,
            bundles_reused=reused,
        )


def _bundle_keys(bundles: list[BundleFile]) -> npt.NDArray[np.int64]:
    """The keys of listed bundles, shape (n, 3): their ints streamed into the array, which
    ``np.array`` over the key tuples makes several times slower (one per bundle listed)."""
    keys = itertools.chain.from_iterable(b.key for b in bundles)
    return np.fromiter(keys, dtype=np.int64, count=3 * len(bundles)).reshape(-1, 3)


def _batches(rows: RowBatch, files: BundleFileRows) -> Iterator[Reused]:
    """Reused rows and their ``BundleFiles`` rows, in batches."""
    for start in range(0, len(files), REUSED_BATCH):
        which = slice(start, start + REUSED_BATCH)  # views of the rows read, not copies
        yield Reused(_take(rows, which), files.take(which))


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


#: The filter of the rows whose bundles are always read again.
_REREAD_WHERE = "status IN ({})".format(", ".join(f"'{s}'" for s in sorted(_REREAD)))


def previous_status(
    target: Path, jobs: Sequence[JobRecord], recorded: Mapping[str, Any], mode: str
) -> Previous | None:
    """What the store at ``target``, whose ``Jobs`` rows are ``jobs``, lets a rebuild reuse:
    ``None`` unless its last job is a successful ``mode`` job of the same request
    (``recorded``: the ``parameters`` the new job records) by the same major version, and the
    store keeps ``BundleFiles`` rows (a cache without bundle files has none to reuse)."""
    if not target.exists():
        return None
    try:
        last = jobs[-1] if jobs else None
        if (
            last is None
            or last.mode != mode
            or not last.outcome.startswith("succeeded")
            or major(last.tool_version) != major(__version__)
            or not same_request(json.loads(last.parameters), recorded)
        ):
            return None
        stamps = read_file_stamps(target)
        if stamps is None or not len(stamps):
            return None
        reread = _key_array(*read_keys(target, _REREAD_WHERE))
        levels = read_levels(target)
        in_place = updatable(target)
    except Exception:  # an unreadable old store (pyogrio's errors, bad JSON): a full scan
        return None
    stored = _key_array(stamps.level, stamps.row, stamps.col)
    every = np.unique(np.concatenate([stored[:, 0], reread[:, 0]]))
    reusable = _positions(_packed(reread, every), _packed(stored, every)) < 0
    started = epoch_ns(last.started)
    return Previous(
        target,
        stamps,
        reusable,
        levels,
        started,
        reread,
        in_place=in_place,
        carriable=in_place or not is_geopackage(target),
    )


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
    "Previous",
    "bundle_files",
    "previous_status",
    "tiling",
]
