"""Decoded bundle indexes kept for reading single tiles (``read_tile``, ``presence``).

A tile server asks for many tiles of one bundle in a burst: its index is decoded once and kept
in a small least-recently-used cache (the way MapProxy and GeoWebCache keep bundle indexes),
keyed by what changes when the bundle is rewritten (path, size and ``st_mtime_ns``, or the
ETag of an object), so a rewritten bundle is decoded again. A scan never goes through here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

#: Decoded indexes a reader keeps: a Compact V2 index is 256 KiB decoded (sizes and offsets),
#: so 64 of them stay under 20 MiB, and cover a screen of tiles at any zoom.
KEPT_INDEXES = 64


class TileIndex(NamedTuple):
    """Where the tiles of one bundle are, as tile reads need it."""

    #: Tile sizes in bytes, (128, 128), row-major; 0: no tile.
    sizes: npt.NDArray[np.unsignedinteger[Any]]
    #: Byte offset of each tile's stored bytes in the bundle's source, (128, 128); -1 where the
    #: index points inside the bundle's header (a damaged tile). ``None`` for readers whose
    #: indexes give no offsets: a tile is then found among the bundle's ``read_tiles``.
    offsets: npt.NDArray[np.int64] | None = None


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class IndexCache(Generic[K, V]):
    """A thread-safe least-recently-used cache of values that are costly to make.

    Threads asking at once for a value not yet kept make it once: the others wait for it. A
    value that fails to be made (a corrupt bundle) is not kept: the next ask tries again.
    ``size`` bounds the values kept, or the sum of their ``weight`` (the most recent value is
    kept whatever its weight).
    """

    def __init__(self, size: int = KEPT_INDEXES, weight: Callable[[V], int] | None = None) -> None:
        self.size = size
        self._weight = weight
        #: The weight of each value kept (1 each without ``weight``), and their sum.
        self._weights: dict[K, int] = {}
        self.total = 0
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        #: A lock per key being made, held while it is made.
        self._making: dict[K, threading.Lock] = {}

    def _kept(self, key: K) -> V | None:
        """The value kept for ``key`` (now the most recently used); call with the lock held."""
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def get(self, key: K, make: Callable[[], V]) -> V:
        """The value of ``key``: the kept one, or ``make()``'s, then kept."""
        with self._lock:
            found = self._kept(key)
            if found is not None:
                return found
            making = self._making.setdefault(key, threading.Lock())
        with making:
            with self._lock:
                found = self._kept(key)
            if found is not None:
                return found
            try:
                value = make()
                weight = 1 if self._weight is None else max(1, self._weight(value))
                with self._lock:
                    self._items[key], self._weights[key] = value, weight
                    self.total += weight
                    while self.total > self.size and len(self._items) > 1:
                        oldest, _ = self._items.popitem(last=False)
                        self.total -= self._weights.pop(oldest)
            finally:
                with self._lock:
                    self._making.pop(key, None)
        return value
