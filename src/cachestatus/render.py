"""Presenting results: the JSON contract (spec §3.2) and tables for people.

Imports only the results' own types, and draws its tables itself (:class:`TextTable`): the
cache's modules load with ``info``'s output, so that a rebuild answered without numpy
(:mod:`cachestatus.unchanged`) reports through these same functions, without loading rich
(which only the progress bars use).
"""

from __future__ import annotations

import math
import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

from .results import LevelSummary, Problem, StatusReport

if TYPE_CHECKING:
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


#: The lines of a table, as rich's default ``HEAVY_HEAD`` box draws them: for each of the top,
#: the header's rule, a section's rule and the bottom, its left end, fill, crossing and right
#: end; then the bars between the header's cells and the rows' cells.
_BOX = {
    "top": ("┏", "━", "┳", "┓"),
    "head": ("┡", "━", "╇", "┩"),
    "section": ("├", "─", "┼", "┤"),
    "bottom": ("└", "─", "┴", "┘"),
    "bars": ("┃", "│"),
}
#: The box in ASCII, for a stream whose encoding has none of its characters: heavy rules ``=``
#: (the header's), light ones ``-``, bars ``|``, corners and crossings ``+``.
_TO_ASCII = str.maketrans("┏┳┓┡╇┩├┼┤└┴┘━─┃│", "++++++++++++=-||")
_BOLD, _ITALIC, _PLAIN = "\x1b[1m", "\x1b[3m", "\x1b[0m"


class TextTable:
    """A table for people: a title, columns aligned right, rows in sections (the totals apart
    from the levels), drawn with box-drawing lines.

    Drawn at the width of its cells, never cut to a terminal's: a number is always printed
    whole, and a narrow terminal folds the lines rather than the figures.
    """

    def __init__(self, columns: list[str], title: str | None = None, edge: bool = True) -> None:
        self.columns = columns
        self.title = title
        #: Whether the table has an outer frame (``info``'s has only the lines between cells).
        self.edge = edge
        #: The rows: their cells, whether they stand out (bold), and whether a rule is above.
        self.rows: list[tuple[list[str], bool, bool]] = []
        self._section = False

    def add_row(self, *cells: str, bold: bool = False) -> None:
        """A row, one text a column; ``bold`` for a row that stands out (the totals)."""
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append((list(cells), bold, self._section))
        self._section = False

    def add_section(self) -> None:
        """A rule between the rows before and the row added next."""
        self._section = True

    def lines(self, styled: bool = False) -> list[str]:
        """The table's lines; ``styled``: with a terminal's bold and italic (the header, the
        rows that stand out, the title)."""
        widths = [len(name) for name in self.columns]
        for cells, _, _ in self.rows:
            widths = [max(width, len(cell)) for width, cell in zip(widths, cells, strict=True)]

        def rule(kind: str) -> str:
            left, fill, cross, right = _BOX[kind]
            inner = cross.join(fill * (width + 2) for width in widths)
            return f"{left}{inner}{right}" if self.edge else inner

        def row(cells: list[str], bar: str, bold: bool) -> str:
            texts = [cell.rjust(width) for cell, width in zip(cells, widths, strict=True)]
            if styled and bold:
                texts = [f"{_BOLD}{text}{_PLAIN}" for text in texts]
            inner = f" {bar} ".join(texts)
            return f"{bar} {inner} {bar}" if self.edge else f" {inner}"

        head_bar, bar = _BOX["bars"]
        out = []
        if self.title is not None:
            out.append(f"{_ITALIC}{self.title}{_PLAIN}" if styled else self.title)
        out += [rule("top")] if self.edge else []
        out += [row(self.columns, head_bar, True), rule("head")]
        for cells, bold, section in self.rows:
            out += [rule("section")] if section else []
            out.append(row(cells, bar, bold))
        out += [rule("bottom")] if self.edge else []
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal that shows bold and italic (not ``TERM=dumb``)."""
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def print_table(table: TextTable, stream: TextIO | None = None) -> None:
    """Print ``table`` on ``stream`` (stdout): styled on a terminal, plain in a pipe or file.
    Where the stream's encoding lacks some character (a Windows code page), the table is
    framed in ASCII and any other such character printed as ``?``."""
    out = sys.stdout if stream is None else stream
    styled = is_terminal(out)
    text = "".join(f"{line}\n" for line in table.lines(styled))
    encoding = getattr(out, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        text = text.translate(_TO_ASCII).encode(encoding, "replace").decode(encoding)
    out.write(text)


def bundles_note(report: StatusReport) -> str:
    """The line a rebuild prints for people after its table: bundles read and reused."""
    return f"{report.bundles_read or 0:,} bundles read, {report.bundles_reused or 0:,} reused"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def level_table(report: StatusReport) -> TextTable:
    """Per-level table: scale, bundles, expected, present, stray, percent, bytes (and blank
    tiles, when counted)."""
    title = f"{report.mode} · {report.format} · {report.cache} · job {report.job_id}"
    blank = report.totals.tiles_blank is not None
    names = ["Level", "Scale", "Resolution", "Bundles", "Expected", "Present", "Stray"]
    names += ["Blank"] if blank else []
    table = TextTable([*names, "% complete", "Tile bytes"], title=title)

    def cells(lv: LevelSummary) -> list[str]:
        counts = [f"{lv.bundles:,}", f"{lv.tiles_expected:,}", f"{lv.tiles_present:,}"]
        counts += [f"{lv.tiles_stray:,}"] + ([f"{lv.tiles_blank or 0:,}"] if blank else [])
        return [*counts, _pct(lv.percent_complete), f"{lv.tile_bytes:,}"]

    for lv in report.levels:
        table.add_row(str(lv.level), f"{lv.scale:,.2f}", f"{lv.resolution:.6g}", *cells(lv))
    table.add_section()
    table.add_row("all", "", "", *cells(report.totals), bold=True)
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


def verify_table(report: VerifyReport) -> TextTable:
    """Per-level table of a deep check: bundles, tiles checked, bad (and blank) tiles."""
    blank = report.totals.blank is not None
    names = ["Level", "Scale", "Bundles", "Tiles checked", "Bad tiles"]
    names += ["Blank tiles"] if blank else []
    table = TextTable(names, title=f"VERIFY · {report.format} · {report.cache}")

    def cells(lv: LevelCheck) -> list[str]:
        out = [f"{lv.bundles:,}", f"{lv.tiles:,}", f"{lv.bad:,}"]
        return out + ([f"{lv.blank or 0:,}"] if blank else [])

    for lv in report.levels:
        if lv.bundles:
            table.add_row(str(lv.level), f"{lv.scale:,.2f}", *cells(lv))
    table.add_section()
    table.add_row("all", "", *cells(report.totals), bold=True)
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


def print_info(reader: CacheReader, levels: list[LevelInfo]) -> None:
    """``cachestatus info`` for people, on stdout."""
    doc = info_json(reader, levels)
    s = reader.scheme
    extent = doc["full_extent"]
    where = doc["cache"]
    lines = [
        f"{_BOLD}{where}{_PLAIN}" if is_terminal(sys.stdout) else where,
        f"  format          {reader.name} ({reader.description})",
        f"  spatial ref.    {s.spatial_reference}",
        f"  tile origin     {s.origin_x}, {s.origin_y}",
        f"  tile size       {s.tile_cols} x {s.tile_rows} px at {s.dpi:g} DPI, {s.tile_format}",
        "  full extent     "
        + (
            ", ".join(f"{v}" for v in extent)
            if extent
            else "none declared (the whole grid is expected)"
        ),
        f"  status folder   {doc['status_dir']}",
    ]
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    table = TextTable(
        ["Level", "Scale", "Resolution", "Expected tiles", "Bundle files"], edge=False
    )
    for i in levels:
        table.add_row(
            str(i.level),
            f"{i.scale:,.2f}",
            f"{i.resolution:.6g}",
            f"{i.tiles_expected:,}",
            f"{i.bundle_files:,}",
        )
    print_table(table)
