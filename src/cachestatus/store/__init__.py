"""Status stores: ``Status.gdb`` (FileGDB) or ``Status.gpkg``, written through GDAL.

The readers and the writer are imported on first use (they load numpy): the guard, the lock
and the GeoPackage's SQLite access (:mod:`.partial`) start without them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ..errors import UsageError
from .tables import DRIVERS, JOBS, LEVEL_STATUS, TASK_STATUS

if TYPE_CHECKING:
    from .reader import read_jobs, read_missing_areas, read_rows, read_status
    from .records import JobRecord, StoredRows
    from .writer import StatusWriter

#: Store formats by name (``--format``): the suffixes the store has a driver for.
FORMATS: Final = tuple(suffix.removeprefix(".") for suffix in DRIVERS)

_LAZY = {
    "read_jobs": "reader",
    "read_missing_areas": "reader",
    "read_rows": "reader",
    "read_status": "reader",
    "JobRecord": "records",
    "StoredRows": "records",
    "StatusWriter": "writer",
}

__all__ = [
    "FORMATS",
    "JOBS",
    "LEVEL_STATUS",
    "TASK_STATUS",
    "JobRecord",
    "StatusWriter",
    "StoredRows",
    "check_store_path",
    "read_jobs",
    "read_missing_areas",
    "read_rows",
    "read_status",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def check_store_path(path: Path) -> Path:
    """Validate a status store path: it must end in ``.gdb`` or ``.gpkg``.

    Raises:
        UsageError: another suffix (GDAL's FileGDB driver needs ``.gdb``).
    """
    if path.suffix.lower() not in DRIVERS:
        raise UsageError(f"{path}: a status store must end in .gdb (FileGDB) or .gpkg (GeoPackage)")
    return path
