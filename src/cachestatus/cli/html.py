"""``cachestatus html``: the stored status as one self-contained HTML page."""

from __future__ import annotations

import json

import click

from ..request import CacheSource
from . import options
from .context import Context, command


@command
@options.status_option
@click.option(
    "--out", default=None, type=click.Path(path_type=str), help="The page (default: <store>.html)."
)
@click.option("--levels", default=None, help="Only these levels: 0-5,7.")
@click.option(
    "--background",
    type=click.Choice(["tiles", "none"]),
    default="tiles",
    show_default=True,
    help="The map's background: the cache's own tiles of whole coarse levels, or none.",
)
@click.option(
    "--background-budget",
    default="3MB",
    show_default=True,
    help="Stored bytes of background tiles the page holds, at most (3MB, 500kB...).",
)
@click.option("--title", default=None, help="The page's title.")
@options.json_option
@options.source_options
@click.pass_obj
def html(
    ctx: Context,
    status: str | None,
    out: str | None,
    levels: str | None,
    background: str,
    background_budget: str,
    title: str | None,
    as_json: bool,
    source: CacheSource,
) -> None:
    """One HTML file showing the stored status of CACHE on a map of its own tiles.

    It opens from disk with no network (OpenLayers is inside it) and can be mailed.
    """
    from ..reportpage import parse_budget, write_html
    from ..selection import parse_levels

    result = write_html(
        source,
        status,
        out,
        levels=parse_levels(levels) if levels is not None else None,
        background=background,
        budget=parse_budget(background_budget),
        title=title,
    )
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        ctx.note(f"Page: {result.path} ({result.size:,} bytes)")
