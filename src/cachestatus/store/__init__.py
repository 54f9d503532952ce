"""Status stores: ``Status.gdb`` (FileGDB) or ``Status.gpkg``, written through GDAL."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from ..errors import UsageError
from .reader import read_jobs, read_missing_areas, read_rows, read_status
from .records import JobRecord, StoredRows
from .schema import DRIVERS, JOBS, LEVEL_STATUS, TASK_STATUS
from .writer import StatusWriter

#: Store formats by name (``--format``): the suffixes the store has a driver for.
FORMATS: Final = tuple(suffix.removeprefix(".") for suffix in DRIVERS)

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


def check_store_path(path: Path) -> Path:
    """Validate a status store path: it must end in ``.gdb`` or ``.gpkg``.

    Raises:
        UsageError: another suffix (GDAL's FileGDB driver needs ``.gdb``).
    """
    if path.suffix.lower() not in DRIVERS:
        raise UsageError(f"{path}: a status store must end in .gdb (FileGDB) or .gpkg (GeoPackage)")
    return path
