"""``cachestatus html``: the stored status as one self-contained HTML page."""

from __future__ import annotations

import json
from dataclasses import replace

import click

from ..progress import BundleProgress
from ..request import CacheSource, Coverage, Execution, StatusStore
from . import options
from .context import Context, command


def _bar(execution: Execution, description: str) -> Execution:
    """``execution`` with a bar of its own (a bar shows one scan) named ``description``."""
    shown = isinstance(execution.progress, BundleProgress) and execution.progress.enabled
    return replace(execution, progress=BundleProgress(description, force=shown, quiet=not shown))


@command
@options.status_option
@click.option(
    "--out", default=None, type=click.Path(path_type=str), help="The page (default: <store>.html)."
)
@click.option("--levels", default=None, help="Only these levels: 0-5,7.")
@click.option(
    "--rebuild",
    "rebuild_first",
    is_flag=True,
    help="Scan the cache first, as `cachestatus rebuild` does, into the default or --status store.",
)
@click.option(
    "--verify",
    "verify_tiles",
    is_flag=True,
    help="Also read every stored tile, as `cachestatus verify` does, and list the bad ones.",
)
@click.option(
    "--background",
    type=click.Choice(["tiles", "mosaic", "none"]),
    default="tiles",
    show_default=True,
    help="The map's background: the cache's own tiles of whole coarse levels, one level "
    "composited into one image (up to 4096 px a side), or none.",
)
@click.option(
    "--background-budget",
    default="3MB",
    show_default=True,
    help="Bytes of background tiles (or of the mosaic) the page holds, at most (3MB, 500kB...).",
)
@click.option("--title", default=None, help="The page's title.")
@options.execution_options()
@options.json_option
@options.source_options
@click.pass_obj
def html(
    ctx: Context,
    status: str | None,
    out: str | None,
    levels: str | None,
    rebuild_first: bool,
    verify_tiles: bool,
    background: str,
    background_budget: str,
    title: str | None,
    execution: Execution,
    as_json: bool,
    source: CacheSource,
) -> None:
    """One HTML file showing the stored status of CACHE on a map of its own tiles.

    It opens from disk with no network (OpenLayers is inside it) and can be mailed.
    """
    from ..errors import UsageError
    from ..operations import run_rebuild, run_verify, store_to_read
    from ..reportpage import find_store, page_path, parse_budget, write_html
    from ..selection import parse_levels, requested_levels

    chosen = parse_levels(levels) if levels is not None else None
    try:
        budget = parse_budget(background_budget)
    except UsageError as exc:
        raise UsageError(f"--background-budget {exc}") from None
    with source.open() as reader:  # bad levels or a bad --out stop before any scan
        if chosen is not None:
            requested_levels(reader.scheme, chosen)
        if rebuild_first:
            page_path(reader, store_to_read(reader, status), out)
    if rebuild_first:
        with options.progress_shown(execution):
            rebuilt = run_rebuild(source, StatusStore(status), execution=execution)
        for warning in rebuilt.warnings:
            ctx.warn(warning)
        ctx.note(f"Status rebuilt: {rebuilt.status_path}")
    with source.open() as reader:  # a missing store or a bad --out stops before the check
        page_path(reader, find_store(reader, status), out)
    verified = None
    if verify_tiles:
        checking = _bar(execution, "Verifying")
        with options.progress_shown(checking):
            verified = run_verify(source, coverage=Coverage(chosen), execution=checking)
        for warning in verified.warnings:
            ctx.warn(warning)
    result = write_html(
        source,
        status,
        out,
        levels=chosen,
        background=background,
        budget=budget,
        title=title,
        verified=verified,
    )
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        ctx.note(f"Page: {result.path} ({result.size:,} bytes)")
