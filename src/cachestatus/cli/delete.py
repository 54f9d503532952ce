"""``cachestatus delete``: DELETE_CACHE_STATUS."""

from __future__ import annotations

import click

from ..request import CacheSource
from . import options
from .context import Context, command


@command
@options.status_option
@options.source_options
@click.pass_obj
def delete(ctx: Context, status: str | None, source: CacheSource) -> None:
    """DELETE_CACHE_STATUS: remove the status store of CACHE (nothing to delete is fine)."""
    from ..operations import run_delete

    removed = run_delete(source, status)
    for path in removed:
        ctx.note(f"Deleted {path}")
    if not removed:
        ctx.note("No cache status to delete.")
