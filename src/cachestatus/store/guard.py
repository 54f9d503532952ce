"""What cachestatus may create, replace or delete: only what it can prove it wrote.

Every path a run writes (a status store, a report, missing areas, a tile list) passes two checks
before any work starts:

- it is not the cache, nor inside it, nor a folder holding it (:func:`check_outside_cache`); the
  one exception is the default status store beside ``conf.xml``, where ArcGIS keeps it;
- what is there already, if anything, is a cachestatus output of the same kind
  (:func:`check_store`, :func:`check_vector_output`, :func:`check_tile_list`): a status store
  holds only the status layers and a ``Jobs`` table with cachestatus's fields; a user's own
  geodatabase, GeoPackage, cache or any other file is left alone. ``--overwrite`` never widens
  this: it only allows replacing a previous output of the same kind.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import NotOurs, UsageError
from . import atomic, partial
from .lock import StoreLock
from .tables import (
    BUNDLE_FILES,
    JOB_FIELDS,
    JOBS,
    LEVEL_STATUS,
    MISSING_AREAS,
    TASK_STATUS,
    is_geopackage,
)

#: The layers a status store holds, and nothing else.
STATUS_LAYERS = frozenset({TASK_STATUS, LEVEL_STATUS, JOBS, MISSING_AREAS, BUNDLE_FILES})
# The Jobs fields every store of ours has: those added later may be missing from older ones.
_JOB_FIELD_NAMES = frozenset(name for name, *_ in JOB_FIELDS) - {"bundlesRead", "bundlesReused"}
#: A tile list (``missing --tiles``): ``z/x/y`` lines.
_TILE_LINE = re.compile(rb"^\d{1,2}/\d{1,19}/\d{1,19}$")


def real(path: Path) -> Path:
    """``path`` with links and ``..`` resolved, whether or not it exists."""
    return Path(os.path.realpath(path))


#: Folders of a cache looked into for links to folders kept elsewhere: those with at most this
#: many entries (the cache folder, ``_alllayers``, a tile folder's zoom folders).
_LINK_SCAN_ENTRIES = 4096


def cache_places(cache_root: Path) -> list[Path]:
    """The cache's own places: its folder (or file), and the folders that links inside it lead
    to (an ``_alllayers`` or a level folder kept on another disk), at the first two depths."""
    places = [real(cache_root)]
    if not cache_root.is_dir():
        return places
    folders = [cache_root]
    for depth in range(2):
        found = []
        for folder in folders:
            try:
                with os.scandir(folder) as it:
                    entries = [e for _, e in zip(range(_LINK_SCAN_ENTRIES + 1), it, strict=False)]
            except OSError:
                continue
            if len(entries) > _LINK_SCAN_ENTRIES:
                continue
            for entry in entries:
                try:
                    if not entry.is_dir():
                        continue
                    if entry.is_symlink():
                        places.append(real(Path(entry.path)))
                    if depth == 0:
                        found.append(Path(entry.path))
                except OSError:
                    continue
        folders = found
    return places


def check_outside_cache(path: Path, cache_root: Path, allowed: Iterable[Path] = ()) -> None:
    """Refuse ``path`` when it is the cache, lies inside it or holds it, links included (see
    :func:`cache_places`).

    Args:
        path: what a run would write or delete.
        cache_root: the cache's own files: its folder, or its file.
        allowed: paths inside the cache that may be written all the same (the default status
            store beside ``conf.xml``).

    Raises:
        NotOurs: with the path and the reason.
    """
    where = real(path)
    if where in {real(p) for p in allowed}:
        return
    for root in cache_places(cache_root):
        if where == root:
            raise NotOurs(f"{path}: is the cache itself; write the output somewhere else")
        if where.is_relative_to(root):
            raise NotOurs(
                f"{path}: lies inside the cache {cache_root}, which is never written; write the "
                "output somewhere else"
            )
        if root.is_relative_to(where):
            raise NotOurs(
                f"{path}: holds the cache {cache_root}; replacing or deleting it would lose the "
                "cache; write the output somewhere else"
            )


def _refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise NotOurs(f"{path}: is a symbolic link; give the real path of the status store")


def _gpkg_tables(path: Path) -> tuple[set[str], set[str]]:
    """A GeoPackage's registered tables, and the columns of its ``Jobs`` table (read-only)."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    try:
        tables = {str(row[0]) for row in db.execute("SELECT table_name FROM gpkg_contents")}
        columns = {str(row[1]) for row in db.execute(f"PRAGMA table_info('{JOBS}')")}
    finally:
        db.close()
    return tables, columns


def _gdb_tables(path: Path) -> tuple[set[str], set[str]]:
    """A file geodatabase's layers and tables, and the fields of its ``Jobs`` table."""
    from pyogrio import list_layers, read_info

    tables = {str(name) for name, _ in list_layers(str(path))}
    columns = set(map(str, read_info(str(path), layer=JOBS)["fields"])) if JOBS in tables else set()
    return tables, columns


def store_tables(path: Path) -> tuple[set[str], set[str]]:
    """The tables of the store at ``path`` and the fields of its ``Jobs`` table.

    Raises:
        NotOurs: ``path`` is not a geodatabase or GeoPackage that can be read.
    """
    try:
        if is_geopackage(path):
            if not path.is_file():
                raise NotOurs(f"{path}: is not a GeoPackage file; it is left alone")
            return _gpkg_tables(path)
        if not path.is_dir():
            raise NotOurs(f"{path}: is not a file geodatabase folder; it is left alone")
        return _gdb_tables(path)
    except NotOurs:
        raise
    except Exception as exc:  # sqlite3 and pyogrio errors: whatever it is, it is not ours
        raise NotOurs(
            f"{path}: exists and is not a status store cachestatus can read ({exc}); it is left "
            "alone: remove it yourself, or choose another path"
        ) from None


def _other_cache(path: Path, cache_root: Path) -> str | None:
    """The cache the store at ``path`` was last written for, when it is another one that still
    exists (a cache moved or renamed since is not another one)."""
    try:
        recorded_path = _last_cache_path(path)
    except Exception:  # a store whose history cannot be read: nothing to compare with
        return None
    if recorded_path is None:
        return None
    recorded = Path(recorded_path)
    if not recorded.is_absolute() or not os.path.exists(recorded):
        return None
    there, here = real(recorded), real(cache_root)
    if there == here or there.is_relative_to(here) or here.is_relative_to(there):
        return None
    return str(recorded)


def _last_cache_path(path: Path) -> str | None:
    """The ``cachePath`` of the store's last job (a GeoPackage's read through SQLite alone)."""
    if is_geopackage(path):
        last = partial.last_job(path)
        return None if last is None else last["cachePath"]
    from .reader import read_jobs

    jobs = read_jobs(path)
    return jobs[-1].cache_path if jobs else None


def check_store(
    path: Path, *, arcgis_allowed: bool = False, cache_root: Path | None = None
) -> bool:
    """Whether a status store exists at ``path``; raise unless it is one cachestatus may replace
    or delete.

    A store is cachestatus's when it holds only the status layers and a ``Jobs`` table with
    cachestatus's fields. With ``arcgis_allowed`` (the default location beside ``conf.xml``),
    the ``Status.gdb`` ArcGIS itself writes there (``TaskStatus`` and no foreign layer) is
    accepted too: replacing it is what ArcGIS's own tool does.

    Raises:
        NotOurs: the path holds something else (the message says what was found).
    """
    _refuse_link(path)
    if not os.path.lexists(path):
        return False
    tables, job_fields = store_tables(path)
    foreign = sorted(tables - STATUS_LAYERS)
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise NotOurs(
            f"{path}: holds layers cachestatus did not write ({shown}); it is left alone: "
            "choose another path for the status"
        )
    if JOBS in tables and job_fields >= _JOB_FIELD_NAMES:
        other = None if cache_root is None else _other_cache(path, cache_root)
        if other is not None:
            raise NotOurs(
                f"{path}: holds the status of another cache, {other}; it is left alone: give "
                "this cache's status another path (--status)"
            )
        return True
    if arcgis_allowed and TASK_STATUS in tables:
        return True
    raise NotOurs(
        f"{path}: is not a cachestatus status store (no {JOBS} table with its fields); it is "
        "left alone: remove it yourself, or choose another path"
    )


def _existing_file(path: Path) -> bool:
    """Whether an output file is there to be checked (a link or a folder is refused)."""
    _refuse_link(path)
    if not os.path.lexists(path):
        return False
    if not path.is_file():
        raise NotOurs(f"{path}: is not a file; it is left alone")
    return True


def check_vector_output(path: Path) -> bool:
    """Whether ``missing --out`` output exists at ``path``; raise unless it is one cachestatus
    wrote (a ``MissingAreas`` layer with its fields, and nothing else).

    Raises:
        NotOurs: the file holds something else.
    """
    shapefile = path.suffix.lower() == ".shp"  # field names cut to 10 characters
    if not _existing_file(path):
        if shapefile:
            _refuse_foreign_sidecars(path)
        return False
    from pyogrio import list_layers, read_info

    from .schema import MISSING_AREAS_LAYER

    wanted = {name[:10] if shapefile else name for name in MISSING_AREAS_LAYER.names}
    core = {name[:10] if shapefile else name for name in ("levelID", "tilesMissing")}
    try:
        layers = [str(name) for name, _ in list_layers(str(path))]
        fields = set(map(str, read_info(str(path), layer=layers[0])["fields"])) if layers else set()
    except Exception as exc:  # pyogrio's errors: not a vector file it can read
        raise NotOurs(
            f"{path}: exists and is not missing areas cachestatus wrote ({exc}); it is left alone"
        ) from None
    expected_name = path.stem if path.suffix.lower() == ".shp" else MISSING_AREAS
    # Fields added by later versions may be missing from an earlier output, never others.
    if layers != [expected_name] or not core <= fields <= wanted:
        raise NotOurs(
            f"{path}: exists and holds other data than missing areas (layers {layers}); it is "
            "left alone: choose another --out"
        )
    return True


#: The files of a Shapefile beside its ``.shp``.
SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".qpj")


def _refuse_foreign_sidecars(path: Path) -> None:
    """A Shapefile to be written where no ``.shp`` is: its other files must not be there either
    (they belong to someone's Shapefile, or to a broken one)."""
    found = [
        path.with_suffix(ext)
        for ext in SHAPEFILE_SIDECARS
        if os.path.lexists(path.with_suffix(ext))
    ]
    if found:
        raise NotOurs(
            f"{path}: {found[0].name} is already there, without {path.name}; it belongs to "
            "another Shapefile and is left alone: choose another --out"
        )


def check_tile_list(path: Path) -> bool:
    """Whether a tile list (``missing --tiles``) exists at ``path``; raise unless it is one:
    a text file of ``z/x/y`` lines.

    Raises:
        NotOurs: the file holds something else.
    """
    if not _existing_file(path):
        return False
    with open(path, "rb") as f:
        head = f.read(64 * 1024)
    lines = head.split(b"\n")
    if len(head) == 64 * 1024:
        lines = lines[:-1]  # the last one may be cut
    if not all(_TILE_LINE.match(line) for line in lines if line):
        raise NotOurs(
            f"{path}: exists and is not a tile list cachestatus wrote (z/x/y lines); it is "
            "left alone: choose another --tiles"
        )
    return True


@contextmanager
def claim(
    target: Path,
    cache_root: Path,
    *,
    defaults: Iterable[Path] = (),
    command: str,
    arcgis_defaults: bool = False,
) -> Iterator[StoreLock]:
    """Make ``target`` ours to write or delete, for the time of a ``with`` block.

    In order, before any work: the path is outside the cache (``defaults``, the cache's default
    status stores, excepted); its folder exists or is made; the store's lock is taken (which
    tells a read-only folder at once); leftovers of abandoned runs are cleared; and what is at
    ``target``, if anything, is a store cachestatus may replace, written for this cache (with
    ``arcgis_defaults``, at a default place beside ``conf.xml``, ArcGIS's own status store too).

    Raises:
        NotOurs: the path is, holds or lies in the cache, or holds something else.
        StoreLocked: another run is writing this store.
        UsageError: the folder cannot be made or written.
    """
    defaults = [real(p) for p in defaults]
    check_outside_cache(target, cache_root, defaults)
    _refuse_link(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"{target.parent}: cannot be made ({exc.strerror}); choose another place"
        ) from None
    with StoreLock(target, command) as lock:
        atomic.recover(target)
        check_store(
            target,
            arcgis_allowed=arcgis_defaults and real(target) in defaults,
            cache_root=cache_root,
        )
        yield lock
