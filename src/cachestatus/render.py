"""Presenting results: the JSON contract (spec §3.2) and tables for people.

Imports only the results' own types: rich loads with the first table, the cache's modules
with ``info``'s output, so that a rebuild answered without numpy (:mod:`cachestatus.unchanged`)
reports through these same functions.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

from .results import LevelSummary, Problem, StatusReport

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from .formats import CacheReader
    from .operations import LevelInfo
    from .tilecheck import LevelCheck, VerifyReport


def _level_dict(lv: LevelSummary, with_level: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if with_level:
        out.update(level=lv.level, scale=lv.scale, resolution=lv.resolution)
    pct = lv.percent_complete
    out.update(
        bundles=lv.bundles,
        tiles_expected=lv.tiles_expected,
        tiles_present=lv.tiles_present,
        tiles_stray=lv.tiles_stray,
        percent_complete=None if pct is None else round(pct, 6),
        tile_bytes=lv.tile_bytes,
    )
    if lv.tiles_blank is not None:
        out["tiles_blank"] = lv.tiles_blank
    return out


def _bundle_counts(report: StatusReport) -> dict[str, int]:
    """``bundles_read`` and ``bundles_reused``, for a run that scanned."""
    if report.bundles_read is None:
        return {}
    return {"bundles_read": report.bundles_read, "bundles_reused": report.bundles_reused or 0}


def report_json(report: StatusReport) -> dict[str, Any]:
    """The ``--json`` document of rebuild and summary (keys may be added, never renamed).

    For a cache in object storage, ``totals`` also holds ``requests_retried``.
    """
    totals = {**_level_dict(report.totals, with_level=False), **_bundle_counts(report)}
    if report.requests_retried is not None:
        totals["requests_retried"] = report.requests_retried
    return {
        "cache": report.cache,
        "format": report.format,
        "status_path": report.status_path,
        "job_id": report.job_id,
        "mode": report.mode,
        "elapsed_s": None if math.isnan(report.elapsed_s) else round(report.elapsed_s, 3),
        "levels": [_level_dict(lv) for lv in report.levels],
        "totals": totals,
        "problems": [_problem_dict(p) for p in report.problems],
        "warnings": list(report.warnings),
    }


def stdout_console() -> Console:
    """The rich console tables are printed on: stdout; piped output keeps whole numbers (a
    wide virtual terminal instead of rich's 80 columns)."""
    from rich.console import Console

    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def bundles_note(report: StatusReport) -> str:
    """The line a rebuild prints for people after its table: bundles read and reused."""
    return f"{report.bundles_read or 0:,} bundles read, {report.bundles_reused or 0:,} reused"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def level_table(report: StatusReport) -> Table:
    """Per-level table: scale, bundles, expected, present, stray, percent, bytes (and blank
    tiles, when counted)."""
    title = f"{report.mode} · {report.format} · {report.cache} · job {report.job_id}"
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    blank = report.totals.tiles_blank is not None
    names = ["Level", "Scale", "Resolution", "Bundles", "Expected", "Present", "Stray"]
    names += ["Blank"] if blank else []
    for name in [*names, "% complete", "Tile bytes"]:
        table.add_column(name, justify="right")

    def cells(lv: LevelSummary) -> list[str]:
        counts = [f"{lv.bundles:,}", f"{lv.tiles_expected:,}", f"{lv.tiles_present:,}"]
        counts += [f"{lv.tiles_stray:,}"] + ([f"{lv.tiles_blank or 0:,}"] if blank else [])
        return [*counts, _pct(lv.percent_complete), f"{lv.tile_bytes:,}"]

    for lv in report.levels:
        table.add_row(str(lv.level), f"{lv.scale:,.2f}", f"{lv.resolution:.6g}", *cells(lv))
    table.add_section()
    table.add_row("all", "", "", *cells(report.totals), style="bold")
    return table


def _problem_dict(p: Problem) -> dict[str, Any]:
    out: dict[str, Any] = {"bundle": p.bundle, "kind": p.kind, "detail": p.detail}
    if p.tile:
        out["tile"] = p.tile
    return out


def _check_dict(lv: LevelCheck) -> dict[str, Any]:
    out: dict[str, Any] = {"bundles": lv.bundles, "tiles_checked": lv.tiles, "tiles_bad": lv.bad}
    if lv.blank is not None:
        out["tiles_blank"] = lv.blank
    return out


def verify_json(report: VerifyReport) -> dict[str, Any]:
    """The ``verify --json`` document: per-level counts, and the problems (bad tiles under
    ``tile``, unreadable bundles without)."""
    return {
        "cache": report.cache,
        "format": report.format,
        "mode": "VERIFY",
        "elapsed_s": round(report.elapsed_s, 3),
        "clean": report.clean,
        "levels": [
            {"level": lv.level, "scale": lv.scale, **_check_dict(lv)} for lv in report.levels
        ],
        "totals": {
            **_check_dict(report.totals),
            "bundles_read": report.totals.bundles,
            "bundles_reused": 0,
        },
        "problems": [_problem_dict(p) for p in report.problems],
        "problems_omitted": report.problems_omitted,
        "warnings": list(report.warnings),
    }


def verify_table(report: VerifyReport) -> Table:
    """Per-level table of a deep check: bundles, tiles checked, bad (and blank) tiles."""
    blank = report.totals.blank is not None
    from rich.table import Table

    table = Table(title=f"VERIFY · {report.format} · {report.cache}", title_justify="left")
    names = ["Level", "Scale", "Bundles", "Tiles checked", "Bad tiles"]
    for name in names + (["Blank tiles"] if blank else []):
        table.add_column(name, justify="right")

    def cells(lv: LevelCheck) -> list[str]:
        out = [f"{lv.bundles:,}", f"{lv.tiles:,}", f"{lv.bad:,}"]
        return out + ([f"{lv.blank or 0:,}"] if blank else [])

    for lv in report.levels:
        if lv.bundles:
            table.add_row(str(lv.level), f"{lv.scale:,.2f}", *cells(lv))
    table.add_section()
    table.add_row("all", "", *cells(report.totals), style="bold")
    return table


def info_json(reader: CacheReader, levels: list[LevelInfo]) -> dict[str, Any]:
    """The ``info --json`` document: format, tiling scheme, extent, levels."""
    s = reader.scheme
    extent = reader.full_extent
    from .plan import expected_extent

    grid_extent = expected_extent(reader)
    return {
        "cache": reader.where,
        "format": reader.name,
        "description": reader.description,
        "spatial_reference": {
            "wkid": s.spatial_reference.wkid,
            "latest_wkid": s.spatial_reference.latest_wkid,
            "wkt": s.spatial_reference.wkt,
        },
        "tile_origin": [s.origin_x, s.origin_y],
        "tile_size": [s.tile_cols, s.tile_rows],
        "dpi": s.dpi,
        "tile_format": s.tile_format,
        "storage_format": s.storage_format,
        "full_extent": None if extent is None else list(extent),
        "expected_extent": None if grid_extent is None else list(grid_extent),
        "status_dir": str(reader.status_dir),
        "levels": [
            {
                "level": i.level,
                "scale": i.scale,
                "resolution": i.resolution,
                "tiles_expected": i.tiles_expected,
                "bundle_files": i.bundle_files,
            }
            for i in levels
        ],
    }


def print_info(console: Console, reader: CacheReader, levels: list[LevelInfo]) -> None:
    """``cachestatus info`` for people."""
    doc = info_json(reader, levels)
    s = reader.scheme
    console.print(f"[bold]{doc['cache']}[/bold]")
    console.print(f"  format          {reader.name} ({reader.description})")
    console.print(f"  spatial ref.    {s.spatial_reference}")
    console.print(f"  tile origin     {s.origin_x}, {s.origin_y}")
    console.print(
        f"  tile size       {s.tile_cols} x {s.tile_rows} px at {s.dpi:g} DPI, {s.tile_format}"
    )
    extent = doc["full_extent"]
    console.print(
        "  full extent     "
        + (
            ", ".join(f"{v}" for v in extent)
            if extent
            else "none declared (the whole grid is expected)"
        )
    )
    console.print(f"  status store    {doc['status_dir']}")
    from rich.table import Table

    table = Table(show_edge=False)
    for name in ("Level", "Scale", "Resolution", "Expected tiles", "Bundle files"):
        table.add_column(name, justify="right")
    for i in levels:
        table.add_row(
            str(i.level),
            f"{i.scale:,.2f}",
            f"{i.resolution:.6g}",
            f"{i.tiles_expected:,}",
            f"{i.bundle_files:,}",
        )
    console.print(table)
