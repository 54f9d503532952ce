"""The status store's own value records: the rows of its ``Jobs`` and ``BundleFiles`` tables, and
``TaskStatus`` rows read back with their polygons. The rows of its other tables are
:mod:`cachestatus.models` types
(:class:`~cachestatus.models.BundleStatus`, :class:`~cachestatus.models.LevelSummary`,
:class:`~cachestatus.models.MissingAreaRecord`).
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..models import RowBatch
from .tables import JobRecord as JobRecord


@dataclass(frozen=True)
class StoredRows:
    """``TaskStatus`` rows read back from a store, and their polygons (shapely, in the store's
    CRS), one per row."""

    rows: RowBatch
    geometry: npt.NDArray[np.object_]


def picked(values: Any, which: Any) -> Any:
    """The items of a column (a numpy array or a list) at the positions ``which``: an integer
    array, or a slice (views of an array, not copies)."""
    if isinstance(values, list) and not isinstance(which, slice):
        return [values[i] for i in np.asarray(which).tolist()]
    return values[which]


@dataclass
class BundleFileRows:
    """Rows of the ``BundleFiles`` table, in columns: per bundle file, its key (``level``,
    ``row``, ``col``), its ``size`` and ``stamp`` (text) as read, the block of its ``TaskStatus``
    row (``row0``, ``row1``, ``col0``, ``col1``) and its ``holes`` (:func:`encode_holes`)."""

    level: npt.NDArray[np.int64]
    row: npt.NDArray[np.int64]
    col: npt.NDArray[np.int64]
    size: npt.NDArray[np.int64]
    stamp: list[str]
    row0: npt.NDArray[np.int64]
    row1: npt.NDArray[np.int64]
    col0: npt.NDArray[np.int64]
    col1: npt.NDArray[np.int64]
    holes: list[str]

    def __len__(self) -> int:
        return len(self.stamp)

    def take(self, which: Any) -> BundleFileRows:
        """The rows at the positions ``which`` (an integer array, or a slice: views of the
        arrays, not copies)."""
        columns = {name: picked(values, which) for name, values in vars(self).items()}
        return BundleFileRows(**columns)

    @classmethod
    def concat(cls, parts: list[BundleFileRows]) -> BundleFileRows:
        """One set of rows holding those of ``parts`` in order."""
        columns: dict[str, Any] = {
            name: [v for p in parts for v in getattr(p, name)]
            if isinstance(first, list)
            else np.concatenate([getattr(p, name) for p in parts])
            for name, first in vars(parts[0]).items()
        }
        return cls(**columns)


@dataclass
class FileStamps:
    """The keys, sizes and stamps (text) of ``BundleFiles`` rows, as read: what telling a
    changed bundle file from an unchanged one needs."""

    level: npt.NDArray[Any]
    row: npt.NDArray[Any]
    col: npt.NDArray[Any]
    size: npt.NDArray[Any]
    stamp: npt.NDArray[np.object_]

    def __len__(self) -> int:
        return len(self.stamp)


def encode_holes(rows: npt.NDArray[np.int64]) -> str:
    """A bundle's tagged holes ``(kind, a, b, c, d)`` (:attr:`cachestatus.scan.ScanBatch.holes`
    without the level) as short text: the little-endian int64 values, deflated (mostly high
    zero bytes), in base64; ``""`` for none. Exact both ways (:func:`decode_holes`)."""
    if not len(rows):
        return ""
    raw = np.ascontiguousarray(rows, dtype="<i8").tobytes()
    return base64.b64encode(zlib.compress(raw, 1)).decode("ascii")


def decode_holes(text: str) -> npt.NDArray[np.int64]:
    """The tagged holes :func:`encode_holes` wrote, shape (m, 5)."""
    raw = zlib.decompress(base64.b64decode(text))
    return np.frombuffer(raw, dtype="<i8").astype(np.int64).reshape(-1, 5)
