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
bundle brings the very row and holes its reading gave. (A bundle file's size and stamp are
compared as one 64-bit value: a changed file may compare equal by a chance of 2**-64.)
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
    file_stamp_parts,
    key_parts,
    read_area_counts,
    read_bundle_files,
    read_keys,
    read_levels,
)
from .store.records import (
    NO_STAMP,
    BundleFileRows,
    JobRecord,
    encode_holes,
    file_signatures,
    stamp_value,
    take_rows,
)
from .store.schema import BUNDLE_FILES, TASK_STATUS
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


#: A bundle row or column in a packed key (:func:`_packed`).
_BITS_24 = (1 << 24) - 1
#: The levels a packed key holds.
_LEVELS = 1 << 15
#: Feature ids held as int32 (:class:`StoredFiles`).
_INT32 = np.iinfo(np.int32).max
#: The listed stamp of a bundle whose stamp is not a time: never too recent.
_NOT_A_TIME = np.iinfo(np.int64).min


def _packed(level: npt.ArrayLike, row: npt.ArrayLike, col: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Bundle keys (level, row and column arrays) as one int64 each, in the order of the keys:
    the level (below 2**15), then the bundle row and column (24 bits each: a row below 2**31
    over 128-tile bundles); -1 for a key beyond them."""
    level, row, col = (np.asarray(c, dtype=np.int64) for c in (level, row, col))
    row, col = row // BUNDLE_SIZE, col // BUNDLE_SIZE
    fits = (level >= 0) & (level < _LEVELS)
    fits &= (row >= 0) & (row <= _BITS_24) & (col >= 0) & (col <= _BITS_24)
    return np.where(fits, (level << 48) | (row << 24) | col, -1)


def _unpacked(key: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], ...]:
    """The keys (levels, rows, columns) packed in ``key`` (:func:`_packed`)."""
    return key >> 48, ((key >> 24) & _BITS_24) * BUNDLE_SIZE, (key & _BITS_24) * BUNDLE_SIZE


def _key_array(*columns: Any) -> npt.NDArray[np.int64]:
    """Bundle keys from their level, row and column columns, shape (n, 3)."""
    return np.column_stack([np.asarray(c, dtype=np.int64) for c in columns]).reshape(-1, 3)


def _listed_stamps(
    bundles: list[BundleFile], which: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The signature of the size and stamp
    (:func:`~cachestatus.store.records.file_signatures`), the stamp
    (:func:`~cachestatus.store.records.stamp_value`, :data:`NO_STAMP` for none) and the stamp
    as a time (ns, :data:`_NOT_A_TIME` for an ETag) of the bundles at ``which``, as listed; a
    local listing tells none, and a bundle file is asked (one stat, as ``find -printf '%s
    %T@'`` does). Size -1: it cannot be."""
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
    return file_signatures(sizes, values), values, times


@dataclass(eq=False)
class StoredFiles:
    """A store's ``BundleFiles`` rows in the order of their bundles' keys, each key packed in
    one int64 (:func:`_packed`): a bundle is found by a binary search. 20 bytes a bundle file:
    its key, feature id (int32) and the signature of its size and stamp."""

    #: The packed keys, ascending.
    key: npt.NDArray[np.int64]
    #: Each row's feature id.
    fid: npt.NDArray[np.int32]
    #: Each row's size and stamp, as one value (:func:`~.store.records.file_signatures`).
    sig: npt.NDArray[np.int64]

    @classmethod
    def read(cls, path: Path) -> StoredFiles | None:
        """The ``BundleFiles`` rows of the store at ``path``, or ``None`` when it has none
        (:func:`~cachestatus.store.reader.file_stamp_parts`): read a part at a time into
        arrays made once, then sorted.

        Raises:
            ValueError: a key beyond what a packed key holds, a feature id beyond int32, or
                rows that do not add up to the table's count: not a store to reuse.
        """
        parts = file_stamp_parts(path)
        if parts is None:
            return None
        count = count_rows(path, BUNDLE_FILES)
        key = np.empty(count, dtype=np.int64)
        fid = np.empty(count, dtype=np.int32)
        sig = np.empty(count, dtype=np.int64)
        end = 0
        for part in parts:
            start, end = end, end + len(part)
            packed_keys = _packed(part.level, part.row, part.col)
            if end > count or (packed_keys < 0).any() or (part.fid > _INT32).any():
                raise ValueError(f"{path}: BundleFiles rows this version does not reuse")
            key[start:end] = packed_keys
            fid[start:end] = part.fid
            sig[start:end] = file_signatures(part.size, part.stamp)
        if end != count:
            raise ValueError(f"{path}: {end} BundleFiles rows read of {count}")
        columns: list[npt.NDArray[Any]] = [key, fid, sig]
        del key, fid, sig
        return cls.of(columns)

    @classmethod
    def of(cls, columns: list[npt.NDArray[Any]]) -> StoredFiles:
        """The rows of ``columns`` (:attr:`key`, :attr:`fid` and :attr:`sig`, in any order)
        sorted by key, stable (of a key held twice, the row read first comes first). Each
        column is replaced in the list by its sorted copy in turn: with no other reference to
        it, it is freed then, and no more than one copy is held at a time."""
        key = columns[0]
        if len(key) > 1 and not (key[1:] >= key[:-1]).all():
            order = np.argsort(key, kind="stable").astype(np.int32)
            del key
            for i in range(len(columns)):
                columns[i] = columns[i][order]
        return cls(*columns)

    def __len__(self) -> int:
        return len(self.key)

    def find(
        self, level: npt.ArrayLike, row: npt.ArrayLike, col: npt.ArrayLike
    ) -> npt.NDArray[np.intp]:
        """The position of each bundle key (level, row and column arrays): of a key held
        twice, its first; -1 where there is none."""
        wanted = _packed(level, row, col)
        if not len(self.key):
            return np.full(len(wanted), -1, dtype=np.intp)
        at = np.minimum(np.searchsorted(self.key, wanted), len(self.key) - 1)
        return np.where((wanted >= 0) & (self.key[at] == wanted), at, -1)

    def keys(self, which: Any = slice(None)) -> tuple[npt.NDArray[np.int64], ...]:
        """The keys (levels, rows, columns) of the rows at ``which``."""
        return _unpacked(self.key[which])

    def rows(self, store: Path) -> tuple[npt.NDArray[np.int32], int]:
        """The feature id of each one's ``TaskStatus`` row in ``store`` (read a part at a
        time), -1 for none (or only ``MISSING`` rows), of a key with two rows the first; and
        how many other rows those keys have."""
        row_fid = np.full(len(self), -1, dtype=np.int32)
        others = 0
        for fids, level, row, col in key_parts(store, _NO_FILE, among=False):
            at = self.find(level, row, col)
            hit = at >= 0
            if (fids[hit] > _INT32).any():
                raise ValueError(f"{store}: TaskStatus rows this version does not reuse")
            positions, first = np.unique(at[hit], return_index=True)  # a key twice: its first
            fresh = row_fid[positions] < 0
            row_fid[positions[fresh]] = fids[hit][first[fresh]]
            others += int(np.count_nonzero(hit)) - int(np.count_nonzero(fresh))
        return row_fid, others


@dataclass
class Previous:
    """What the previous rebuild's store lets this one reuse, read from it as needed: first
    the key, feature id, size and stamp of each bundle file it read, and the ``TaskStatus``
    row of each; then, unless nothing changed, the reused rows and holes, a batch at a time as
    they are folded (:class:`StoredReused`)."""

    #: The store.
    store: Path
    #: Its ``BundleFiles`` rows, by key (released by :meth:`split` unless :attr:`unchanged`).
    stored: StoredFiles
    #: The feature id of each one's ``TaskStatus`` row: -1 for none, and for a row whose
    #: bundle is read again (``CORRUPT`` or ``IN_PROGRESS``): not reused.
    row_fid: npt.NDArray[np.int32]
    #: Its level totals.
    levels: list[LevelSummary]
    #: When the previous rebuild started, nanoseconds since the epoch.
    started_ns: int
    #: The keys of its ``CORRUPT`` and ``IN_PROGRESS`` rows, shape (n, 3).
    reread: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    #: Set by :meth:`split`: every listed bundle is reused, and they are every bundle file the
    #: store has a row of: its rows, level totals and missing areas stand as they are.
    unchanged: bool = False
    #: The store is a GeoPackage updated in place (:meth:`StatusWriter.update
    #: <cachestatus.store.writer.StatusWriter.update>`): the reused rows stay in it, so only
    #: what the level totals and missing areas are folded from is read of them.
    in_place: bool = False
    #: Its store may be carried over as it is when nothing changed: not a GeoPackage that
    #: cannot be updated in place (:attr:`in_place`: it lacks a field this version writes, or
    #: rows may not be written into it through SQLite), which is written whole, its rows
    #: reused.
    carriable: bool = True
    #: The store holds a bundle's ``TaskStatus`` row twice (another program copied one): it
    #: is not carried over as it is, even when no bundle changed (nor is one holding a
    #: ``BundleFiles`` row twice: :meth:`split` finds fewer reused than :attr:`stored`).
    twice: bool = False
    #: Set by :meth:`split`: the rows reused, by feature ids.
    reused: StoredReused | None = None
    #: Set by :meth:`split`: the packed keys (:func:`_packed`) of the store's bundle file rows
    #: not reused.
    _gone: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))

    def gone(self) -> Iterator[tuple[int, int, int]]:
        """The keys (level, row, column) of the store's bundle file rows that :meth:`split`
        did not reuse: those of bundles changed, gone or read again; made a part at a time
        (all of them at once would take 24 bytes and more a bundle: all, when all changed)."""
        assert self.reused is not None, "split() first"
        for start in range(0, len(self._gone), SPLIT_CHUNK):
            columns = _unpacked(self._gone[start : start + SPLIT_CHUNK])
            yield from zip(*(c.tolist() for c in columns), strict=True)
        yield from map(tuple, self.reread.tolist())

    def split(self, listing: Listing) -> Listing:
        """The listing of the bundles to read; the rows of the others, reused, in its
        :attr:`~cachestatus.scan.Listing.reused` (left empty when :attr:`unchanged`), read
        from the store as they are folded.

        The listing is compared with the stored stamps :data:`SPLIT_CHUNK` bundles at a time:
        what is kept of it is the bundles to read, and of the others a mark. Then what is
        held of the store, 21 bytes a bundle file, makes way for the feature ids of the rows
        reused: 8 bytes a bundle reused."""
        stored, row_fid = self.stored, self.row_fid
        kept = np.zeros(len(stored), dtype=np.bool_)
        to_read = {p.lod.level: _Kept(p.lod.level) for p in listing.plans}
        listed = 0
        for bundles in chunks(listing.bundles(), SPLIT_CHUNK):
            listed += len(bundles)
            keys = _bundle_keys(bundles)
            at = stored.find(keys[:, 0], keys[:, 1], keys[:, 2])
            hit = at >= 0
            at[hit] = np.where(row_fid[at[hit]] >= 0, at[hit], -1)
            plain = np.array([not b.locked and b.payload is None for b in bundles], np.bool_)
            which = np.flatnonzero((at >= 0) & plain)
            signatures, values, times = _listed_stamps(bundles, which)
            same = (
                (signatures == stored.sig[at[which]])
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
        reused_count = int(np.count_nonzero(kept))
        self.unchanged = (
            self.carriable
            and not self.twice
            and reused_count == listed == len(stored) == sum(lv.bundles for lv in self.levels)
        )
        if not self.unchanged:
            file_fids, row_fids = stored.fid[kept], row_fid[kept]
            # A key's first row (they are sorted), unless kept: only first rows can be, as
            # find() gives a key's first row, and rows() the TaskStatus ids of those alone.
            gone = ~kept
            gone[1:] &= stored.key[1:] != stored.key[:-1]
            self._gone = stored.key[gone]
            del gone
            self.stored = StoredFiles(*(np.zeros(0, c.dtype) for c in vars(stored).values()))
            self.row_fid = np.zeros(0, np.int32)
            del stored, row_fid, kept
            self.reused = StoredReused.of(self.store, file_fids, row_fids, self.in_place)
        return Listing(
            listing.reader,
            listing.plans,
            listing.policy,
            list(to_read.values()),
            count=listed - reused_count,
            problems=listing.problems,
            reused=self.reused or (),
        )

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
        for level, bundles in found.items():
            if not 0 <= level < _LEVELS:
                continue
            # The keys of a level are a run of the sorted keys.
            low, high = level << 48, (level << 48) | (_BITS_24 << 24) | _BITS_24
            first = np.searchsorted(self.stored.key, low)
            end = np.searchsorted(self.stored.key, high, side="right")
            _, rows, cols = self.stored.keys(slice(first, end))
            bundles.add(rows, cols)
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
    iterated (:class:`~cachestatus.scan.ReusedRows`): the ``BundleFiles`` rows whose feature
    ids are ``file_fids`` (ascending), with the ``TaskStatus`` rows ``row_fids`` (pair by
    pair). With ``in_place``, the store written is that very one, updated: only the fields the
    folds need are read, and the rows are not written again."""

    store: Path
    file_fids: npt.NDArray[np.int32]
    row_fids: npt.NDArray[np.int32]
    in_place: bool

    @classmethod
    def of(
        cls,
        store: Path,
        file_fids: npt.NDArray[np.int32],
        row_fids: npt.NDArray[np.int32],
        in_place: bool,
    ) -> StoredReused:
        """The pairs ``file_fids`` and ``row_fids`` put in the order of the files' ids: a read
        then takes neighbouring rows of the tables, not rows from all over them (the order of
        the keys is the listing's, not the writing's)."""
        order = np.argsort(file_fids, kind="stable")
        return cls(store, file_fids[order], row_fids[order], in_place)

    def __len__(self) -> int:
        return len(self.file_fids)

    def __iter__(self) -> Iterator[Reused]:
        for start in range(0, len(self), _REUSED_READ):
            part = slice(start, start + _REUSED_READ)
            files, rows = read_bundle_files(
                self.store,
                self.file_fids[part].astype(np.int64),
                self.row_fids[part].astype(np.int64),
                self.in_place,
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


#: The states of the rows that have no ``BundleFiles`` row.
_NO_FILE = {BundleState.MISSING.value}


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
        stored = StoredFiles.read(target)
        if stored is None or not len(stored):
            return None
        reread = _key_array(*read_keys(target, _REREAD)[1:])
        row_fid, others = stored.rows(target)
        levels = read_levels(target)
        in_place = updatable(target)
    except Exception:  # an unreadable old store (pyogrio's errors, bad JSON): a full scan
        return None
    at = stored.find(reread[:, 0], reread[:, 1], reread[:, 2])
    row_fid[at[at >= 0]] = -1
    started = epoch_ns(last.started)
    return Previous(
        target,
        stored,
        row_fid,
        levels,
        started,
        reread,
        in_place=in_place,
        carriable=in_place or not is_geopackage(target),
        twice=others > 0,
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
