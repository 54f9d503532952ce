"""Which levels a run covers: ``--scales`` (matched within 1 %) and ``--levels`` (``0-5,7``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .errors import ScaleNotInCache, UsageError
from .models import TilingScheme

#: A requested scale selects the LOD whose scale is within this relative distance of it.
SCALE_TOLERANCE = 0.01


def parse_scales(value: str | float | Iterable[float | str]) -> list[float]:
    """Scales as numbers, from a list or arcpy's ``"s1;s2"`` (commas work too).

    Raises:
        UsageError: a scale that is not a positive number.
    """
    if isinstance(value, str):
        parts: Iterable[float | str] = value.replace(",", ";").split(";")
    elif isinstance(value, (int, float)):
        parts = [value]
    else:
        parts = value
    scales = []
    for part in parts:
        text = str(part).strip()
        if not text:
            continue
        try:
            scale = float(text)
        except ValueError:
            raise UsageError(
                f"scale {text!r} is not a number (give scale denominators, "
                "e.g. 591657527.59;295828763.80)"
            ) from None
        if not scale > 0:
            raise UsageError(f"scale {text!r} is not a positive scale denominator")
        scales.append(scale)
    return scales


def parse_levels(text: str) -> list[int]:
    """Level IDs from ``"0-5,7"``: single IDs and inclusive ranges, comma separated.

    Raises:
        UsageError: a part that is not an ID or a range.
    """
    levels: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if sep else first
        except ValueError:
            raise UsageError(
                f"levels {text!r}: {part!r} is not a level or a range like 0-5"
            ) from None
        if first < 0 or last < first:
            raise UsageError(f"levels {text!r}: {part!r} is not an increasing range of levels")
        levels.extend(range(first, last + 1))
    return levels


def _scales_list(scheme: TilingScheme) -> str:
    return ", ".join(f"{lod.scale:.2f} (level {lod.level})" for lod in scheme.lods)


def select_levels(
    scheme: TilingScheme,
    scales: Sequence[float] | None = None,
    levels: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """The level IDs chosen by scales and/or level IDs, in the scheme's order; all when neither.

    Raises:
        ScaleNotInCache: a scale no LOD matches within 1 %, or a level the scheme does not have;
            the message lists the cache's scales.
    """
    if not scales and not levels:
        return scheme.levels
    chosen: set[int] = set()
    for scale in scales or ():
        match = [lod for lod in scheme.lods if abs(lod.scale - scale) <= SCALE_TOLERANCE * scale]
        if not match:
            raise ScaleNotInCache(
                f"scale {scale:.2f} is not a scale of this cache (within 1 %); its scales are: "
                f"{_scales_list(scheme)}"
            )
        chosen.add(min(match, key=lambda lod: abs(lod.scale - scale)).level)
    known = set(scheme.levels)
    for level in levels or ():
        if level not in known:
            raise ScaleNotInCache(
                f"level {level} is not a level of this cache; its levels are "
                f"{min(known)}-{max(known)}: {_scales_list(scheme)}"
            )
        chosen.add(level)
    return tuple(level for level in scheme.levels if level in chosen)
