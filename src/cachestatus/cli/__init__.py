"""The ``cachestatus`` command line (spec §3.1).

Data goes to stdout (a table, or JSON with ``--json``); progress, warnings and errors to stderr.
Exit codes: 0 done (warnings included), 1 the run failed, 2 bad input or usage.

One module per command (:mod:`.rebuild`, :mod:`.report`...), the group in :mod:`.group`, what
every command shares (output, errors and exit codes) in :mod:`.context`, and the options, which
hand commands the request objects of :mod:`cachestatus.request`, in :mod:`.options`.

This module imports nothing else: ``main``, the group, is imported on first use, so that the
``cachestatus`` script ends with one line when interrupted while it starts up; the script runs
:func:`run`, which first lets :mod:`cachestatus.unchanged` answer a rebuild that has nothing to
read.
"""

from __future__ import annotations

import atexit
import gc
import os
import signal
import sys
from typing import Any


def _exit_on_early_interrupt(signum: int, frame: object) -> None:
    """Before a command runs (imports, parsing), an interrupt has nothing to clean up."""
    name = "SIGTERM" if signum == getattr(signal, "SIGTERM", None) else "SIGINT"
    os.write(2, f"Error: interrupted ({name}); nothing was changed\n".encode())
    os._exit(128 + signum)


def exit_on_early_interrupts() -> None:
    """Make SIGINT and SIGTERM end the program at once, with one line, until a command runs."""
    for signum in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
        if signum is not None:
            signal.signal(signum, _exit_on_early_interrupt)


#: Set by :func:`run_as_program`: this process runs the program, it does not host the commands.
_program = False


def run_as_program() -> None:
    """Set up a run of the ``cachestatus`` program: an interrupt during start-up ends it with
    one line (:func:`exit_on_early_interrupts`), and the garbage collector leaves alone what
    outlives the run: the objects start-up made, from the command's start on
    (:func:`leave_start_up_alone`), and every object at exit, which the process frees whole.
    A full collection walks them all (numpy's, GDAL's, the modules'): about 40 ms of a run
    that reads little, such as an incremental rebuild of an unchanged cache."""
    global _program
    _program = True
    exit_on_early_interrupts()
    atexit.register(gc.freeze)  # registered first: runs after the other exit handlers


def leave_start_up_alone() -> None:
    """When the program runs (:func:`run_as_program`), move every object alive now out of the
    garbage collector's reach (``gc.freeze``); a host that imports the commands keeps its own
    collection."""
    if _program:
        gc.freeze()


# Run as the cachestatus script (python -m cachestatus.cli: see __main__), an interrupt during
# start-up ends it with one line; imported as a module, the host's handlers stay.
if os.path.basename(sys.argv[0]).split(".")[0] == "cachestatus":
    run_as_program()


def run() -> None:
    """The ``cachestatus`` program: a rebuild of an unchanged cache into a GeoPackage store is
    answered at once, through SQLite (:mod:`cachestatus.unchanged`); every other command, and
    that one on any doubt, by the command line (:func:`main`)."""
    if not _program:
        run_as_program()
    try:
        if "rebuild" in sys.argv[1:]:  # the only command it answers: others load none of it
            from ..unchanged import answer

            code = answer(sys.argv[1:])
            if code is not None:
                sys.exit(code)
        from .group import main

        main()
    finally:
        # CPython marks a KeyboardInterrupt that left code run by ``exec`` of a string as
        # unhandled, whoever caught it (dataclasses and named tuples make their methods that
        # way while a module is imported), and a ``python -m`` run then ends by SIGINT
        # whatever code it exits with. Every ``exec`` of a string clears the mark first; an
        # interrupt that does leave the program is marked again as it leaves.
        exec("")


def __getattr__(name: str) -> Any:
    if name == "main":
        from .group import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["exit_on_early_interrupts", "leave_start_up_alone", "main", "run", "run_as_program"]
