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
bundle brings the very row and holes its reading gave. (Stamps are compared as 64-bit values:
an ETag as a digest of its text, so two ETags may compare equal by a chance of 2**-64.)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import pickle
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import __version__
from .formats.base import BundleFile, BundleRun, CacheReader, LevelListing, packed, unpacked
from .missing_areas import HOLE, MissingRows, cover_warning
from .models import BUNDLE_SIZE, BundleSet, BundleState, LevelSummary, Problem
from .request import same_request
from .scan import Listing, Progress, Reused, ScanBatch, ScanOutcome, chunks, scan_warnings
from .storage import RACY_NS
from .store.reader import (
    count_rows,
    read_area_counts,
    read_bundle_files,
    read_file_stamps,
    read_keys,
    read_levels,
)
from .store.records import (
    NO_STAMP,
    BundleFileRows,
    FileStamps,
    JobRecord,
    encode_holes,
    stamp_value,
    take_rows,
)
from .store.schema import TASK_STATUS
from .store.tables import epoch_ns, is_geopackage, major
from .store.writer import updatable

#: Reused rows handed to the folds at a time: a batch's holes, decoded as it is folded, take
#: about 4 KiB a bundle that misses tiles here and there.
REUSED_BATCH = 2_048
#: Listed bundles compared with the stored stamps at a time (:meth:`Previous.split`).
SPLIT_CHUNK = 16_384
#: Reused rows read from the store at a time (then folded :data:`REUSED_BATCH` at a time): two
#: queries each (``BundleFiles`` and ``TaskStatus``), about 0.5 KiB a row read.
_REUSED_READ = 4 * REUSED_BATCH
#: Previous rows whose bundles are always read again.
_REREAD = {BundleState.CORRUPT.value, BundleState.IN_PROGRESS.value}


def tiling(reader: CacheReader) -> str:
    """A digest of the cache's tiling scheme and full extent: rows depend on them, so a rebuild
    records it with its request and reuses rows only under the same one."""
    text = repr((reader.scheme, reader.full_extent))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _packed(
    level: npt.NDArray[np.int64],
    row: npt.NDArray[np.int64],
    col: npt.NDArray[np.int64],
    levels: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """Bundle keys (level, row and column arrays) as one int64 each: the level's position in
    ``levels`` (sorted; a level it lacks takes a neighbour's: :meth:`StoredFiles.find` checks),
    then the bundle row and column (24 bits each: a row below 2**31 over 128-tile bundles)."""
    where = np.searchsorted(levels, level).astype(np.int64)
    return (where << 48) | ((row // BUNDLE_SIZE) << 24) | (col // BUNDLE_SIZE)


def _key_array(*columns: Any) -> npt.NDArray[np.int64]:
    """Bundle keys from their level, row and column columns, shape (n, 3)."""
    return np.column_stack([np.asarray(c, dtype=np.int64) for c in columns]).reshape(-1, 3)


#: What is left of a column taken out (:meth:`StoredFiles.of`).
_NONE = np.zeros(0, dtype=np.int64)
#: A bundle row or column in a packed key (:func:`_packed`).
_BITS_24 = (1 << 24) - 1
#: The listed stamp of a bundle whose stamp is not a time: never too recent.
_NOT_A_TIME = np.iinfo(np.int64).min


def _listed_stamps(
    bundles: list[BundleFile], which: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The size, the stamp (:func:`~cachestatus.store.records.stamp_value`) and the stamp as a
    time (ns, :data:`_NOT_A_TIME` for an ETag) of the bundles at ``which``, as listed; a local
    listing tells none, and a bundle file is asked (one stat, as ``find -printf '%s %T@'``
    does). Size -1: it cannot be."""
    count = len(which)
    sizes = np.full(count, -1, dtype=np.int64)
    values = np.full(count, NO_STAMP, dtype=np.int64)
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
        values[out] = stamp_value(stamp)
        if isinstance(stamp, int):
            times[out] = stamp
    return sizes, values, times


@dataclass(eq=False)
class StoredFiles:
    """A store's ``BundleFiles`` rows in the order of their bundles' keys, each key packed in
    one int64 (:func:`_packed`, against :attr:`levels`): a bundle is found by a binary search,
    and the keys take a third of the room of level, row and column arrays."""

    #: The levels of the bundle files, sorted.
    levels: npt.NDArray[np.int64]
    #: The packed keys, ascending.
    key: npt.NDArray[np.int64]
    #: Each row's feature id, file size and stamp (:func:`~.store.records.stamp_value`).
    fid: npt.NDArray[np.int64]
    size: npt.NDArray[np.int64]
    stamp: npt.NDArray[np.int64]

    @classmethod
    def of(cls, stamps: FileStamps) -> StoredFiles:
        """``stamps`` (as read, in the order of their ids) sorted by key, a column at a time,
        each taken out of ``stamps`` once copied: at 10,000,000 rows every column is 76 MiB."""
        levels = np.unique(stamps.level).astype(np.int64)
        key = _packed(stamps.level, stamps.row, stamps.col, levels)
        stamps.level = stamps.row = stamps.col = _NONE
        order = np.argsort(key, kind="stable")
        key = key[order]
        columns = []
        for name in ("fid", "size", "stamp"):
            columns.append(np.asarray(getattr(stamps, name))[order])
            setattr(stamps, name, _NONE)
        return cls(levels, key, *columns)

    def __len__(self) -> int:
        return len(self.key)

    def find(
        self, level: npt.NDArray[Any], row: npt.NDArray[Any], col: npt.NDArray[Any]
    ) -> npt.NDArray[np.intp]:
        """The position of each bundle key (level, row and column arrays), -1 where there is
        none (a level the store lacks too: its packing, against :attr:`levels`, is not
        looked up)."""
        level, row, col = (np.asarray(c, dtype=np.int64) for c in (level, row, col))
        if not len(self.key):
            return np.full(len(level), -1, dtype=np.intp)
        at_level = np.minimum(np.searchsorted(self.levels, level), len(self.levels) - 1)
        known = self.levels[at_level] == level
        wanted = _packed(level, row, col, self.levels)
        at = np.minimum(np.searchsorted(self.key, wanted), len(self.key) - 1)
        return np.where(known & (self.key[at] == wanted), at, -1)

    def keys(self, which: Any = slice(None)) -> tuple[npt.NDArray[np.int64], ...]:
        """The keys (levels, rows, columns) of the rows at ``which``."""
        key = self.key[which]
        return (
            self.levels[key >> 48],
            ((key >> 24) & _BITS_24) * BUNDLE_SIZE,
            (key & _BITS_24) * BUNDLE_SIZE,
        )


@dataclass
class Previous:
    """What the previous rebuild's store lets this one reuse, read from it as needed: first
    the feature id, key, size and stamp of each bundle file it read; then, unless nothing
    changed, the reused rows and holes, a batch at a time as they are folded
    (:class:`StoredReused`)."""

    #: The store.
    store: Path
    #: Its ``BundleFiles`` rows: their feature ids, keys, sizes and stamps, by key.
    stored: StoredFiles
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
    #: Set by :meth:`split`: which of :attr:`stored` are reused.
    kept: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, np.bool_))
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
        assert len(self.kept) == len(self.stored), "split() first"
        left = _key_array(*self.stored.keys(~self.kept))
        keys = np.concatenate([left, self.reread])
        return keys[:, 0], keys[:, 1], keys[:, 2]

    def split(self, listing: Listing) -> Listing:
        """The listing of the bundles to read; the rows of the others, reused, in its
        :attr:`~cachestatus.scan.Listing.reused` (left empty when :attr:`unchanged`), read
        from the store as they are folded.

        The listing is compared with the stored stamps :data:`SPLIT_CHUNK` bundles at a time:
        what is kept of it is the bundles to read, and of the others a mark in :attr:`kept`."""
        stored = self.stored
        # The row of each stored bundle file: one without is read again.
        row_fids, row_level, row_row, row_col = read_keys(self.store, _BUNDLE_ROWS_WHERE)
        at = stored.find(row_level, row_row, row_col)
        hit = at >= 0
        row_fid = np.full(len(stored), -1, dtype=np.int64)
        positions, first = np.unique(at[hit], return_index=True)  # a key twice: its first row
        row_fid[positions] = row_fids[hit][first]
        del row_fids, row_level, row_row, row_col, at, hit, positions, first
        reusable = self.reusable & (row_fid >= 0)
        kept = np.zeros(len(stored), dtype=np.bool_)
        to_read = {p.lod.level: _Kept(p.lod.level) for p in listing.plans}
        listed = 0
        for bundles in chunks(listing.bundles(), SPLIT_CHUNK):
            listed += len(bundles)
            keys = _bundle_keys(bundles)
            at = stored.find(keys[:, 0], keys[:, 1], keys[:, 2])
            hit = at >= 0
            at[hit] = np.where(reusable[at[hit]], at[hit], -1)
            plain = np.array([not b.locked and b.payload is None for b in bundles], np.bool_)
            which = np.flatnonzero((at >= 0) & plain)
            sizes, values, times = _listed_stamps(bundles, which)
            same = (
                (sizes == stored.size[at[which]])
                & (values == stored.stamp[at[which]])
                & (values != NO_STAMP)
                & (times < self.started_ns - RACY_NS)
            )
            which = which[same]
            kept[at[which]] = True  # once, should a key be listed twice
            read = np.ones(len(bundles), dtype=np.bool_)
            read[which] = False
            by_level: dict[int, list[BundleFile]] = {}
            for i in np.flatnonzero(read).tolist():
                by_level.setdefault(bundles[i].key.level, []).append(bundles[i])
            for level, left in by_level.items():
                to_read[level].add(left)
        self.kept = kept
        reused_count = int(np.count_nonzero(kept))
        self.unchanged = self.carriable and (
            reused_count == listed == sum(lv.bundles for lv in self.levels)
        )
        reused: StoredReused | tuple[()] = ()
        if not self.unchanged:
            reused = StoredReused(self.store, stored.fid, row_fid, kept, self.in_place)
        return Listing(
            listing.reader,
            listing.plans,
            listing.policy,
            list(to_read.values()),
            count=listed - reused_count,
            problems=listing.problems,
            reused=reused,
        )

    def kept_keys(self) -> tuple[npt.NDArray[np.int64], ...]:
        """The keys (levels, rows, columns) of the bundle files :meth:`split` reused."""
        assert len(self.kept) == len(self.stored), "split() first"
        return self.stored.keys(self.kept)

    def outcome(
        self, listing: Listing, warnings: Sequence[str], progress: Progress | None
    ) -> ScanOutcome:
        """What :func:`~cachestatus.scan.scan_status` finds when :attr:`unchanged`: the
        store's level totals, and the warnings a scan gives, told from the store's counts."""
        reader, plans, policy = listing.reader, listing.plans, listing.policy
        reused = len(self.stored)
        if progress:
            progress.start(reused)
            progress.advance(reused)
        found = {p.lod.level: BundleSet(p.expected.bounds) for p in plans}
        stored_level, stored_row, stored_col = self.stored.keys()
        for level, bundles in found.items():
            mine = stored_level == level
            bundles.add(stored_row[mine], stored_col[mine])
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


@dataclass(frozen=True, eq=False)
class StoredReused:
    """The rows a rebuild reuses, read from the previous store a batch at a time as they are
    iterated (:class:`~cachestatus.scan.ReusedRows`): of the bundle files whose
    ``BundleFiles`` rows' feature ids are ``file_fids``, those ``kept``, with the
    ``TaskStatus`` rows ``row_fids`` (pair by pair). With ``in_place``, the store written is
    that very one, updated: only the fields the folds need are read, and the rows are not
    written again."""

    store: Path
    file_fids: npt.NDArray[np.int64]
    row_fids: npt.NDArray[np.int64]
    kept: npt.NDArray[np.bool_]
    in_place: bool

    def __len__(self) -> int:
        return int(np.count_nonzero(self.kept))

    def __iter__(self) -> Iterator[Reused]:
        # In the order of the files' ids: a read then takes neighbouring rows of the tables,
        # not rows from all over them (the key order is the listing's, not the writing's).
        kept = np.flatnonzero(self.kept)
        kept = kept[np.argsort(self.file_fids[kept], kind="stable")]
        for start in range(0, len(kept), _REUSED_READ):
            at = kept[start : start + _REUSED_READ]
            files, rows = read_bundle_files(
                self.store, self.file_fids[at], self.row_fids[at], self.in_place
            )
            files.stamp = [s or "" for s in files.stamp]
            blocks = np.column_stack([files.row0, files.row1, files.col0, files.col1])
            rows = take_rows(rows, slice(None), tiles=blocks.reshape(-1, 4))
            for first in range(0, len(files), REUSED_BATCH):
                part = slice(first, first + REUSED_BATCH)  # views of the rows read, not copies
                yield Reused(take_rows(rows, part), files.take(part), stored=self.in_place)


class _Kept(LevelListing):
    """The bundles of a level left to read, kept compact a chunk of the listing at a time: as
    objects, one bundle in eight kept of each chunk would keep the memory of all of them (the
    allocator frees a block only once everything in it is freed)."""

    def __init__(self, level: int) -> None:
        self.level = level
        self._parts: list[tuple[BundleRun, ...] | bytes] = []
        self._count = 0

    def add(self, bundles: list[BundleFile]) -> None:
        """Keep ``bundles``, after those kept before: as runs of names (:func:`packed`, a few
        bytes a bundle) where they are named by their keys alone, else pickled."""
        if bundles:
            runs = packed(bundles)
            part = pickle.dumps(bundles, pickle.HIGHEST_PROTOCOL) if runs is None else runs
            self._parts.append(part)
            self._count += len(bundles)

    @property
    def count(self) -> int:
        """How many."""
        return self._count

    def __iter__(self) -> Iterator[BundleFile | Problem]:
        """The bundles, in the listing's order."""
        for part in self._parts:
            yield from pickle.loads(part) if isinstance(part, bytes) else unpacked(part)


#: The filter of the rows that may have a ``BundleFiles`` row.
_BUNDLE_ROWS_WHERE = f"status <> '{BundleState.MISSING.value}'"
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
        reread = _key_array(*read_keys(target, _REREAD_WHERE)[1:])
        levels = read_levels(target)
        in_place = updatable(target)
    except Exception:  # an unreadable old store (pyogrio's errors, bad JSON): a full scan
        return None
    stored = StoredFiles.of(stamps)
    del stamps
    reusable = np.ones(len(stored), dtype=np.bool_)
    at = stored.find(reread[:, 0], reread[:, 1], reread[:, 2])
    reusable[at[at >= 0]] = False
    started = epoch_ns(last.started)
    return Previous(
        target,
        stored,
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
