"""A run's request, one small value per concern: which cache, which levels and area, how to run,
what to count, where the store goes.

The command line, the keyword API (:func:`cachestatus.rebuild` ...) and the arcpy-style tool all
build these objects, and the operations take them. Each turns into a flat JSON object
(:meth:`to_json`, keys named so that the parts of one request never clash) and back
(:meth:`from_json`): the ``Jobs`` table records a run's whole request that way, and
:func:`cachestatus.replay` runs it again.

Values are kept as given; they are checked where they are used, with the messages the API has
always given (a path when the cache is opened, levels and areas when they are chosen in it).
The readers and the selection are imported where they are used: a request is made, recorded
and compared (:func:`same_request`) without numpy, as :mod:`cachestatus.unchanged` does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, TypeVar

from .storage.location import is_url

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from .formats import CacheReader
    from .scan import Progress
    from .selection import Selection

#: The most ``MISSING`` rows a rebuild or a report writes unless told otherwise.
MAX_MISSING_ROWS = 100_000

T = TypeVar("T", bound="DataclassInstance")


def _absolute(path: str | os.PathLike[str]) -> str:
    """``path`` as text, joined to the working directory when relative (a replay may run from
    another one); otherwise untouched, so that GDAL paths such as ``/vsicurl/https://...`` and
    URLs (``s3://...``) stay."""
    text = os.fspath(path)
    return text if os.path.isabs(text) or is_url(text) else os.path.join(os.getcwd(), text)


def _optional_absolute(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else _absolute(path)


@dataclass(frozen=True)
class CacheSource:
    """Which cache, and how to read it.

    Attributes:
        path: the cache folder, service folder, ``conf.xml`` or cache file.
        format_hint: a registered format name (:func:`cachestatus.formats.names`), read as that
            format instead of detecting one.
        table: the tile table of a GeoPackage that holds several.
        scheme: ``xyz`` or ``tms``, the row order of a ``{z}/{x}/{y}`` folder.
        sizes: read tile sizes where they cost extra reads (SQLite blobs, a stat per tile file).
        anon: unsigned requests, for a cache in a public bucket (``path`` a URL).
    """

    path: str | os.PathLike[str]
    format_hint: str | None = None
    table: str | None = None
    scheme: str | None = None
    sizes: bool = False
    anon: bool = False

    def open(self) -> CacheReader:
        """The cache's reader (a context manager), as :func:`cachestatus.open_cache` opens it.

        Raises:
            CacheNotFound, UnsupportedFormat, InvalidCacheConfig, UsageError: as ``open_cache``.
        """
        from .formats import open_cache

        return open_cache(
            self.path,
            self.format_hint,
            self.sizes,
            table=self.table,
            scheme=self.scheme,
            anon=self.anon,
        )

    def to_json(self) -> dict[str, Any]:
        """``cache`` (absolute, or the URL), ``format_hint``, ``table``, ``scheme``, ``sizes``,
        ``anon``."""
        return {
            "cache": _absolute(self.path),
            "format_hint": self.format_hint,
            "table": self.table,
            "scheme": self.scheme,
            "sizes": bool(self.sizes),
            "anon": bool(self.anon),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CacheSource:
        """The source :meth:`to_json` wrote into ``data``."""
        return cls(
            data["cache"],
            data.get("format_hint"),
            data.get("table"),
            data.get("scheme"),
            bool(data.get("sizes", False)),
            bool(data.get("anon", False)),
        )


def _levels_json(levels: Iterable[int] | str | None) -> list[int] | str | None:
    """Level IDs as a list, or a text (a range such as ``0-99999999`` is never spelt out)."""
    if levels is None or isinstance(levels, str):
        return levels
    from .selection import LevelRanges, as_ranges

    ranges = as_ranges(levels)
    return ranges.text if isinstance(levels, (LevelRanges, range)) else list(ranges)


def _aoi_json(aoi: object) -> str | dict[str, str] | None:
    """A vector file's path (absolute), or a geometry as its WKB in hex (exact)."""
    if aoi is None:
        return None
    if isinstance(aoi, (str, os.PathLike)):
        return _absolute(aoi)
    import shapely

    return {"wkb": shapely.to_wkb(aoi, hex=True)}


def _floats(values: Sequence[Any]) -> list[float]:
    """Numbers (numpy's included) as JSON numbers."""
    return [float(v) for v in values]


def _aoi_from_json(value: Any) -> Any:
    if isinstance(value, dict):
        import shapely

        return shapely.from_wkb(value["wkb"])
    return value


@dataclass(frozen=True)
class Coverage:
    """Which levels, over which area: every LOD over the full extent by default.

    Attributes:
        levels: level IDs (a list, a ``range`` or a text such as ``"0-5,7"``).
        scales: scale denominators (a list or ``"s1;s2"``), each matched to a LOD within 1 %.
            Without scales nor levels: every LOD.
        aoi: an area of interest: a vector file GDAL reads (all polygons unioned) or a shapely
            geometry in the cache's CRS. It wins over ``extent``.
        aoi_layer: the layer of a multi-layer AOI file.
        extent: ``(xmin, ymin, xmax, ymax)`` or ``"xmin ymin xmax ymax"``.
        extent_crs: the extent's CRS (default: the cache's).
    """

    levels: Sequence[int] | str | None = None
    scales: Sequence[float] | str | None = None
    aoi: str | os.PathLike[str] | Any | None = None
    aoi_layer: str | None = None
    extent: str | Sequence[float] | None = None
    extent_crs: str | None = None

    def resolve(self, reader: CacheReader) -> Selection:
        """The levels and area this coverage chooses in ``reader``'s cache; the area in the
        cache's CRS, clipped to its tiling grid.

        Raises:
            ScaleNotInCache: a scale or level the cache does not have (the message lists its own).
            InvalidAOI: an area that cannot be read, or misses the tiling grid.
            UsageError: values that are not levels, scales or an extent.
        """
        from .selection import Selection, area_of_interest, parse_scales, select_levels

        scales = parse_scales(self.scales) if self.scales is not None else None
        levels = select_levels(reader.scheme, scales, self.levels)
        warnings: list[str] = []
        area = area_of_interest(
            reader, self.aoi, self.aoi_layer, self.extent, self.extent_crs, warnings
        )
        return Selection(levels, scales, area, warnings)

    def as_selected(self, chosen: Selection) -> Coverage:
        """This coverage with the levels and scales ``chosen`` resolved it to: what a job
        records, and chooses the same levels again."""
        return replace(
            self,
            levels=None if chosen.levels is None else list(chosen.levels),
            scales=chosen.scales,
        )

    def to_json(self) -> dict[str, Any]:
        """``levels``, ``scales``, ``aoi`` (a path, or ``{"wkb": hex}``), ``aoi_layer``,
        ``extent``, ``extent_crs``.

        Raises:
            UsageError: levels or scales the operations would refuse.
        """
        from .selection import parse_scales

        extent = self.extent
        return {
            "levels": _levels_json(self.levels),
            "scales": None if self.scales is None else parse_scales(self.scales),
            "aoi": _aoi_json(self.aoi),
            "aoi_layer": self.aoi_layer,
            "extent": extent if extent is None or isinstance(extent, str) else _floats(extent),
            "extent_crs": self.extent_crs,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Coverage:
        """The coverage :meth:`to_json` wrote into ``data``."""
        return cls(
            data.get("levels"),
            data.get("scales"),
            _aoi_from_json(data.get("aoi")),
            data.get("aoi_layer"),
            data.get("extent"),
            data.get("extent_crs"),
        )


@dataclass(frozen=True)
class Execution:
    """How to run a scan.

    Attributes:
        workers: worker processes (default: all cores; 1 scans in the calling process).
        progress: receives the number of bundles, then each finished chunk (not recorded).
        reuse: a rebuild reuses the rows of the bundles unchanged since the previous rebuild
            of the same request, when its store has them (``False``: ``--full``, every bundle
            read).
        io_concurrency: bundle reads each worker process keeps in flight (default: the
            storage's, 1 on a local disk, 16 on a network share).
        scheduler: the address of a Dask scheduler whose cluster scans (``tcp://host:8786``);
            by default ``DASK_SCHEDULER_ADDRESS``'s, unless ``workers`` or ``cluster`` is given.
        cluster: scan on a local Dask cluster of this many worker processes, started for the
            run.
    """

    workers: int | None = None
    progress: Progress | None = None
    reuse: bool = True
    io_concurrency: int | None = None
    scheduler: str | None = None
    cluster: int | None = None

    def to_json(self) -> dict[str, Any]:
        """``workers``, ``reuse``, ``io_concurrency``, ``scheduler``, ``cluster``."""
        return {
            "workers": self.workers,
            "reuse": bool(self.reuse),
            "io_concurrency": self.io_concurrency,
            "scheduler": self.scheduler,
            "cluster": self.cluster,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Execution:
        """The execution :meth:`to_json` wrote into ``data`` (without progress)."""
        return cls(
            data.get("workers"),
            reuse=bool(data.get("reuse", True)),
            io_concurrency=data.get("io_concurrency"),
            scheduler=data.get("scheduler"),
            cluster=data.get("cluster"),
        )


@dataclass(frozen=True)
class Counting:
    """What a scan counts beyond the tiles present.

    Attributes:
        blank: also read every stored tile and count those without content (``tilesBlank``).
        max_missing_rows: cap on ``MISSING`` rows in ``TaskStatus``; level totals stay exact
            (``None``: no cap, for a report).
    """

    blank: bool = False
    max_missing_rows: int | None = MAX_MISSING_ROWS

    def to_json(self) -> dict[str, Any]:
        """``blank``, ``max_missing_rows``."""
        return {"blank": bool(self.blank), "max_missing_rows": self.max_missing_rows}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Counting:
        """The counting :meth:`to_json` wrote into ``data``."""
        return cls(bool(data.get("blank", False)), data.get("max_missing_rows", MAX_MISSING_ROWS))


@dataclass(frozen=True)
class StatusStore:
    """Where a cache's own status store is: a rebuild's target.

    Attributes:
        path: the store (``.gdb`` or ``.gpkg``); default ``Status.gdb`` beside ``conf.xml``.
        store_format: ``gdb`` or ``gpkg``, for the default location.
        big_integer: write a FileGDB's 64-bit counts as Big Integer fields, which only ArcGIS
            Pro 3.2+ and GDAL 3.9+ read (default: Double, which every reader opens).
    """

    path: str | os.PathLike[str] | None = None
    store_format: str | None = None
    big_integer: bool = False

    def to_json(self) -> dict[str, Any]:
        """``status`` (absolute, or ``None`` for the default), ``store_format``, ``big_integer``."""
        return {
            "status": _optional_absolute(self.path),
            "store_format": self.store_format,
            "big_integer": bool(self.big_integer),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StatusStore:
        """The store :meth:`to_json` wrote into ``data``."""
        return cls(data.get("status"), data.get("store_format"), bool(data.get("big_integer")))


@dataclass(frozen=True)
class ReportStore:
    """Where a report's store goes: ``folder/Status.gdb`` (or ``.gpkg``).

    Attributes:
        folder: the report's folder (created if needed); never the cache's own status folder.
        store_format: ``gdb`` or ``gpkg``.
        overwrite: replace an existing report store.
        big_integer: Big Integer fields in a FileGDB (see :class:`StatusStore`).
    """

    folder: str | os.PathLike[str]
    store_format: str = "gdb"
    overwrite: bool = False
    big_integer: bool = False

    def to_json(self) -> dict[str, Any]:
        """``out_folder`` (absolute), ``store_format``, ``overwrite``, ``big_integer``."""
        return {
            "out_folder": _absolute(self.folder),
            "store_format": self.store_format,
            "overwrite": bool(self.overwrite),
            "big_integer": bool(self.big_integer),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReportStore:
        """The store :meth:`to_json` wrote into ``data``."""
        return cls(
            data["out_folder"],
            data.get("store_format", "gdb"),
            bool(data.get("overwrite")),
            bool(data.get("big_integer")),
        )


class Part(Protocol):
    """A part of a request: it writes its own keys of the request's JSON."""

    def to_json(self) -> dict[str, Any]:
        """The part's keys and values."""


def request_json(*parts: Part, **more: Any) -> dict[str, Any]:
    """A run's whole request as one flat JSON object: every part's keys, then ``more``."""
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part.to_json())
    merged.update(more)
    return merged


class LayoutKeywords(TypedDict, total=False):
    """The keyword API's arguments that say which tile table, which row order (see
    :class:`CacheSource`)."""

    table: str | None
    scheme: str | None


class OpeningKeywords(LayoutKeywords, total=False):
    """:class:`LayoutKeywords`, ``format_hint`` and ``anon``: how to open the cache."""

    format_hint: str | None
    anon: bool


class SourceKeywords(OpeningKeywords, total=False):
    """:class:`OpeningKeywords` and ``sizes`` (see :class:`CacheSource`)."""

    sizes: bool


class CoverageKeywords(TypedDict, total=False):
    """The keyword API's arguments of a :class:`Coverage`."""

    scales: Sequence[float] | str | None
    levels: Sequence[int] | str | None
    aoi: str | os.PathLike[str] | Any | None
    aoi_layer: str | None
    extent: str | Sequence[float] | None
    extent_crs: str | None


class ExecutionKeywords(TypedDict, total=False):
    """The keyword API's arguments of an :class:`Execution`."""

    workers: int | None
    progress: Progress | None
    reuse: bool
    io_concurrency: int | None
    scheduler: str | None
    cluster: int | None


class CountingKeywords(TypedDict, total=False):
    """The keyword API's arguments of a :class:`Counting`."""

    blank: bool
    max_missing_rows: int | None


class StoreKeywords(TypedDict, total=False):
    """The keyword API's arguments of a :class:`StatusStore` or :class:`ReportStore`."""

    store_format: str | None
    big_integer: bool


class Keywords:
    """The keyword arguments of an API function, dealt out to the request objects they name.

    Raises:
        TypeError: an argument ``accepted`` does not name, as Python says it of any function.
    """

    def __init__(self, function: str, given: Mapping[str, object], accepted: Collection[str]):
        for name in given:
            if name not in accepted:
                raise TypeError(f"{function}() got an unexpected keyword argument {name!r}")
        self.given = given

    def make(self, kind: type[T], *args: object) -> T:
        """A ``kind`` from ``args`` and the arguments named like its other fields."""
        names = {f.name for f in fields(kind)[len(args) :]}
        return kind(*args, **{k: v for k, v in self.given.items() if k in names})


def same_request(previous: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether two recorded requests (a job's ``parameters``) ask the same question: equal but
    for how they run (:class:`Execution`'s keys)."""
    running = Execution().to_json().keys()
    current = json.loads(json.dumps(current))  # as the Jobs table holds it
    return {k: v for k, v in previous.items() if k not in running} == {
        k: v for k, v in current.items() if k not in running
    }


__all__ = [
    "MAX_MISSING_ROWS",
    "CacheSource",
    "Counting",
    "CountingKeywords",
    "Coverage",
    "CoverageKeywords",
    "Execution",
    "ExecutionKeywords",
    "Keywords",
    "LayoutKeywords",
    "OpeningKeywords",
    "Part",
    "ReportStore",
    "SourceKeywords",
    "StatusStore",
    "StoreKeywords",
    "request_json",
    "same_request",
]
