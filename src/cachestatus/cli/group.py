"""The ``cachestatus`` group: ``--version``, ``-v``/``-q`` and logging, and its commands."""

from __future__ import annotations

import logging
import sys

import click

from .. import __version__
from .context import Context, PlainFormatter
from .delete import delete
from .info import info
from .missing import missing
from .rebuild import rebuild
from .report import report
from .summary import summary
from .verify import verify


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cachestatus")
@click.option("-v", "--verbose", count=True, help="More output; tracebacks on errors.")
@click.option("-q", "--quiet", count=True, help="Less output: no warnings, no progress.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: int) -> None:
    """Rebuild, report and delete the status of map tile caches."""
    verbosity = verbose - quiet
    ctx.obj = Context(verbosity)
    # Warnings logged by readers and workers read as the command's own ("Warning: ..."); -v
    # names where they come from; -q leaves only errors.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(levelname)s %(name)s: %(message)s")
        if verbosity > 0
        else PlainFormatter()
    )
    logging.basicConfig(  # a no-op where the host program set logging up already
        level=logging.DEBUG
        if verbosity > 1
        else logging.INFO
        if verbosity > 0
        else logging.WARNING
        if verbosity == 0
        else logging.ERROR,
        handlers=[handler],
    )
    if verbosity < 2:  # GDAL's per-write record counts only with -vv
        logging.getLogger("pyogrio").setLevel(logging.WARNING)


for _command in (info, rebuild, report, missing, verify, summary, delete):
    main.add_command(_command)
