"""``cachestatus report``: REPORT_BUNDLE_STATUS."""

from __future__ import annotations

import click

from ..request import CacheSource, Counting, Coverage, Execution, ReportStore
from . import options
from .context import Context, command


@command
@options.report_store_options
@options.coverage_options
@options.counting_options
@options.execution_options()
@options.json_option
@options.sized_source_options
@click.pass_obj
def report(
    ctx: Context,
    source: CacheSource,
    store: ReportStore,
    coverage: Coverage,
    counting: Counting,
    execution: Execution,
    as_json: bool,
) -> None:
    """REPORT_BUNDLE_STATUS: status of chosen levels over an area, written to --out."""
    from ..operations import run_report

    with options.progress_shown(execution):
        result = run_report(
            source, store, coverage=coverage, counting=counting, execution=execution
        )
    ctx.emit_report(result, as_json)
