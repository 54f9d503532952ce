"""Arguments of the Python API checked where they enter: a typed value, or a one-line
:class:`~cachestatus.errors.UsageError` naming the argument and what it takes.

The command line's option types check the same values before they reach the API; these checks
are for callers of :mod:`cachestatus.operations` and the arcpy-style tool.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError


def as_path(value: object, what: str) -> Path:
    """``value`` (a ``str`` or path-like) as a :class:`~pathlib.Path`.

    Raises:
        UsageError: anything else, or an empty string.
    """
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
        text = os.fspath(value)
        if isinstance(text, str) and text.strip() and "\x00" not in text:
            return Path(text)
    raise UsageError(f"{what}={value!r}: give a path (a str or os.PathLike)")


def as_count(value: object, what: str, minimum: int = 0) -> int:
    """``value`` as a whole number of at least ``minimum`` (``bool`` is not a number here).

    Raises:
        UsageError: anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{what}={value!r}: give a whole number of at least {minimum:,}")
    return value


__all__ = ["as_count", "as_path"]
