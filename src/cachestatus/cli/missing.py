"""``cachestatus missing``: the areas still to seed."""

from __future__ import annotations

import json

import click

from ..request import CacheSource, Coverage, Execution
from . import options
from .context import Context, command


@command
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=str),
    help="Polygons of the missing tiles: .geojson, .gpkg or .shp.",
)
@click.option(
    "--tiles",
    "tiles_path",
    type=click.Path(path_type=str),
    help="Also list the missing tiles, one z/x/y a line (small sets).",
)
@options.coverage_options
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@options.execution_options()
@options.json_option
@options.source_options
@click.pass_obj
def missing(
    ctx: Context,
    source: CacheSource,
    coverage: Coverage,
    execution: Execution,
    out_path: str,
    tiles_path: str | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """The areas still to seed: polygons of the expected tiles not present, per level."""
    from ..operations import run_missing

    with options.progress_shown(execution):
        result = run_missing(
            source,
            out_path,
            tiles=tiles_path,
            overwrite=overwrite,
            coverage=coverage,
            execution=execution,
        )
    for warning in result.warnings:
        ctx.warn(warning)
    summary = [
        {"level": a.level, "scale": a.scale, "tiles_missing": a.tiles_missing, "exact": a.exact}
        for a in result.areas
    ]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "cache": source.path,
                    "out": out_path,
                    "tiles": tiles_path,
                    "levels": summary,
                    "totals": {"bundles_read": result.bundles_read, "bundles_reused": 0},
                },
                indent=2,
            )
        )
    else:
        for item in summary:
            click.echo(
                f"level {item['level']:>2}  1:{item['scale']:,.0f}  "
                f"{item['tiles_missing']:,} tiles missing"
                + ("" if item["exact"] else " (the polygon covers them, not exactly)")
            )
    ctx.note(f"Missing areas: {out_path}" + (f"; tiles: {tiles_path}" if tiles_path else ""))
