"""``cachestatus rebuild``: REBUILD_CACHE_STATUS."""

from __future__ import annotations

from dataclasses import replace

import click

from ..request import CacheSource, Counting, Execution, StatusStore
from . import options
from .context import Context, command


@command
@options.status_store_options
@options.counting_options
@options.execution_options()
@click.option(
    "--full",
    is_flag=True,
    help="Read every bundle, even those unchanged since the previous rebuild of the same "
    "request (whose rows are reused by default).",
)
@options.json_option
@options.sized_source_options
@click.pass_obj
def rebuild(
    ctx: Context,
    source: CacheSource,
    store: StatusStore,
    counting: Counting,
    execution: Execution,
    full: bool,
    as_json: bool,
) -> None:
    """REBUILD_CACHE_STATUS: scan CACHE and write its status store."""
    from ..operations import run_rebuild

    execution = replace(execution, reuse=not full)
    with options.progress_shown(execution):
        report = run_rebuild(source, store, counting=counting, execution=execution)
    ctx.emit_report(report, as_json)
    if not as_json:
        from ..render import bundles_note

        ctx.note(bundles_note(report))
