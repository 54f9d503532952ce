"""Read a status store back: level totals, problems and jobs, without rescanning the cache."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StatusNotFound
from ..models import LevelSummary, Problem, StatusReport
from .schema import JOBS, LEVEL_STATUS, TASK_STATUS
from .writer import JobRecord


def _table(
    path: Path, layer: str, where: str | None = None, columns: list[str] | None = None
) -> dict[str, np.ndarray]:
    from pyogrio.raw import read as ogr_read  # GDAL loads on first use: a faster start-up

    _meta, _fids, _geom, values = ogr_read(
        str(path), layer=layer, read_geometry=False, where=where, columns=columns
    )
    names = list(_meta["fields"])
    return dict(zip(names, values, strict=True))


def _records(path: Path, layer: str) -> list[dict[str, Any]]:
    """The rows of a table as dicts, field name to value."""
    table = _table(path, layer)
    count = len(next(iter(table.values()))) if table else 0
    return [{name: column[i] for name, column in table.items()} for i in range(count)]


def _layers(path: Path) -> set[str]:
    from pyogrio import list_layers

    return {str(name) for name, _ in list_layers(str(path))}


def _check(path: Path) -> set[str]:
    """Check the store is there and ours; its layer names."""
    if not path.exists():
        raise StatusNotFound(
            f"{path}: no status store here; run `cachestatus rebuild` first "
            "(or give --status with the store's path)"
        )
    try:
        layers = _layers(path)
    except Exception as exc:  # pyogrio's DataSourceError and friends
        raise StatusNotFound(f"{path}: not a readable status store ({exc})") from None
    missing = {LEVEL_STATUS, JOBS} - layers
    if missing:
        raise StatusNotFound(
            f"{path}: not a cachestatus store (no {', '.join(sorted(missing))} "
            "table); rebuild it with `cachestatus rebuild`"
        )
    return layers


def _to_datetime(value: Any) -> datetime | None:
    if value is None or (isinstance(value, np.datetime64) and np.isnat(value)):
        return None
    return datetime.fromisoformat(str(np.datetime_as_string(value, unit="ms"))).replace(tzinfo=UTC)


def _count(value: Any) -> int | None:
    """A nullable count as read back (null is NaN; stores of older versions lack the field)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)


def read_jobs(path: Path) -> list[JobRecord]:
    """All rows of the store's ``Jobs`` table, oldest first."""
    _check(path)
    return _jobs(path)


def _jobs(path: Path) -> list[JobRecord]:
    jobs = []
    for row in _records(path, JOBS):
        jobs.append(
            JobRecord(
                job_id=str(row["jobID"]),
                mode=str(row["mode"]),
                started=_to_datetime(row["started"]) or datetime.fromtimestamp(0, UTC),
                finished=_to_datetime(row["finished"]),
                cache_path=str(row["cachePath"]),
                format=str(row["format"]),
                parameters=str(row["parameters"]),
                tool_version=str(row["toolVersion"]),
                outcome=str(row["outcome"]),
            )
        )
    return jobs


def read_status(path: Path) -> StatusReport:
    """The stored status as a report: level totals, corrupt bundles, the last job."""
    layers = _check(path)
    levels = [
        LevelSummary(
            level=int(row["levelID"]),
            scale=float(row["scale"]),
            resolution=float(row["resolution"]),
            bundles=int(row["bundles"]),
            tiles_expected=int(row["tilesExpected"]),
            tiles_present=int(row["tilesPresent"]),
            tiles_stray=int(row["tilesStray"]),
            tile_bytes=int(row["tileBytes"]),
            tiles_blank=_count(row.get("tilesBlank")),
        )
        for row in _records(path, LEVEL_STATUS)
    ]
    problems = []
    if TASK_STATUS in layers:
        # The filtered field must be read too: GDAL's OpenFileGDB driver does not see ignored
        # fields in attribute filters.
        bad = _table(
            path,
            TASK_STATUS,
            where="status = 'CORRUPT'",
            columns=["bundleName", "status", "detail"],
        )
        problems = [
            Problem(str(name), "corrupt", str(detail))
            for name, detail in zip(bad["bundleName"], bad["detail"], strict=True)
        ]
    jobs = _jobs(path)
    last = jobs[-1] if jobs else None
    elapsed = math.nan
    if last is not None and last.finished is not None:
        elapsed = (last.finished - last.started).total_seconds()
    return StatusReport(
        cache=last.cache_path if last else "",
        format=last.format if last else "",
        status_path=str(path),
        job_id=last.job_id if last else "",
        mode=last.mode if last else "",
        elapsed_s=elapsed,
        levels=levels,
        problems=problems,
    )
