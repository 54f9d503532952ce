"""What every command shares: the report's table or JSON on stdout, warnings and notes on
stderr, and the mapping of errors and interrupts to one-line messages and exit codes."""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import CacheStatusError, Terminated, UsageError
from . import leave_start_up_alone

if TYPE_CHECKING:
    from rich.console import Console

    from ..models import StatusReport

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """Options shared by every command."""

    def __init__(self, verbosity: int) -> None:
        self.verbosity = verbosity

    # Made on first use: rich is imported only to show a traceback (-v).
    @functools.cached_property
    def err(self) -> Console:
        """Rich console on stderr, for tracebacks."""
        from rich.console import Console

        return Console(stderr=True, soft_wrap=True)

    def warn(self, message: str) -> None:
        """A warning on stderr, unless ``-q``."""
        if self.verbosity >= 0:
            click.echo(f"Warning: {message}", err=True)

    def note(self, message: str) -> None:
        """A message on stderr for people (paths written, things deleted), unless ``-q``."""
        if self.verbosity >= 0:
            click.echo(message, err=True)

    def emit_report(self, report: StatusReport, as_json: bool) -> None:
        """A status report: its warnings and problems on stderr, the level table (or JSON) on
        stdout."""
        from ..render import level_table, print_table, report_json

        for warning in report.warnings:
            self.warn(warning)
        for problem in report.problems:
            self.warn(f"{problem.bundle}: {problem.kind}: {problem.detail}")
        if report.requests_retried:
            self.note(f"{report.requests_retried:,} requests retried after throttling")
        if as_json:
            click.echo(json.dumps(report_json(report), indent=2))
        else:
            print_table(level_table(report))
            if report.status_path:
                self.note(f"Status: {report.status_path}")


class PlainFormatter(logging.Formatter):
    """``Warning: message`` and ``Error: message``, as the command's own lines are written."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line, labelled by its level."""
        label = "Error" if record.levelno >= logging.ERROR else record.levelname.capitalize()
        return f"{label}: {record.getMessage()}"


def _fail(ctx: Context, message: str, code: int) -> None:
    # One plain line: messages are read by people and grepped by scripts.
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


@contextmanager
def _interrupts_raise() -> Iterator[None]:
    """While a command runs, SIGINT raises KeyboardInterrupt and SIGTERM :class:`Terminated`,
    so that ``finally`` and ``with`` blocks clean up (worker processes, temporary stores)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers: dict[int, Callable[[int, Any], None]] = {signal.SIGINT: signal.default_int_handler}
    if hasattr(signal, "SIGTERM"):
        handlers[signal.SIGTERM] = _raise_terminated
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _quiet_signals() -> None:
    """Once interrupted, further interrupts are ignored while the run winds down and exits."""
    import threading

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
            if signum is not None:
                signal.signal(signum, signal.SIG_IGN)


def handle_errors(func: F) -> F:
    """Turn the package's errors into one-line messages and exit codes; tracebacks with -v.

    Interrupts end the run with one line and 130 (SIGINT) or 143 (SIGTERM), once the run has
    stopped its workers and removed its temporary files. It wraps the options' decorators too:
    the request objects they build report bad values as the command's own errors.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context().find_object(Context)
        assert ctx is not None
        leave_start_up_alone()  # the command's modules are imported by now
        try:
            with _interrupts_raise():
                return func(*args, **kwargs)
        except UsageError as exc:
            if ctx.verbosity > 0:
                ctx.err.print_exception()
            _fail(ctx, str(exc), 2)
        except CacheStatusError as exc:
            if ctx.verbosity > 0:
                ctx.err.print_exception()
            _fail(ctx, f"{exc} (nothing was changed)", 1)
        except KeyboardInterrupt as exc:
            _quiet_signals()
            signum = exc.signum if isinstance(exc, Terminated) else int(signal.SIGINT)
            name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
            _fail(ctx, f"interrupted ({name}); the previous status is unchanged", 128 + signum)
        except Exception as exc:
            if ctx.verbosity > 0:
                ctx.err.print_exception()
            _fail(ctx, f"{type(exc).__name__}: {exc} (run with -v for details)", 1)

    return wrapper  # type: ignore[return-value]


def command(func: Callable[..., Any]) -> click.Command:
    """A command whose errors become one-line messages and exit codes (:func:`handle_errors`,
    around the decorators of its options too)."""
    return click.command()(handle_errors(func))
