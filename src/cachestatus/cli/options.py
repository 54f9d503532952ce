"""The options of the commands, declared once (as rasterio's ``rio/options.py`` does), in sets
that hand a command one request object (:mod:`cachestatus.request`) instead of their values:
``@source_options`` gives it ``source`` (a :class:`CacheSource`), ``@coverage_options``
``coverage``, ``@execution_options`` ``execution`` (with the progress bar), ``@counting_options``
``counting``, ``@status_store_options`` and ``@report_store_options`` ``store``.

A new option is a field of its object and one line in its set. Choices come from the
registries: ``formats.names()``, ``formats.SCHEMES``, ``store.FORMATS``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from ..execute import cluster_for
from ..formats import SCHEMES, names
from ..plan import MAX_MISSING_ROWS
from ..progress import BundleProgress
from ..request import CacheSource, Counting, Coverage, Execution, ReportStore, StatusStore
from ..selection import parse_levels
from ..store import FORMATS
from .context import Context

F = TypeVar("F", bound=Callable[..., Any])


class Param:
    """A command-line option or argument, declared once: a decorator for commands, and ``name``,
    the keyword its value arrives as."""

    def __init__(self, kind: type[click.Parameter], *decls: str, **attrs: Any) -> None:
        name = kind(decls, **attrs).name
        assert name is not None
        self.name = name
        self._attach = (click.argument if kind is click.Argument else click.option)(*decls, **attrs)

    def __call__(self, func: F) -> F:
        """Give ``func`` this parameter."""
        return self._attach(func)


def _delivering(keyword: str, build: Callable[..., object], *params: Param) -> Callable[[F], F]:
    """A decorator giving a command ``params``: the command receives ``keyword=build(**values)``
    instead of their values. ``build`` runs when the command does, inside
    :func:`~.context.handle_errors`: what it refuses is the command's usage error."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {param.name: kwargs.pop(param.name) for param in params}
            return func(*args, **kwargs, **{keyword: build(**values)})

        for param in reversed(params):  # click lists the last one applied first
            wrapper = param(wrapper)
        return wrapper  # type: ignore[return-value]

    return decorate


cache_argument = Param(click.Argument, "cache", type=click.Path(path_type=str))
json_option = Param(click.Option, "--json", "as_json", is_flag=True, help="Print JSON on stdout.")
STATUS_HELP = (
    "Status store path (.gdb or .gpkg); default: Status.gdb beside conf.xml "
    "(for a URL: <cache name>.Status.gdb in the working folder)."
)
status_option = Param(
    click.Option, "--status", type=click.Path(path_type=str), default=None, help=STATUS_HELP
)
blank_option = Param(
    click.Option,
    "--blank",
    is_flag=True,
    help="Also read every stored tile and count those without content (tilesBlank).",
)

_opening = (
    cache_argument,
    Param(
        click.Option,
        "--format-hint",
        type=click.Choice(names()),
        default=None,
        help="Read the cache as this format instead of detecting it.",
    ),
    Param(
        click.Option,
        "--table",
        default=None,
        help="The tile table of a GeoPackage that holds several.",
    ),
    Param(
        click.Option,
        "--scheme",
        type=click.Choice(SCHEMES),
        default=None,
        help="Row order of a {z}/{x}/{y} folder: xyz (rows down, default) or tms (rows up).",
    ),
    Param(
        click.Option,
        "--anon",
        is_flag=True,
        help="Unsigned requests to object storage, for a cache in a public bucket.",
    ),
)
_sizes = Param(
    click.Option,
    "--sizes",
    is_flag=True,
    help="Read tile sizes where they cost extra (MBTiles, GeoPackage, tile folders).",
)


def _source(cache: str, **fields: Any) -> CacheSource:
    return CacheSource(cache, **fields)


#: CACHE, ``--format-hint``, ``--table``, ``--scheme``, ``--anon``: ``source``, a
#: :class:`CacheSource`.
source_options = _delivering("source", _source, *_opening)
#: :data:`source_options` and ``--sizes`` (the commands that count tile bytes).
sized_source_options = _delivering("source", _source, _sizes, *_opening)


def _coverage(levels: str | None, **fields: Any) -> Coverage:
    # Parsed before the cache is opened: a bad --levels is known before any work.
    return Coverage(parse_levels(levels) if levels is not None else None, **fields)


#: ``--scales``, ``--levels``, ``--aoi``, ``--aoi-layer``, ``--extent``, ``--extent-crs``:
#: ``coverage``, a :class:`Coverage`.
coverage_options = _delivering(
    "coverage",
    _coverage,
    Param(
        click.Option,
        "--scales",
        default=None,
        help="Scale denominators, comma or semicolon separated, each matched within 1 %.",
    ),
    Param(click.Option, "--levels", default=None, help="Level IDs and ranges: 0-5,7."),
    Param(
        click.Option,
        "--aoi",
        default=None,
        type=click.Path(path_type=str),
        help="Area of interest: any vector file GDAL reads; all polygons are unioned.",
    ),
    Param(click.Option, "--aoi-layer", default=None, help="The layer of a multi-layer --aoi file."),
    Param(
        click.Option, "--extent", default=None, help="Rectangle XMIN,YMIN,XMAX,YMAX (--aoi wins)."
    ),
    Param(
        click.Option,
        "--extent-crs",
        default=None,
        help="CRS of --extent, e.g. EPSG:4326 (default: the cache's).",
    ),
)

#: ``--max-missing-rows``, ``--blank``: ``counting``, a :class:`Counting`.
counting_options = _delivering(
    "counting",
    Counting,
    Param(
        click.Option,
        "--max-missing-rows",
        type=click.IntRange(min=0),
        default=MAX_MISSING_ROWS,
        show_default=True,
        help="Cap on MISSING rows in TaskStatus (totals stay exact).",
    ),
    blank_option,
)

_big_integer = Param(
    click.Option,
    "--big-integer",
    is_flag=True,
    help="Write a .gdb's 64-bit counts as Big Integer fields (ArcGIS Pro 3.2+, GDAL 3.9+ "
    "only; default: Double fields that every ArcGIS, QGIS and GDAL opens).",
)

#: ``--status``, ``--format``, ``--big-integer``: ``store``, a :class:`StatusStore`.
status_store_options = _delivering(
    "store",
    StatusStore,
    Param(click.Option, "--status", "path", type=click.Path(path_type=str), help=STATUS_HELP),
    Param(
        click.Option,
        "--format",
        "store_format",
        type=click.Choice(FORMATS),
        default=None,
        help="Store format for the default location (default gdb).",
    ),
    _big_integer,
)

#: ``--out``, ``--format``, ``--overwrite``, ``--big-integer``: ``store``, a :class:`ReportStore`.
report_store_options = _delivering(
    "store",
    ReportStore,
    Param(
        click.Option,
        "--out",
        "folder",
        required=True,
        type=click.Path(path_type=str),
        help="Folder of the report's Status.gdb (created if needed).",
    ),
    Param(
        click.Option,
        "--format",
        "store_format",
        type=click.Choice(FORMATS),
        default="gdb",
        show_default=True,
        help="Store format.",
    ),
    Param(click.Option, "--overwrite", is_flag=True, help="Replace an existing report in --out."),
    _big_integer,
)


def execution_options(description: str = "Scanning") -> Callable[[F], F]:
    """``--workers``, ``--io-concurrency``, ``--scheduler``, ``--cluster``,
    ``--progress/--no-progress``: ``execution``, an :class:`Execution` whose progress is a bar
    on stderr named ``description`` (see :func:`progress_shown`)."""

    def build(
        workers: int | None,
        io_concurrency: int | None,
        scheduler: str | None,
        cluster: int | None,
        force_progress: bool | None,
    ) -> Execution:
        ctx = click.get_current_context().find_object(Context)
        assert ctx is not None
        cluster_for(scheduler, cluster, workers)  # a usage error before anything is opened
        quiet = ctx.verbosity < 0 or force_progress is False
        bar = BundleProgress(description, force=bool(force_progress), quiet=quiet)
        return Execution(
            workers, bar, io_concurrency=io_concurrency, scheduler=scheduler, cluster=cluster
        )

    return _delivering(
        "execution",
        build,
        Param(
            click.Option,
            "--workers",
            type=click.IntRange(min=0),
            default=None,
            help="Worker processes (default or 0: all cores; 1 scans in-process; at most 4 "
            "per core).",
        ),
        Param(
            click.Option,
            "--io-concurrency",
            type=click.IntRange(min=1),
            default=None,
            metavar="N",
            help="Bundle reads each worker keeps in flight (default: 1 on a local disk, 16 on "
            "a network share, more on object storage).",
        ),
        Param(
            click.Option,
            "--scheduler",
            default=None,
            metavar="ADDRESS",
            help="Scan on the Dask cluster of this scheduler (tcp://host:8786; default: "
            "DASK_SCHEDULER_ADDRESS, unless --workers or --cluster is given). Its workers need "
            "the cache at the same path, or its URL, and their own credentials.",
        ),
        Param(
            click.Option,
            "--cluster",
            type=click.IntRange(min=1),
            default=None,
            metavar="N",
            help="Scan on a local Dask cluster of N worker processes, started for the run.",
        ),
        Param(
            click.Option,
            "--progress/--no-progress",
            "force_progress",
            default=None,
            help="Show the progress bar even when stderr is not a terminal (or never).",
        ),
    )


@contextmanager
def progress_shown(execution: Execution) -> Iterator[None]:
    """The block runs with the progress bar of :func:`execution_options` (shown once the scan
    starts, and stopped at the end of the block, before the command prints its results)."""
    bar = execution.progress
    assert isinstance(bar, BundleProgress)
    with bar:
        yield
