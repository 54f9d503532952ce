"""``cachestatus verify``: the deep check of every stored tile."""

from __future__ import annotations

import json
import sys

import click

from ..request import CacheSource, Coverage, Execution
from . import options
from .context import Context, command


@command
@options.coverage_options
@click.option("--decode", is_flag=True, help="Also decode every PNG, JPEG and WebP tile.")
@options.blank_option
@options.execution_options("Verifying")
@options.json_option
@options.source_options
@click.pass_obj
def verify(
    ctx: Context,
    source: CacheSource,
    coverage: Coverage,
    execution: Execution,
    decode: bool,
    blank: bool,
    as_json: bool,
) -> None:
    """Deep check: read every stored tile and name each bad one. Exit 1 when any is."""
    from ..operations import run_verify
    from ..render import print_table, verify_json, verify_table

    with options.progress_shown(execution):
        report = run_verify(
            source, coverage=coverage, execution=execution, decode=decode, blank=blank
        )
    for warning in report.warnings:
        ctx.warn(warning)
    if as_json:
        click.echo(json.dumps(verify_json(report), indent=2))
    else:
        for problem in report.problems:
            click.echo(f"{problem.tile or problem.bundle}  {problem.kind}: {problem.detail}")
        print_table(verify_table(report))
    if not report.clean:
        ctx.note(
            f"{report.totals.bad:,} bad tiles, "
            f"{sum(1 for p in report.problems if not p.tile):,} unreadable bundles"
        )
        sys.exit(1)
