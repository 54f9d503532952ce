"""The status store's own value records: the rows of its ``Jobs`` table, and ``TaskStatus`` rows
read back with their polygons. The rows of its other tables are :mod:`cachestatus.models` types
(:class:`~cachestatus.models.BundleStatus`, :class:`~cachestatus.models.LevelSummary`,
:class:`~cachestatus.models.MissingAreaRecord`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from ..models import RowBatch


@dataclass(frozen=True)
class JobRecord:
    """One row of the ``Jobs`` table."""

    job_id: str
    mode: str
    started: datetime
    finished: datetime | None
    cache_path: str
    format: str
    parameters: str
    tool_version: str
    outcome: str


@dataclass(frozen=True)
class StoredRows:
    """``TaskStatus`` rows read back from a store, and their polygons (shapely, in the store's
    CRS), one per row."""

    rows: RowBatch
    geometry: npt.NDArray[np.object_]
