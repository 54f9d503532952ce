"""``cachestatus summary``: the stored status, without rescanning."""

from __future__ import annotations

import click

from ..request import CacheSource
from . import options
from .context import Context, command


@command
@options.status_option
@options.json_option
@options.source_options
@click.pass_obj
def summary(ctx: Context, status: str | None, as_json: bool, source: CacheSource) -> None:
    """Per-level table of the stored status of CACHE, without rescanning."""
    from ..operations import run_summary

    ctx.emit_report(run_summary(source, status), as_json)
