"""The ``TaskStatus`` rows of a status store, read with GDAL (pyogrio), not with cachestatus.

Tests compare stores through these rows: one reader, independent of the store reader under
test, for every test that looks at what a rebuild or a report wrote.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from pyogrio.raw import read

#: What a row says of a bundle's tiles.
COUNTS = ("tilesExpected", "tilesPresent", "tilesStray", "tileBytes", "status")


def task_rows(
    status: str | os.PathLike[str] | None,
    fields: Sequence[str] | None = None,
    *,
    geometry: bool = False,
) -> dict[str, dict[str, Any]]:
    """Every ``TaskStatus`` row keyed by its ``bundleName`` (``L05/R0080C0100``).

    Args:
        status: the store (``.gdb`` or ``.gpkg``); ``None`` fails (a run that wrote none).
        fields: the fields to keep (every field by default), as Python values.
        geometry: also keep the polygon's WKB, as ``"wkb"``.
    """
    assert status is not None, "the run wrote no status store"
    meta, _, wkb, values = read(os.fspath(status), layer="TaskStatus", read_geometry=geometry)
    columns = {name: column.tolist() for name, column in zip(meta["fields"], values, strict=True)}
    keep = list(columns) if fields is None else list(fields)
    rows: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(columns["bundleName"]):
        rows[name] = {field: columns[field][i] for field in keep}
        if geometry:
            rows[name]["wkb"] = wkb[i]
    return rows


def level_rows(status: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every ``LevelStatus`` row, as stored, with every field."""
    meta, _, _, values = read(os.fspath(status), layer="LevelStatus", read_geometry=False)
    columns = {name: v.tolist() for name, v in zip(meta["fields"], values, strict=True)}
    return [{name: columns[name][i] for name in columns} for i in range(len(columns["levelID"]))]


def rows_in_order(status: str | os.PathLike[str] | None) -> list[tuple[str, dict[str, Any]]]:
    """The ``TaskStatus`` rows in the store's order, every field and the polygon, but for the
    job's ID (one per run); an empty count (NaN) as ``None``, which compares."""
    return [
        (name, {k: None if v != v else v for k, v in row.items() if k != "jobID"})
        for name, row in task_rows(status, geometry=True).items()
    ]


def stored_tiles(status: str | os.PathLike[str] | None) -> dict[str, tuple[int, int]]:
    """Per bundle that is not ``MISSING``: its stored tiles (present + stray) and tile bytes."""
    return {
        name: (row["tilesPresent"] + row["tilesStray"], row["tileBytes"])
        for name, row in task_rows(
            status, ["tilesPresent", "tilesStray", "tileBytes", "status"]
        ).items()
        if row["status"] != "MISSING"
    }
