"""The ``cachestatus`` group: ``--version``, ``-v``/``-q`` and logging, and its commands."""

from __future__ import annotations

import importlib
import logging
import sys

import click

# Every command reads or writes arrays. Imported here, first, numpy costs ~10 ms less than when
# its first import comes at the end of a command's chain of imports (measured with numpy 2.4;
# its typing modules take that much longer there), which every run would pay.
import numpy  # noqa: F401

from .. import __version__
from .context import Context, PlainFormatter

# Each command lives in the module of its name and is imported when it runs (or for help), so a
# run loads only its own command's options and the operations they need.
COMMANDS = ("info", "rebuild", "report", "missing", "verify", "summary", "html", "serve", "delete")


class CommandGroup(click.Group):
    """The group whose commands are the modules named in :data:`COMMANDS`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The command names, in the order help lists them."""
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``, imported from its module; None for an unknown name."""
        if cmd_name not in COMMANDS:
            return None
        command = getattr(importlib.import_module(f"{__package__}.{cmd_name}"), cmd_name)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=CommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    level = (
        logging.DEBUG
        if verbosity > 1
        else logging.INFO
        if verbosity > 0
        else logging.WARNING
        if verbosity == 0
        else logging.ERROR
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(levelname)s %(name)s: %(message)s")
        if verbosity > 0
        else PlainFormatter()
    )
    # The handler's level too: libraries that set their own loggers' levels (distributed sets
    # INFO on import) speak at this verbosity like everything else.
    handler.setLevel(level)
    logging.basicConfig(handlers=[handler], level=level)  # a no-op where logging is set up
    if verbosity < 2:  # GDAL's per-write record counts only with -vv
        logging.getLogger("pyogrio").setLevel(logging.WARNING)
