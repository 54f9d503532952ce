"""The status store's own value records: the rows of its ``Jobs`` and ``BundleFiles`` tables, and
``TaskStatus`` rows read back with their polygons. The rows of its other tables are
:mod:`cachestatus.models` types
(:class:`~cachestatus.models.BundleStatus`, :class:`~cachestatus.models.LevelSummary`,
:class:`~cachestatus.models.MissingAreaRecord`).
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Iterable
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


def take_rows(rows: RowBatch, which: Any, **replaced: Any) -> RowBatch:
    """The rows at the positions ``which`` (:func:`picked`), with the columns ``replaced``
    given whole."""
    columns = {name: picked(getattr(rows, name), which) for name in RowBatch.COLUMNS}
    return RowBatch(**{**columns, **replaced})


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
    """The feature ids, keys, sizes and stamps (as :func:`stamp_values`) of ``BundleFiles``
    rows, as read: what telling a changed bundle file from an unchanged one needs."""

    fid: npt.NDArray[np.int64]
    level: npt.NDArray[Any]
    row: npt.NDArray[Any]
    col: npt.NDArray[Any]
    size: npt.NDArray[Any]
    stamp: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.stamp)


#: The value of a missing stamp (:func:`stamp_value`).
NO_STAMP = np.iinfo(np.int64).min
_INT64 = range(NO_STAMP + 1, np.iinfo(np.int64).max + 1)


def stamp_value(stamp: int | str | None) -> int:
    """A bundle file's stamp as one int64, to compare millions of them in little memory: an
    integer (a local file's ``st_mtime_ns``), or one written as text the way ``str`` writes
    it, is its value; other text (an ETag) is a 64-bit digest of it (BLAKE2b): equal stamps
    give equal values, unequal ones unequal values but for a chance of 2**-64. ``None``:
    :data:`NO_STAMP`."""
    if stamp is None:
        return int(NO_STAMP)
    if isinstance(stamp, int) and stamp in _INT64:
        return stamp
    text = str(stamp)
    digits = text.removeprefix("-")
    if digits.isascii() and digits.isdigit() and len(digits) <= 19:
        value = int(text)
        if str(value) == text and value in _INT64:
            return value
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def stamp_values(stamps: Iterable[str | None]) -> npt.NDArray[np.int64]:
    """:func:`stamp_value` of each stamp written as text: at once where every one is an
    integer as ``str`` writes it (a local cache's), a third of the time of one at a time."""
    texts = list(stamps)
    try:
        values = [int(text) for text in texts]  # type: ignore[arg-type] # None: TypeError
        if list(map(str, values)) == texts:  # "+1", " 1", "01", "1_0" are other texts
            return np.array(values, dtype=np.int64)  # OverflowError beyond int64
    except (TypeError, ValueError, OverflowError):
        pass
    return np.array([stamp_value(text) for text in texts], dtype=np.int64)


def _mixed(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64's finaliser: a bijection of 64-bit values that spreads every bit over all."""
    values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def file_signatures(
    sizes: npt.NDArray[Any], stamps: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """A bundle file's size and stamp (:func:`stamp_value`) as one int64 each: a file whose
    size or stamp differs gets another value, but for a chance of 2**-64, and a map of millions
    of files holds one value for both."""
    with np.errstate(over="ignore"):
        size = _mixed(np.asarray(sizes, dtype=np.int64).view(np.uint64))
        return _mixed(np.asarray(stamps, dtype=np.int64).view(np.uint64) ^ size).view(np.int64)


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
