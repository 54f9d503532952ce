"""Which levels and area a run covers: ``--scales`` (matched within 1 %), ``--levels``
(``0-5,7``), and an area of interest or an extent in the cache's CRS, clipped to its grid.

Level ranges are kept as ranges: ``0-99999999999`` costs what ``0-5`` costs, and is met with the
scheme's levels arithmetically (the levels of the range the scheme lacks are left out, with a
warning), never spelt out level by level.
"""

from __future__ import annotations

import logging
import math
import operator
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from . import grid
from .errors import InvalidAOI, ScaleNotInCache, UsageError
from .models import TilingScheme

if TYPE_CHECKING:
    from .aoi import AreaOfInterest
    from .formats import CacheReader

log = logging.getLogger(__name__)

#: A requested scale selects the LOD whose scale is within this relative distance of it.
SCALE_TOLERANCE = 0.01
#: ``--levels`` and ``--scales`` texts longer than this are not read: no scheme has more LODs
#: than a few dozen.
MAX_SELECTION_TEXT = 10_000


class LevelRanges(Sequence[int]):
    """Level IDs as inclusive ranges ``(first, last)``, as ``--levels 0-5,7`` gives them.

    A sequence of the IDs, but membership and length are arithmetic: no range is spelt out.
    """

    def __init__(self, ranges: Iterable[tuple[int, int]], text: str = "") -> None:
        self.ranges: tuple[tuple[int, int], ...] = tuple(ranges)
        self.text = text or ",".join(_range_text(a, b) for a, b in self.ranges)

    def __contains__(self, level: object) -> bool:
        return isinstance(level, int) and any(a <= level <= b for a, b in self.ranges)

    def __iter__(self) -> Iterator[int]:
        for first, last in self.ranges:
            yield from range(first, last + 1)

    def __len__(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges)

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[int]: ...

    def __getitem__(self, index: int | slice) -> int | Sequence[int]:
        if isinstance(index, slice):
            return list(self)[index]
        i = operator.index(index)
        if i < 0:
            i += len(self)
        for first, last in self.ranges:
            if 0 <= i <= last - first:
                return first + i
            i -= last - first + 1
        raise IndexError(index)

    def __repr__(self) -> str:
        return f"LevelRanges({self.text!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LevelRanges):
            return self.ranges == other.ranges
        if isinstance(other, (list, tuple)):  # lengths first: a huge range is never spelt out
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def _range_text(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def _check_text(what: str, text: str) -> None:
    if len(text) > MAX_SELECTION_TEXT:
        raise UsageError(f"{what}: {len(text):,} characters; give at most {MAX_SELECTION_TEXT:,}")


def parse_scales(value: str | float | Iterable[float | str]) -> list[float]:
    """Scales as numbers, from a list or arcpy's ``"s1;s2"`` (commas work too).

    Raises:
        UsageError: no scale, or a scale that is not a finite positive number.
    """
    if isinstance(value, str):
        _check_text("scales", value)
        parts: Iterable[object] = value.replace(",", ";").split(";")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        parts = [value]
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, bytearray)):
        parts = value
    else:
        raise UsageError(
            f"scales={value!r}: give scale denominators, as numbers or a text like "
            "591657527.59;295828763.80"
        )
    scales = []
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, (str, int, float)):
            raise UsageError(f"scale {part!r} is not a number (give scale denominators)")
        text = str(part).strip()
        if not text:
            continue
        try:
            scale = float(text)
        except ValueError:
            raise UsageError(
                f"scale {text[:40]!r} is not a number (give scale denominators, "
                "e.g. 591657527.59;295828763.80)"
            ) from None
        if not (math.isfinite(scale) and scale > 0):
            raise UsageError(f"scale {text[:40]!r} is not a finite positive scale denominator")
        scales.append(scale)
        if len(scales) > MAX_SELECTION_TEXT:
            raise UsageError(f"scales: more than {MAX_SELECTION_TEXT:,} scales given")
    if not scales:
        raise UsageError("scales: none given (give scale denominators, e.g. 591657527.59)")
    return scales


def parse_levels(text: str) -> LevelRanges:
    """Level IDs from ``"0-5,7"``: single IDs and inclusive ranges, comma separated.

    Raises:
        UsageError: no level, or a part that is not a level ID or an increasing range.
    """
    if not isinstance(text, str):
        raise UsageError(f"levels {text!r}: give level IDs and ranges like 0-5,7")
    _check_text("levels", text)
    ranges: list[tuple[int, int]] = []
    shown = text if len(text) <= 60 else text[:57] + "..."
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            if not low.strip().isdigit() or (sep and not high.strip().isdigit()):
                raise ValueError
            first = int(low)
            last = int(high) if sep else first
        except ValueError:
            raise UsageError(
                f"levels {shown!r}: {part[:40]!r} is not a level or a range like 0-5 "
                "(levels are whole numbers from 0)"
            ) from None
        if last < first:
            raise UsageError(f"levels {shown!r}: {part!r} is not an increasing range of levels")
        ranges.append((first, last))
    if not ranges:
        raise UsageError(f"levels {shown!r}: no level given (give level IDs and ranges: 0-5,7)")
    return LevelRanges(ranges, text.strip())


def as_ranges(levels: object) -> LevelRanges:
    """Any API value for ``levels`` as ranges: a text (``"0-5,7"``), a ``range``, an ID, or IDs.

    Raises:
        UsageError: a value that is not a whole number from 0, or no level at all.
    """
    if isinstance(levels, LevelRanges):
        return levels
    if isinstance(levels, str):
        return parse_levels(levels)
    if isinstance(levels, range):
        if levels.step != 1 or levels.start < 0:
            raise UsageError(f"levels={levels!r}: give a range of levels from 0 with step 1")
        if not levels:
            raise UsageError(f"levels={levels!r}: no level given")
        return LevelRanges([(levels.start, levels.stop - 1)])
    items: Iterable[object]
    if isinstance(levels, int) and not isinstance(levels, bool):
        items = [levels]
    elif isinstance(levels, Iterable) and not isinstance(levels, (bytes, bytearray, dict)):
        items = levels
    else:
        raise UsageError(f"levels={levels!r}: give level IDs (a list of whole numbers or '0-5,7')")
    ranges = []
    for item in items:
        try:
            if isinstance(item, (bool, float)):
                raise TypeError
            level = operator.index(item)  # type: ignore[arg-type]
        except TypeError:
            raise UsageError(f"level {item!r} is not a level ID (a whole number from 0)") from None
        if level < 0:
            raise UsageError(f"level {level} is not a level ID (a whole number from 0)")
        ranges.append((level, level))
        if len(ranges) > MAX_SELECTION_TEXT:
            raise UsageError(f"levels: more than {MAX_SELECTION_TEXT:,} levels given")
    if not ranges:
        raise UsageError("levels: none given (give level IDs, e.g. [0, 1, 2] or '0-5,7')")
    return LevelRanges(ranges)


def _scales_list(scheme: TilingScheme) -> str:
    return ", ".join(f"{lod.scale:.2f} (level {lod.level})" for lod in scheme.lods)


def _levels_span(scheme: TilingScheme) -> str:
    known = scheme.levels
    return f"{min(known)}-{max(known)}" if known else "none"


def requested_levels(
    scheme: TilingScheme, levels: object, warnings: list[str] | None = None
) -> tuple[int, ...]:
    """The scheme's levels among ``levels`` (IDs, ranges, a ``range``, a text), in its order.

    A single ID the scheme lacks is an error; a range is met with the scheme's levels, and the
    part of it outside them is left out with a warning (in ``warnings``, else logged).

    Raises:
        UsageError: a value that is not a level ID.
        ScaleNotInCache: a level, or a whole range, the scheme does not have.
    """
    wanted = as_ranges(levels)
    known = scheme.levels
    chosen: set[int] = set()
    left_out: list[str] = []
    for first, last in wanted.ranges:
        inside = [level for level in known if first <= level <= last]
        if not inside:
            what = f"level {first}" if first == last else f"levels {first}-{last}"
            raise ScaleNotInCache(
                f"{what} {'is not a level' if first == last else 'hold no level'} of this cache; "
                f"its levels are {_levels_span(scheme)}: {_scales_list(scheme)}"
            )
        if len(inside) < last - first + 1:
            left_out.append(_range_text(first, last))
        chosen.update(inside)
    if left_out:
        message = (
            f"levels {', '.join(left_out)}: only the levels of this cache are scanned "
            f"(its levels are {_levels_span(scheme)})"
        )
        if warnings is None:
            log.warning("%s", message)
        else:
            warnings.append(message)
    return tuple(level for level in known if level in chosen)


def select_levels(
    scheme: TilingScheme,
    scales: Sequence[float] | None = None,
    levels: Sequence[int] | str | None = None,
    warnings: list[str] | None = None,
) -> tuple[int, ...]:
    """The level IDs chosen by scales and/or level IDs, in the scheme's order; all when neither.

    Raises:
        UsageError: a scale or level that is not a number, or an empty list of them.
        ScaleNotInCache: a scale no LOD matches within 1 %, or a level the scheme does not have;
            the message lists the cache's scales.
    """
    if scales is None and levels is None:
        return scheme.levels
    chosen: set[int] = set()
    if scales is not None:
        for scale in parse_scales(scales):
            match = [
                lod for lod in scheme.lods if abs(lod.scale - scale) <= SCALE_TOLERANCE * scale
            ]
            if not match:
                raise ScaleNotInCache(
                    f"scale {scale:.2f} is not a scale of this cache (within 1 %); its scales "
                    f"are: {_scales_list(scheme)}"
                )
            chosen.add(min(match, key=lambda lod: abs(lod.scale - scale)).level)
    if levels is not None:
        chosen.update(requested_levels(scheme, levels, warnings))
    return tuple(level for level in scheme.levels if level in chosen)


@dataclass
class Selection:
    """The levels and area a run covers in one cache (see :meth:`.request.Coverage.resolve`)."""

    #: The level IDs, in the scheme's order; as asked (``None``: every LOD) for a rebuild.
    levels: Iterable[int] | None
    scales: list[float] | None = None
    area: AreaOfInterest | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def geometry(self) -> Any:
        """The area's polygon in the cache's CRS; ``None`` for the full extent."""
        return None if self.area is None else self.area.geometry


def _bounds(geometry: Any) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in geometry.bounds) + ")"


def area_of_interest(
    reader: CacheReader,
    aoi: object,
    aoi_layer: str | None,
    extent: str | Sequence[float] | None,
    extent_crs: str | None,
    warnings: list[str],
) -> AreaOfInterest | None:
    """A run's area in the cache's CRS, clipped to the tiling grid; ``None`` for none.

    Raises:
        InvalidAOI: an area that cannot be read or misses the tiling grid.
    """
    import shapely

    from .aoi import extent_aoi, geometry_aoi, read_aoi
    from .store.writer import store_crs

    cache_crs, _ = store_crs(reader.scheme.spatial_reference)
    area: AreaOfInterest | None = None
    if aoi is not None:
        if extent is not None:
            warnings.append(
                "both an area of interest and an extent were given: the area of "
                "interest is used, the extent ignored"
            )
        if isinstance(aoi, (str, os.PathLike)):
            area = read_aoi(aoi, cache_crs, aoi_layer)
        elif isinstance(aoi, shapely.Geometry):
            area = geometry_aoi(aoi)
        else:
            raise InvalidAOI(
                f"aoi={aoi!r}: give a vector file's path or a shapely geometry in the cache's CRS"
            )
    elif extent is not None:
        area = extent_aoi(extent, cache_crs, extent_crs)
    if area is None:
        return None
    warnings.extend(area.warnings)
    world = grid.grid_extent(reader.scheme)
    if world is not None:
        clipped = shapely.intersection(area.geometry, shapely.box(*world))
        if clipped.is_empty or clipped.area <= 0:
            raise InvalidAOI(
                f"{area.source}: the area of interest {_bounds(area.geometry)} misses the cache's "
                f"tiling grid {_bounds(shapely.box(*world))} entirely; is it in the cache's CRS "
                f"({reader.scheme.spatial_reference})?"
            )
        area.geometry = clipped
    return area
