"""``ManageMapServerCacheStatus``: the ArcGIS geoprocessing tool's call, without ArcGIS.

Scripts written for arcpy keep working: the parameters have arcpy's names (so both the 10.x and the
Pro orders work by keyword), the result has arcpy's ``status`` codes, ``getMessages()`` and
``getOutput(0)``. As with arcpy, a failure raises an exception (here a
:class:`~cachestatus.errors.CacheStatusError`) carrying the message.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import operations
from .errors import UsageError
from .models import StatusReport
from .request import CacheSource, Coverage, Execution, ReportStore

#: arcpy's ``Result.status`` codes.
SUCCEEDED = 4
FAILED = 5

MODES = (operations.DELETE, operations.REBUILD, operations.REPORT)


@dataclass
class Result:
    """What the tool returns, shaped like ``arcpy.Result``."""

    status: int
    messages: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    report: StatusReport | None = None

    def getMessages(self, severity: int | None = None) -> str:
        """The tool's messages, one per line (``severity`` is accepted for arcpy compatibility)."""
        return "\n".join(self.messages)

    def getOutput(self, index: int) -> str:
        """Output ``index``: 0 is the status store written (or deleted)."""
        return self.outputs[index]

    @property
    def outputCount(self) -> int:
        """How many outputs :meth:`getOutput` has."""
        return len(self.outputs)

    @property
    def messageCount(self) -> int:
        """How many messages the run produced."""
        return len(self.messages)

    def __str__(self) -> str:
        return self.outputs[0] if self.outputs else ""


def _workers(instances: int | str | None) -> int | None:
    if instances in (None, "", "#"):
        return None
    try:
        value = int(instances)
    except (TypeError, ValueError):
        raise UsageError(
            f"num_of_caching_service_instances={instances!r}: give a whole number "
            "(-1 for all cores)"
        ) from None
    return None if value <= 0 else value


def ManageMapServerCacheStatus(
    input_service: str | os.PathLike[str],
    manage_mode: str,
    scales: Sequence[float] | str | None = None,
    num_of_caching_service_instances: int | str | None = -1,
    report_folder: str | os.PathLike[str] | None = None,
    area_of_interest: object | None = None,
    report_extent: Any = None,
) -> Result:
    """Delete, rebuild or report the status of a map tile cache.

    Args:
        input_service: the cache: its folder (holding ``conf.xml``), service folder or file.
        manage_mode: ``DELETE_CACHE_STATUS``, ``REBUILD_CACHE_STATUS`` or
            ``REPORT_BUNDLE_STATUS``.
        scales: scales for the report (list of numbers or ``"s1;s2"``).
        num_of_caching_service_instances: worker processes; -1 means all cores.
        report_folder: the folder of a report's ``Status.gdb``.
        area_of_interest: the report's area of interest (vector file path or shapely geometry).
        report_extent: the report's extent (tuple or ``"xmin ymin xmax ymax"``).

    Returns:
        A :class:`Result` with status 4 (succeeded).

    Raises:
        UsageError: bad input (unknown mode, not a cache...), as arcpy raises ``ExecuteError``.
        CacheStatusError: the run failed; the previous status is left in place.
    """
    mode = str(manage_mode).strip().upper()
    if mode not in MODES:
        raise UsageError(f"manage_mode={manage_mode!r}: use one of {', '.join(MODES)}")
    source = CacheSource(input_service)
    execution = Execution(_workers(num_of_caching_service_instances))
    messages = [f"Start: {mode} on {input_service}"]
    if mode == operations.REPORT:
        if report_folder in (None, "", "#"):
            raise UsageError(
                "REPORT_BUNDLE_STATUS needs report_folder, the folder of the report's Status.gdb"
            )
        coverage = Coverage(
            scales=None if scales in (None, "", "#") else scales,
            aoi=None if area_of_interest in (None, "", "#") else area_of_interest,
            extent=_extent(report_extent),
        )
        store = ReportStore(str(report_folder))
        result = operations.run_report(source, store, coverage=coverage, execution=execution)
        return _finish(messages, result)
    ignored = {
        "scales": scales,
        "report_folder": report_folder,
        "area_of_interest": area_of_interest,
        "report_extent": report_extent,
    }
    for name, value in ignored.items():
        if value not in (None, "", "#"):
            messages.append(f"WARNING: {name} is used by REPORT_BUNDLE_STATUS only; ignored")
    if mode == operations.DELETE:
        removed = operations.run_delete(source)
        messages += [f"Deleted {path}" for path in removed] or ["No cache status to delete"]
        outputs = [str(removed[0])] if removed else [""]
        messages.append("Succeeded.")
        return Result(SUCCEEDED, messages, outputs)
    return _finish(messages, operations.run_rebuild(source, execution=execution))


def _extent(value: Any) -> str | tuple[float, ...] | None:
    """arcpy's extent forms: ``"xmin ymin xmax ymax"``, a tuple, or an ``arcpy.Extent``-like."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "#")):
        return None
    if isinstance(value, str):
        return value
    if hasattr(value, "XMin"):
        return (value.XMin, value.YMin, value.XMax, value.YMax)
    return tuple(value)


def _finish(messages: list[str], report: StatusReport) -> Result:
    for lv in report.levels:
        pct = "n/a" if lv.percent_complete is None else f"{lv.percent_complete:.2f}%"
        messages.append(
            f"Level {lv.level} (1:{lv.scale:,.0f}): {lv.tiles_present:,} of "
            f"{lv.tiles_expected:,} tiles, {pct}, {lv.bundles:,} bundles"
        )
    messages += [f"WARNING: {w}" for w in report.warnings]
    messages += [f"WARNING: {p.bundle}: {p.kind}: {p.detail}" for p in report.problems]
    messages.append(f"Status written to {report.status_path}")
    messages.append(f"Succeeded in {report.elapsed_s:.2f} s.")
    return Result(SUCCEEDED, messages, [report.status_path or ""], report)
