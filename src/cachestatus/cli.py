"""The ``cachestatus`` command line (spec §3.1).

Data goes to stdout (a table, or JSON with ``--json``); progress, warnings and errors to stderr.
Exit codes: 0 done (warnings included), 1 the run failed, 2 bad input or usage.
"""

from __future__ import annotations

import os
import signal
import sys


def _exit_on_early_interrupt(signum: int, frame: object) -> None:
    """Before a command runs (imports, parsing), an interrupt has nothing to clean up."""
    name = "SIGTERM" if signum == getattr(signal, "SIGTERM", None) else "SIGINT"
    os.write(2, f"Error: interrupted ({name}); nothing was changed\n".encode())
    os._exit(128 + signum)


# Run as a program (python -m cachestatus.cli, or the cachestatus script), an interrupt during
# start-up ends it with one line; imported as a module, the host's handlers stay.
if __name__ == "__main__" or os.path.basename(sys.argv[0]).split(".")[0] == "cachestatus":
    for _signum in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
        if _signum is not None:
            signal.signal(_signum, _exit_on_early_interrupt)

import functools  # noqa: E402 - after the handlers: these imports take a while
import json  # noqa: E402
import logging  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import TYPE_CHECKING, Any, TypeVar  # noqa: E402

import click  # noqa: E402

from . import __version__  # noqa: E402
from .errors import CacheStatusError, Terminated, UsageError  # noqa: E402

if TYPE_CHECKING:
    from rich.console import Console

    from .models import StatusReport
    from .progress import BundleProgress

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """Options shared by every command."""

    def __init__(self, verbosity: int) -> None:
        self.verbosity = verbosity

    # Consoles are made on first use: rich is not imported by commands that print no table.
    @functools.cached_property
    def out(self) -> Console:
        """Rich console on stdout, for tables."""
        from rich.console import Console

        # Piped output keeps whole numbers: a wide virtual terminal instead of rich's 80 columns.
        return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)

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


class _PlainFormatter(logging.Formatter):
    """``Warning: message`` and ``Error: message``, as the command's own lines are written."""

    def format(self, record: logging.LogRecord) -> str:
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
    stopped its workers and removed its temporary files.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context().find_object(Context)
        assert ctx is not None
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


def _format_choices() -> list[str]:
    from .formats import names

    return names()


cache_argument = click.argument("cache", type=click.Path(path_type=str))
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
status_option = click.option(
    "--status",
    "status",
    type=click.Path(path_type=str),
    default=None,
    help="Status store path (.gdb or .gpkg); default: Status.gdb beside conf.xml.",
)


def open_options(func: F) -> F:
    """How to open CACHE: ``--format-hint``, ``--table``, ``--scheme``; the command receives
    them as one ``opening`` dict, the keyword arguments of ``open_cache`` and the operations."""

    @click.option(
        "--format-hint",
        type=click.Choice(_format_choices()),
        default=None,
        help="Read the cache as this format instead of detecting it.",
    )
    @click.option(
        "--table", default=None, help="The tile table of a GeoPackage that holds several."
    )
    @click.option(
        "--scheme",
        type=click.Choice(["xyz", "tms"]),
        default=None,
        help="Row order of a {z}/{x}/{y} folder: xyz (rows down, default) or tms (rows up).",
    )
    @functools.wraps(func)
    def wrapper(
        *args: Any, format_hint: str | None, table: str | None, scheme: str | None, **kwargs: Any
    ) -> Any:
        opening = {"format_hint": format_hint, "table": table, "scheme": scheme}
        return func(*args, opening=opening, **kwargs)

    return wrapper  # type: ignore[return-value]


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
        else _PlainFormatter()
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


def _emit_report(ctx: Context, report: StatusReport, as_json: bool) -> None:
    from .render import level_table, report_json

    for warning in report.warnings:
        ctx.warn(warning)
    for problem in report.problems:
        ctx.warn(f"{problem.bundle}: {problem.kind}: {problem.detail}")
    if as_json:
        click.echo(json.dumps(report_json(report), indent=2))
    else:
        ctx.out.print(level_table(report))
        if report.status_path:
            ctx.note(f"Status: {report.status_path}")


@main.command()
@cache_argument
@json_option
@open_options
@click.pass_obj
@handle_errors
def info(ctx: Context, cache: str, as_json: bool, opening: dict[str, Any]) -> None:
    """Show the tiling scheme, format, extent and levels of CACHE."""
    from .formats import open_cache
    from .operations import level_infos
    from .render import info_json, print_info

    with open_cache(cache, **opening) as reader:
        levels = level_infos(reader)
        if as_json:
            click.echo(json.dumps(info_json(reader, levels), indent=2))
        else:
            print_info(ctx.out, reader, levels)
        for name in reader.unknown_levels():
            ctx.warn(f"level folder {name} is not a level of the tiling scheme")


def _compose(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


#: Options of every command that scans: workers and the progress bar.
scan_options = _compose(
    click.option(
        "--workers",
        type=click.IntRange(min=0),
        default=None,
        help="Worker processes (default or 0: all cores; 1 scans in-process; at most 4 per core).",
    ),
    click.option(
        "--progress/--no-progress",
        "force_progress",
        default=None,
        help="Show the progress bar even when stderr is not a terminal (or never).",
    ),
)
#: Options choosing levels and the area: report and missing.
selection_options = _compose(
    click.option(
        "--scales",
        default=None,
        help="Scale denominators, comma or semicolon separated, each matched within 1 %.",
    ),
    click.option("--levels", "levels_text", default=None, help="Level IDs and ranges: 0-5,7."),
    click.option(
        "--aoi",
        default=None,
        type=click.Path(path_type=str),
        help="Area of interest: any vector file GDAL reads; all polygons are unioned.",
    ),
    click.option("--aoi-layer", default=None, help="The layer of a multi-layer --aoi file."),
    click.option("--extent", default=None, help="Rectangle XMIN,YMIN,XMAX,YMAX (--aoi wins)."),
    click.option(
        "--extent-crs", default=None, help="CRS of --extent, e.g. EPSG:4326 (default: the cache's)."
    ),
)
sizes_option = click.option(
    "--sizes",
    is_flag=True,
    help="Read tile sizes where they cost extra (MBTiles, GeoPackage, tile folders).",
)
blank_option = click.option(
    "--blank",
    is_flag=True,
    help="Also read every stored tile and count those without content (tilesBlank).",
)
big_integer_option = click.option(
    "--big-integer",
    is_flag=True,
    help="Write a .gdb's 64-bit counts as Big Integer fields (ArcGIS Pro 3.2+, GDAL 3.9+ "
    "only; default: Double fields that every ArcGIS, QGIS and GDAL opens).",
)
max_missing_option = click.option(
    "--max-missing-rows",
    type=click.IntRange(min=0),
    default=100_000,
    show_default=True,
    help="Cap on MISSING rows in TaskStatus (totals stay exact).",
)


def _selection(levels_text: str | None, **selection: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`operations.report` and ``missing`` for the selection."""
    from .selection import parse_levels

    return {**selection, "levels": parse_levels(levels_text) if levels_text is not None else None}


def _progress(
    ctx: Context, force_progress: bool | None, description: str = "Scanning"
) -> BundleProgress:
    from .progress import BundleProgress

    quiet = ctx.verbosity < 0 or force_progress is False
    return BundleProgress(description, force=bool(force_progress), quiet=quiet)


@main.command()
@cache_argument
@status_option
@click.option(
    "--format",
    "store_format",
    type=click.Choice(["gdb", "gpkg"]),
    default=None,
    help="Store format for the default location (default gdb).",
)
@max_missing_option
@big_integer_option
@sizes_option
@blank_option
@scan_options
@json_option
@open_options
@click.pass_obj
@handle_errors
def rebuild(
    ctx: Context,
    cache: str,
    status: str | None,
    store_format: str | None,
    max_missing_rows: int,
    big_integer: bool,
    sizes: bool,
    blank: bool,
    workers: int | None,
    force_progress: bool | None,
    as_json: bool,
    opening: dict[str, Any],
) -> None:
    """REBUILD_CACHE_STATUS: scan CACHE and write its status store."""
    from . import operations

    with _progress(ctx, force_progress) as bar:
        report = operations.rebuild(
            cache,
            status,
            store_format=store_format,
            workers=workers,
            max_missing_rows=max_missing_rows,
            progress=bar,
            **opening,
            sizes=sizes,
            blank=blank,
            big_integer=big_integer,
        )
    _emit_report(ctx, report, as_json)


@main.command()
@cache_argument
@click.option(
    "--out",
    "out_folder",
    required=True,
    type=click.Path(path_type=str),
    help="Folder of the report's Status.gdb (created if needed).",
)
@selection_options
@click.option(
    "--format",
    "store_format",
    type=click.Choice(["gdb", "gpkg"]),
    default="gdb",
    show_default=True,
    help="Store format.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing report in --out.")
@max_missing_option
@big_integer_option
@sizes_option
@blank_option
@scan_options
@json_option
@open_options
@click.pass_obj
@handle_errors
def report(
    ctx: Context,
    /,
    cache: str,
    out_folder: str,
    store_format: str,
    overwrite: bool,
    max_missing_rows: int,
    big_integer: bool,
    sizes: bool,
    blank: bool,
    workers: int | None,
    force_progress: bool | None,
    as_json: bool,
    opening: dict[str, Any],
    **selection: Any,
) -> None:
    """REPORT_BUNDLE_STATUS: status of chosen levels over an area, written to --out."""
    from . import operations

    with _progress(ctx, force_progress) as bar:
        result = operations.report(
            cache,
            out_folder,
            **_selection(**selection),
            store_format=store_format,
            overwrite=overwrite,
            workers=workers,
            max_missing_rows=max_missing_rows,
            progress=bar,
            **opening,
            sizes=sizes,
            blank=blank,
            big_integer=big_integer,
        )
    _emit_report(ctx, result, as_json)


@main.command()
@cache_argument
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
    default=None,
    type=click.Path(path_type=str),
    help="Also list the missing tiles, one z/x/y a line (small sets).",
)
@selection_options
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@scan_options
@json_option
@open_options
@click.pass_obj
@handle_errors
def missing(
    ctx: Context,
    /,
    cache: str,
    out_path: str,
    tiles_path: str | None,
    overwrite: bool,
    workers: int | None,
    force_progress: bool | None,
    as_json: bool,
    opening: dict[str, Any],
    **selection: Any,
) -> None:
    """The areas still to seed: polygons of the expected tiles not present, per level."""
    from . import operations

    with _progress(ctx, force_progress) as bar:
        result = operations.missing(
            cache,
            out_path,
            tiles=tiles_path,
            **_selection(**selection),
            overwrite=overwrite,
            workers=workers,
            progress=bar,
            **opening,
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
                {"cache": cache, "out": out_path, "tiles": tiles_path, "levels": summary}, indent=2
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


@main.command()
@cache_argument
@selection_options
@click.option("--decode", is_flag=True, help="Also decode every PNG, JPEG and WebP tile.")
@blank_option
@scan_options
@json_option
@open_options
@click.pass_obj
@handle_errors
def verify(
    ctx: Context,
    /,
    cache: str,
    decode: bool,
    blank: bool,
    workers: int | None,
    force_progress: bool | None,
    as_json: bool,
    opening: dict[str, Any],
    **selection: Any,
) -> None:
    """Deep check: read every stored tile and name each bad one. Exit 1 when any is."""
    from . import operations
    from .render import verify_json, verify_table

    with _progress(ctx, force_progress, "Verifying") as bar:
        report = operations.verify(
            cache,
            **_selection(**selection),
            decode=decode,
            blank=blank,
            workers=workers,
            progress=bar,
            **opening,
        )
    for warning in report.warnings:
        ctx.warn(warning)
    if as_json:
        click.echo(json.dumps(verify_json(report), indent=2))
    else:
        for problem in report.problems:
            click.echo(f"{problem.tile or problem.bundle}  {problem.kind}: {problem.detail}")
        ctx.out.print(verify_table(report))
    if not report.clean:
        ctx.note(
            f"{report.totals.bad:,} bad tiles, "
            f"{sum(1 for p in report.problems if not p.tile):,} unreadable bundles"
        )
        sys.exit(1)


@main.command()
@cache_argument
@status_option
@open_options
@click.pass_obj
@handle_errors
def delete(ctx: Context, cache: str, status: str | None, opening: dict[str, Any]) -> None:
    """DELETE_CACHE_STATUS: remove the status store of CACHE (nothing to delete is fine)."""
    from . import operations

    removed = operations.delete(cache, status, **opening)
    for path in removed:
        ctx.note(f"Deleted {path}")
    if not removed:
        ctx.note("No cache status to delete.")


@main.command()
@cache_argument
@status_option
@json_option
@open_options
@click.pass_obj
@handle_errors
def summary(
    ctx: Context, cache: str, status: str | None, as_json: bool, opening: dict[str, Any]
) -> None:
    """Per-level table of the stored status of CACHE, without rescanning."""
    from . import operations

    _emit_report(ctx, operations.summary(cache, status, **opening), as_json)


if __name__ == "__main__":  # pragma: no cover
    main()
