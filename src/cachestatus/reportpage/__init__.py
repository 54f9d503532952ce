"""The report page of a stored status, for ``cachestatus html`` (everything embedded) and
``cachestatus serve`` (fed by JSON endpoints): the data from the store (:mod:`.data`), the
background tiles (:mod:`.background`), the charts (:mod:`.charts`) and the template
(:mod:`.page`, ``templates/``, ``static/``)."""

from __future__ import annotations

from .background import (
    DEFAULT_BUDGET,
    Background,
    background_mosaic,
    background_tiles,
    parse_budget,
)
from .data import level_bundles, page_data
from .html import HtmlResult, find_store, page_path, write_html
from .page import render_page

__all__ = [
    "DEFAULT_BUDGET",
    "Background",
    "HtmlResult",
    "background_mosaic",
    "background_tiles",
    "find_store",
    "level_bundles",
    "page_data",
    "page_path",
    "parse_budget",
    "render_page",
    "write_html",
]
