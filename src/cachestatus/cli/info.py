"""``cachestatus info``: what a cache is, without scanning it."""

from __future__ import annotations

import json

import click

from ..request import CacheSource
from . import options
from .context import Context, command


@command
@options.json_option
@options.source_options
@click.pass_obj
def info(ctx: Context, as_json: bool, source: CacheSource) -> None:
    """Show the tiling scheme, format, extent and levels of CACHE."""
    from ..operations import level_infos
    from ..render import info_json, print_info

    with source.open() as reader:
        levels = level_infos(reader)
        if as_json:
            click.echo(json.dumps(info_json(reader, levels), indent=2))
        else:
            print_info(reader, levels)
        for name in reader.unknown_levels():
            ctx.warn(f"level folder {name} is not a level of the tiling scheme")
