"""The status store's tables as plain values: their names, the field types, the ``Jobs``
table's fields, rows (:class:`JobRecord`), modes and job IDs. Imported by what must start
without numpy or GDAL (the guard, an unchanged rebuild answered through SQLite:
:mod:`cachestatus.unchanged`); :mod:`.schema` builds its layers from them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

TASK_STATUS: Final = "TaskStatus"
LEVEL_STATUS: Final = "LevelStatus"
JOBS: Final = "Jobs"
MISSING_AREAS: Final = "MissingAreas"
BUNDLE_FILES: Final = "BundleFiles"
#: The geometry type of each spatial table, as GDAL names them.
GEOMETRY_TYPES: Final = {TASK_STATUS: "Polygon", MISSING_AREAS: "MultiPolygon"}

#: ``Jobs.mode`` of a rebuild, a deletion and a report (ArcGIS's modes).
REBUILD: Final = "REBUILD_CACHE_STATUS"
DELETE: Final = "DELETE_CACHE_STATUS"
REPORT: Final = "REPORT_BUNDLE_STATUS"

#: Store kinds: suffix and GDAL driver.
DRIVERS: Final = {".gdb": "OpenFileGDB", ".gpkg": "GPKG"}


def is_geopackage(path: Path) -> bool:
    """Whether the store at ``path`` is a GeoPackage: a SQLite database, whose tables are read
    and updated through SQLite wherever GDAL is not needed (the same values, without loading
    GDAL); a FileGDB needs GDAL for everything."""
    return path.suffix.lower() == ".gpkg"


#: Field types (numpy dtypes) that are not numbers: text, and a time (UTC, to the millisecond).
TEXT: Final = "object"
TIME: Final = "datetime64[ms]"
#: A flag: a small integer, as FileGDB readers before GDAL 3.9 have no boolean.
FLAG: Final = "int16"

#: The ``Jobs`` fields in order: name, type, the :class:`~cachestatus.store.records.JobRecord`
#: attribute it stores, and whether it may be null.
JOB_FIELDS: Final = (
    ("jobID", TEXT, "job_id", False),
    ("mode", TEXT, "mode", False),
    ("started", TIME, "started", False),
    ("finished", TIME, "finished", True),
    ("cachePath", TEXT, "cache_path", False),
    ("format", TEXT, "format", False),
    ("parameters", TEXT, "parameters", False),
    ("toolVersion", TEXT, "tool_version", False),
    ("outcome", TEXT, "outcome", False),
    ("bundlesRead", "int64", "bundles_read", True),
    ("bundlesReused", "int64", "bundles_reused", True),
)


@dataclass(frozen=True)
class JobRecord:
    """One row of the ``Jobs`` table."""

    job_id: str
    mode: str
    started: datetime
    finished: datetime | None
    cache_path: str
    format: str
    parameters: str
    tool_version: str
    outcome: str
    #: Bundles the job read, and reused from the previous rebuild (``None``: not recorded).
    bundles_read: int | None = None
    bundles_reused: int | None = None


def new_job_id() -> tuple[str, str]:
    """A job ID (``20261124T021530Z-3fa94c``) and its random part, used in temporary names."""
    token = os.urandom(3).hex()  # as secrets.token_hex, without loading random and hmac
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{token}", token


def epoch_ns(when: datetime) -> int:
    """A job's time (aware, UTC) in nanoseconds since the epoch, to the microsecond it holds:
    what bundle files' ``st_mtime_ns`` are compared with."""
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // _MICROSECOND * 1000


_MICROSECOND = datetime.resolution


def major(version: str) -> str:
    """The major part of a version (``0`` of ``0.2.0``): stores written by another are not
    reused."""
    return version.split(".", 1)[0]
