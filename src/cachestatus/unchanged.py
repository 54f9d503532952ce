"""A rebuild of an unchanged cache into a GeoPackage store, answered with the standard library.

When nothing changed since the previous rebuild, an incremental rebuild
(:mod:`cachestatus.incremental`) reads no bundle: it lists the bundle files, finds each with
the size and stamp it was read with, and carries the store over with a new ``Jobs`` row. Most
of its time is then the start of a process that imports numpy and GDAL. For a ``.gpkg`` store
(a SQLite database) this module does the same with the standard library alone, before the
command line is even parsed (:func:`answer`): the same store (the copy made by
:func:`~cachestatus.store.partial.carry`, which the normal path uses too), the same output and
exit code, under the same guard and lock (:func:`~cachestatus.store.guard.claim`).

It answers only when it has no doubt, and leaves every other run to the normal path
(:func:`answer` returns ``None``):

- the command is ``rebuild CACHE --status STORE.gpkg`` with at most ``--json``, ``--format
  gpkg``, ``-q`` and the options that only say how a scan would run: ``--workers N`` (up to
  the most a run starts: more is clamped, with a warning), ``--io-concurrency N`` and
  ``--no-progress`` (any other option may change what is read, counted or shown), and no Dask
  scheduler is named by the environment;
- ``CACHE`` is a local ArcGIS folder cache whose configuration (``conf.xml``, ``conf.cdi``)
  has the digest the previous rebuild recorded (:func:`~cachestatus.arcgis_names.config_digest`):
  its tiling scheme and full extent are those the store was written for;
- the store's last job is a rebuild of the same request by this very version that
  ``succeeded`` with neither problems nor warnings (a run that had some would print them
  again), and the store has no ``CORRUPT`` or ``IN_PROGRESS`` row, one ``TaskStatus`` row
  a bundle file (as far as their count and the sums of their keys tell), and may be written into
  through SQLite (:func:`~cachestatus.store.partial.writable`; if not, it is written whole);
- ``_alllayers`` holds only level folders named as ArcGIS names them (``L05``) of levels the
  store counts, and these only bundle files named as ArcGIS names them (no ``.lock``, no
  ``.bundlx``, nothing else); each has the size and stamp of its ``BundleFiles`` row, and was
  modified at least :data:`RACY_NS` before the previous run started; there are as many as
  the store has rows of, and as the level totals count.

A progress bar is not drawn (there is nothing to wait for). An error before the store is
replaced leaves it to the normal path too, which then reports it as every run does.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from . import __version__
from .arcgis_names import (
    BUNDLE_SUFFIX,
    LAYERS_DIR,
    config_digest,
    find_conf,
    level_folder_name,
)
from .parallel import max_workers, resolve_workers
from .request import CacheSource, Counting, Execution, StatusStore, request_json, same_request
from .results import LevelSummary, StatusReport
from .storage import RACY_NS
from .storage.location import is_url
from .store import atomic, partial
from .store.guard import claim
from .store.tables import (
    BUNDLE_FILES,
    LEVEL_STATUS,
    REBUILD,
    TASK_STATUS,
    JobRecord,
    epoch_ns,
    is_geopackage,
    new_job_id,
)

_T = TypeVar("_T")
#: The options of a command this module answers that take a value.
_VALUED = ("--status", "--format", "--workers", "--io-concurrency")
#: The environment variable that sends a scan to a Dask scheduler.
_SCHEDULER_VARIABLE = "DASK_SCHEDULER_ADDRESS"


@dataclass(frozen=True)
class Command:
    """A ``rebuild`` command line this module may answer: its cache, store, output and
    verbosity."""

    cache: str
    status: str
    store_format: str | None
    as_json: bool
    verbosity: int
    #: ``--workers`` and ``--io-concurrency``: recorded with the request, as the normal path
    #: records them.
    workers: int | None = None
    io_concurrency: int | None = None

    @classmethod
    def match(cls, argv: Sequence[str]) -> Command | None:
        """The command ``argv`` (without the program's name) gives, when it is a ``rebuild``
        of the form this module answers; ``None`` for any other, which the command line parses
        (and reports, when it is wrong). Not a parser: anything unexpected is left alone."""
        args = list(argv)
        quiet = 0
        while args and args[0] in ("-q", "--quiet"):
            args.pop(0)
            quiet += 1
        if not args or args.pop(0) != "rebuild":
            return None
        given: dict[str, str] = {}
        flags: set[str] = set()
        positional: list[str] = []
        while args:
            arg = args.pop(0)
            name, eq, value = arg.partition("=")
            if arg in ("--json", "--no-progress") and arg not in flags:
                flags.add(arg)
            elif name in _VALUED and name not in given:
                if not eq:
                    if not args:
                        return None
                    value = args.pop(0)
                given[name] = value
            elif arg and not arg.startswith("-") and not positional:
                positional.append(arg)
            else:
                return None
        status, store_format = given.get("--status"), given.get("--format")
        counts = {name: given.get(name) for name in ("--workers", "--io-concurrency")}
        if not positional or not status or store_format not in (None, "gpkg"):
            return None
        if any(v is not None and not (v.isascii() and v.isdigit()) for v in counts.values()):
            return None  # the normal path says what is wrong with it
        workers, in_flight = (None if v is None else int(v) for v in counts.values())
        if in_flight == 0 or (workers is not None and workers > max_workers()):
            return None  # refused, or clamped with a warning, by the normal path
        return cls(
            positional[0], status, store_format, "--json" in flags, -quiet, workers, in_flight
        )


def answer(argv: Sequence[str]) -> int | None:
    """Answer the command ``argv`` when it rebuilds an unchanged cache into a ``.gpkg`` store
    (see the module's notes): the store carried over, the output printed; the exit code.
    ``None``: the normal path runs the command (nothing was changed)."""
    command = Command.match(argv)
    if command is None or os.environ.get(_SCHEDULER_VARIABLE):
        return None
    started, clock = datetime.now(UTC), time.perf_counter()
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            report = _carry_over(command, started, clock)
        except Exception:  # before the swap: the normal path does it again, and says so
            return None
        if report is None:
            return None
        _print(command, report)
        return 0
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def _carry_over(command: Command, started: datetime, clock: float) -> StatusReport | None:
    """The report of the run, once the store is carried over; ``None`` when the cache or the
    store leaves any doubt."""
    if is_url(command.cache):
        return None
    target = Path(command.status)
    cache = Path(command.cache)
    conf = find_conf(cache)
    if not is_geopackage(target) or conf is None or not target.is_file():
        return None
    root = conf.parent
    digest = config_digest(conf)
    if digest is None:
        return None
    defaults = [root / "Status.gdb", root / "Status.gpkg"]
    with claim(target, root, defaults=defaults, command="rebuild", arcgis_defaults=True) as lock:
        last = partial.last_job(target)
        if last is None or not _clean(last) or not partial.writable(target):
            return None
        previous = json.loads(last["parameters"])
        recorded = {
            **request_json(
                CacheSource(command.cache),
                StatusStore(command.status, command.store_format),
                Counting(),
                Execution(workers=command.workers, io_concurrency=command.io_concurrency),
                levels=None,
                tiling=previous.get("tiling"),
                config=digest,
            ),
            "workers": resolve_workers(command.workers),
            "status": str(target.absolute()),
        }
        if not same_request(previous, recorded):
            return None
        previous_start = datetime.fromisoformat(last["started"]).replace(tzinfo=UTC)
        # The store's rows are read (SQLite, without the GIL) while the files are stat-ed.
        stored = _Background(_stored, target)
        rows = _Background(_file_rows, target)
        try:
            unchanged = _all_unchanged(
                root / LAYERS_DIR,
                lambda: _one_row_each(stored.result(), rows.result()),
                epoch_ns(previous_start),
            )
        finally:  # no connection outlives the answer, whatever ended the listing
            stored.join()
            rows.join()
        if unchanged is None:
            return None
        levels, reused = unchanged
        job_id, token = new_job_id()
        job = JobRecord(
            job_id=job_id,
            mode=REBUILD,
            started=started,
            finished=datetime.now(UTC),
            cache_path=str(cache.resolve()),
            format=last["format"],
            parameters=json.dumps(recorded),
            tool_version=__version__,
            outcome="succeeded",
            bundles_read=0,
            bundles_reused=reused,
        )
        temp = atomic.sibling(target, "tmp", token)
        try:
            shutil.copyfile(target, temp)
            partial.carry(temp, job)
            lock.check()
            # Swapped in: an interrupt now could no longer say that nothing was changed.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)
            atomic.replace(temp, target, token)
        finally:
            atomic.remove(temp)
    return StatusReport(
        cache=command.cache,
        format=last["format"],
        status_path=str(target),
        job_id=job_id,
        mode=REBUILD,
        elapsed_s=time.perf_counter() - clock,
        levels=levels,
        bundles_read=0,
        bundles_reused=reused,
    )


def _clean(last: dict[str, Any]) -> bool:
    """Whether a store's last job is a rebuild by this version that found nothing to say: no
    problem, no warning. A store written by another version (of the same major version, whose
    rows the normal path reuses) may lack a field this one writes: the normal path tells, and
    writes it whole if so."""
    return (
        last["mode"] == REBUILD
        and last["outcome"] == "succeeded"
        and str(last["toolVersion"]) == __version__
    )


#: How many listed files are checked at a time: a changed file ends the listing there.
_BATCH = 4096


#: The sums of a table's keys, as SQLite adds integers (exactly: far from 2**63).
_KEY_SUMS = "sum(levelID), sum(bundleRow), sum(bundleCol)"

#: The level totals of a store, its bundle files as lines of :func:`_all_unchanged`, and the
#: count and key sums of their rows (:data:`_KEY_SUMS`).
_Stored = tuple[list[LevelSummary], set[str], tuple[int, ...]]


def _stored(store: Path) -> _Stored | None:
    """The store's level totals, its bundle files as lines of :func:`_all_unchanged`, and
    their rows' count and key sums; ``None`` when it has none to reuse, or more or fewer than
    the level totals count (a ``CORRUPT`` or ``IN_PROGRESS`` row, whose bundle is always read
    again, is counted there and has no ``BundleFiles`` row; and was a problem of the run that
    wrote it), or a size that is not an integer."""
    db = partial.connect(store, read_only=True)
    try:
        levels = [
            LevelSummary(*row)
            for row in db.execute(
                "SELECT levelID, scale, resolution, bundles, tilesExpected, tilesPresent, "
                f'tilesStray, tileBytes, tilesBlank FROM "{LEVEL_STATUS}" ORDER BY fid'
            )
        ]
        # One text, split apart here: SQLite writes and joins the lines much faster than rows
        # reach Python, and than Python parses numbers (it writes the listed ones as fast).
        count, sized, text, *sums = db.execute(
            "SELECT count(*), sum(typeof(fileBytes) = 'integer'), group_concat(printf("
            f"'L%02d/R%04xC%04x{BUNDLE_SUFFIX} %d ', levelID, bundleRow, bundleCol, fileBytes)"
            f' || stamp), {_KEY_SUMS} FROM "{BUNDLE_FILES}"'
        ).fetchone()
    finally:
        db.close()
    if not count or sized != count or count != sum(lv.bundles for lv in levels):
        return None
    files = set(text.split(","))
    return (levels, files, (count, *sums)) if len(files) == count else None


def _file_rows(store: Path) -> tuple[int, ...]:
    """The count and key sums of the store's ``TaskStatus`` rows of bundle files (those not
    ``MISSING``): a scan of the table, with its polygons, run beside :func:`_stored`."""
    db = partial.connect(store, read_only=True)
    try:  # the state BundleState.MISSING names: no bundle file
        query = f"SELECT count(*), {_KEY_SUMS} FROM \"{TASK_STATUS}\" WHERE status <> 'MISSING'"
        return tuple(db.execute(query).fetchone())
    finally:
        db.close()


def _one_row_each(stored: _Stored | None, rows: tuple[int, ...]) -> _Stored | None:
    """``stored`` (:func:`_stored`) when the ``TaskStatus`` rows of bundle files (``rows``:
    :func:`_file_rows`) are one a ``BundleFiles`` row, as far as their count and the sums of
    their keys tell; ``None`` otherwise: a row held twice (another program copied it) is left
    to the normal path, which deletes it."""
    return stored if stored is not None and stored[2] == rows else None


def _all_unchanged(
    layers: Path, stored: Callable[[], _Stored | None], previous_start_ns: int
) -> tuple[list[LevelSummary], int] | None:
    """The level totals and the number of bundle files of the store (``stored``:
    :func:`_stored`), when the bundle files under ``layers`` are exactly its files, none
    modified less than :data:`RACY_NS` before the previous run started, and nothing else is
    there but the folders of its levels (a folder of another level, even empty, is a warning of
    the normal path); ``None`` otherwise. ``stored`` is asked once the first files are listed:
    the store is read meanwhile, and it gives the same value each time.

    A file is a line: its path under ``layers`` as ArcGIS names a bundle (BundleKey.label),
    then its size and stamp (``st_mtime_ns``) as :func:`str` writes integers:
    ``L05/R0080C0100.bundle 16384 1764547200123456789``; a stamp stored otherwise (``0012``)
    matches no file, as it must.
    """
    before = previous_start_ns - RACY_NS
    found = 0
    folders_seen: set[str] = set()
    files: set[str] | None = None
    with os.scandir(layers) as folders:
        for folder in folders:
            if not folder.is_dir():
                return None
            folders_seen.add(folder.name)
            prefix = f"{folder.name}/"
            # Listed and stat-ed relative to the folder: the kernel walks one name per file.
            fd = os.open(folder.path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                with os.scandir(fd) as entries:
                    while batch := list(islice(entries, _BATCH)):
                        listed = {
                            f"{prefix}{entry.name} {st.st_size} {st.st_mtime_ns}"
                            for entry in batch
                            if (st := entry.stat()).st_mtime_ns < before
                        }
                        if files is None:
                            given = stored()
                            if given is None:
                                return None
                            files = given[1]
                        if len(listed) != len(batch) or not listed <= files:
                            return None
                        found += len(batch)
            finally:
                os.close(fd)
    given = stored()  # the same value again, or the first time: an empty _alllayers
    if given is None:
        return None
    levels, files, _ = given
    known = {level_folder_name(lv.level) for lv in levels}
    if found != len(files) or not folders_seen <= known:
        return None
    return levels, found


class _Background(threading.Thread, Generic[_T]):
    """A function run in a thread as soon as made; :meth:`result` waits for its value, or
    raises its error. What ``ThreadPoolExecutor().submit`` gives, without the 10-15 ms that
    importing :mod:`concurrent.futures` (logging, queue...) adds to this answer's start-up,
    half of what reading the store meanwhile saves."""

    def __init__(self, function: Callable[..., _T], *args: Any) -> None:
        super().__init__(name="cachestatus-read-store", daemon=True)
        self._call = functools.partial(function, *args)
        self._value: _T | None = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        """Calls the function, keeping its value or error."""
        try:
            self._value = self._call()
        except BaseException as error:  # given to the caller, by result()
            self._error = error

    def result(self) -> _T:
        """The function's value, once it returned; its error, raised again."""
        self.join()
        if self._error is not None:
            raise self._error
        return cast(_T, self._value)


def _print(command: Command, report: StatusReport) -> None:
    """What ``rebuild`` prints for a run without problems or warnings: the JSON document, or
    the level table and the notes for people (unless ``-q``)."""
    from .render import bundles_note, level_table, print_table, report_json

    if command.as_json:
        sys.stdout.write(json.dumps(report_json(report), indent=2) + "\n")
    else:
        print_table(level_table(report))
    sys.stdout.flush()
    if command.verbosity >= 0:
        notes = [f"Status: {report.status_path}"] if not command.as_json else []
        if not command.as_json:
            notes.append(bundles_note(report))
        sys.stderr.write("".join(f"{note}\n" for note in notes))
