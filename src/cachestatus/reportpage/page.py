"""The report page: one template, filled either with everything embedded (``cachestatus html``:
opens from disk, makes no request) or fed by a server's JSON endpoints (``serve``)."""

from __future__ import annotations

import functools
import json
from html import escape
from importlib import resources
from string import Template
from typing import Any

from .background import Background
from .charts import charts

#: What marks a page as written by cachestatus (in its head): such a file may be replaced.
GENERATOR = '<meta name="generator" content="cachestatus'
#: Colours of the statuses on the map and in the legend.
COLOURS = {
    "COMPLETE": "#2ca02c",
    "PARTIAL": "#ff7f0e",
    "EMPTY": "#8c8c8c",
    "MISSING": "#d62728",
    "CORRUPT": "#9467bd",
    "IN_PROGRESS": "#1f77b4",
}


@functools.cache  # package files: read once per process (serve renders on every /report)
def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def json_blob(value: Any) -> str:
    """``value`` as JSON that can sit inside a ``<script>`` element: no NaN (refused), and every
    ``<`` written ``\\u003c``, so a path holding ``</script>`` or ``<!--`` ends nothing."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return text.replace("<", "\\u003c")


def _number(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _level_table(data: dict[str, Any]) -> str:
    states = data["states"]
    head = "".join(
        f"<th>{escape(h)}</th>"
        for h in (
            "level",
            "scale",
            "resolution",
            "bundles",
            "expected",
            "present",
            "stray",
            "%",
            "tile bytes",
            *states,
        )
    )
    body = []
    for row in data["levels"]:
        cells = [
            row["level"],
            row["scale"],
            row["resolution"],
            row["bundles"],
            row["tilesExpected"],
            row["tilesPresent"],
            row["tilesStray"],
            row["percentComplete"],
            row["tileBytes"],
            *(row["states"].get(state, 0) for state in states),
        ]
        body.append(
            f'<tr data-level="{row["level"]}">'
            + "".join(f"<td>{escape(_number(c))}</td>" for c in cells)
            + "</tr>"
        )
    rows = "".join(body)
    table = f"<table class='levels'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return f"<div class='wide'>{table}</div>"


def _problems(data: dict[str, Any]) -> str:
    if not data["problems"]:
        return "<p>None.</p>"
    items = []
    for i, problem in enumerate(data["problems"]):
        tile = problem.get("tile")
        name = escape(tile or problem["bundle"])
        where = (
            f'<a href="#map" class="zoom" data-problem="{i}">{name}</a>'
            if problem["extent"]
            else name
        )
        kind = f"<span class='kind'>{escape(problem['kind'])}</span>"
        # A bad tile reads as ``verify`` prints it: ``L05/R1234/C5678 kind: reason``.
        said = f"{where} {kind}" if tile else f"{kind} {where}"
        items.append(f"<li>{said}: {escape(problem['detail'])}</li>")
    return f"<ul class='problems'>{''.join(items)}</ul>"


def _header(data: dict[str, Any]) -> str:
    header, totals = data["header"], data["totals"]
    job = header["job"] or {}
    facts = [
        ("Cache", header["cache"]),
        ("Format", header["format"]),
        ("CRS", header["crs"]["label"]),
        ("Tile size", "x".join(map(str, header["tileSize"])) if header["tileSize"] else "n/a"),
        ("Tile format", header["tileFormat"] or "n/a"),
        ("Levels (LODs)", header["lods"]),
        ("Status store", header["status"]),
        ("Job", f"{job.get('id', 'n/a')} ({job.get('mode', '')}, {job.get('finished') or ''})"),
        ("Tiles expected", totals["tilesExpected"]),
        ("Tiles present", totals["tilesPresent"]),
        ("Stray tiles", totals["tilesStray"]),
        ("Percent complete", totals["percentComplete"]),
        ("Tile bytes", totals["tileBytes"]),
        ("Bundles", totals["bundles"]),
        *((f"{state} bundles", n) for state, n in totals["states"].items()),
    ]
    rows = "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(_number(value))}</td></tr>"
        for name, value in facts
    )
    return f"<table class='facts'>{rows}</table>"


def _legend() -> str:
    swatches = "".join(
        f"<span class='swatch' style='background:{colour}'></span>{escape(state)} "
        for state, colour in COLOURS.items()
    )
    return f"{swatches}<span class='swatch hatch'></span>missing area"


def render_page(
    data: dict[str, Any],
    *,
    live: bool = False,
    bundles: dict[int, dict[str, Any]] | None = None,
    background: Background | None = None,
    tile_url: str | None = None,
    api_base: str = "api/",
    title: str | None = None,
    notes: tuple[str, ...] = (),
) -> str:
    """The report page.

    Args:
        data: :func:`~.data.page_data`: the header, table, charts and problems are written
            from it in both modes.
        live: ``False``: the page holds everything (``data``, the ``bundles`` of every level,
            the ``background`` tiles as data URIs) and makes no request. ``True``: the page
            holds ``data`` alone (what its header and table show, read once for both), fetches
            ``{api_base}bundles?level=N`` and draws tiles of every level from ``tile_url``.
        bundles: per level, :func:`~.data.level_bundles` (embedded pages).
        background: the stored tiles to embed (embedded pages).
        tile_url: a template with ``{z}`` (LOD level), ``{y}`` (row) and ``{x}`` (column).
        api_base: where the JSON endpoints are, relative to the page.
        title: the page's title (default: the cache's folder name).
        notes: lines for the closing note (what was left out, and why).
    """
    olcss = _asset("static/ol.css")
    config: dict[str, Any] = {
        "live": live,
        "apiBase": api_base,
        "tileUrl": tile_url,
        "colours": COLOURS,
    }
    if live:  # the data the header and table were written from: the page asks for it no more
        embedded: dict[str, Any] = {"page": data}
    else:
        background = background or Background()
        embedded = {
            "page": data,
            "bundles": {str(level): value for level, value in (bundles or {}).items()},
            "background": background.as_json(),
        }
    if background is not None and background.note:
        notes = (f"Background: {background.note}.", *notes)
    cache = data["header"]["cache"] or data["header"]["status"]
    name = title or f"Cache status: {cache.rstrip('/').rsplit('/', 1)[-1]}"
    licence = _asset("static/LICENSE-openlayers.txt")
    return Template(_asset("templates/report.html")).substitute(
        title=escape(name),
        olcss=olcss,
        css=_asset("static/report.css"),
        header=_header(data),
        legend=_legend(),
        table=_level_table(data),
        charts=charts(data["levels"]),
        problems=_problems(data),
        notes="".join(f"<li>{escape(note)}</li>" for note in notes),
        version=escape(data["header"]["version"]),
        ol_version=escape(_asset("static/ol-version.txt").strip()),
        licence=escape(licence),
        licence_comment=licence.replace("--", "- -"),
        config=json_blob(config),
        embedded=json_blob(embedded),
        oljs=_asset("static/ol.js").replace("</script", "<\\/script"),
        js=_asset("static/report.js"),
    )
