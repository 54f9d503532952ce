"""The status of the same tiles is the same in every format: bundle by bundle, level by level,
and over a selection of levels and an area.

The oracle is the Compact V2 cache of the tiles, written by MapProxy. What is compared is what
every format can carry: the bundle's level, row and column, its state and its expected, present
and stray tiles; with ``--sizes`` also its tile bytes. A bundle file's size and dead bytes
belong to Compact bundles alone. Where bundles are virtual (``VIRTUAL_BUNDLES``) a bundle that
holds no tile has nothing on disk: the Compact bundle file the writer emptied (``EMPTY``) is
``MISSING`` there.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from cachestatus.cli import main
from tests.contract.suite import (
    AREA,
    LEVELS_WITH_TILES,
    TILES,
    VIRTUAL_BUNDLES,
    Builds,
)
from tests.helpers import WEB_MERCATOR_HALF
from tests.status_rows import task_rows

TWIN = "compact-v2"
COMPARED = (
    "levelID",
    "bundleRow",
    "bundleCol",
    "status",
    "tilesExpected",
    "tilesPresent",
    "tilesStray",
)


def _comparable(rows: dict[str, dict[str, Any]], sizes: bool) -> dict[str, dict[str, Any]]:
    fields = [*COMPARED, "tileBytes"] if sizes else COMPARED
    return {name: {f: row[f] for f in fields} for name, row in rows.items()}


def _as_virtual(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The rows with every bundle holding no tile ``MISSING``, as virtual bundles are."""
    return {
        name: {**row, "status": "MISSING"}
        if row["status"] == "EMPTY" and row["tilesPresent"] + row["tilesStray"] == 0
        else row
        for name, row in rows.items()
    }


def test_the_tiles_give_every_state(builds: Builds):
    """The contract's tiles make every state a scan can find in healthy files, and the twin
    reports exactly the tiles written."""
    rows = builds.rebuild(TWIN, sizes=True).rows
    states = {(row["status"], row["tilesStray"] > 0) for row in rows.values()}
    assert states >= {
        ("COMPLETE", False),
        ("COMPLETE", True),
        ("PARTIAL", False),
        ("PARTIAL", True),
        ("MISSING", False),
        ("EMPTY", True),  # only strays
        ("EMPTY", False),  # a bundle file holding no tile
    }
    assert sum(r["tilesPresent"] + r["tilesStray"] for r in rows.values()) == len(TILES)
    assert sum(r["tileBytes"] for r in rows.values()) == sum(map(len, TILES.values()))


@pytest.mark.parametrize("sizes", [False, True], ids=["counted", "sizes"])
def test_bundle_rows_equal_the_compact_v2_rows(builds: Builds, kind: str, sizes: bool):
    twin = _comparable(builds.rebuild(TWIN, sizes).rows, sizes)
    rows = _comparable(builds.rebuild(kind, sizes).rows, sizes)
    assert rows == (_as_virtual(twin) if kind in VIRTUAL_BUNDLES else twin)


@pytest.mark.parametrize("sizes", [False, True], ids=["counted", "sizes"])
def test_level_totals_equal_the_compact_v2_totals(builds: Builds, kind: str, sizes: bool):
    """The levels holding tiles have the twin's totals; the others, where a format lists
    them (its declared levels), hold none."""
    twin = builds.rebuild(TWIN, sizes).levels
    levels = builds.rebuild(kind, sizes).levels
    if not sizes:  # counted, not measured: some formats report no bytes
        twin = {lv: counts[:3] for lv, counts in twin.items()}
        levels = {lv: counts[:3] for lv, counts in levels.items()}
    assert {lv: levels[lv] for lv in LEVELS_WITH_TILES} == {
        lv: twin[lv] for lv in LEVELS_WITH_TILES
    }
    empty = {lv: counts[1:3] for lv, counts in levels.items() if lv not in LEVELS_WITH_TILES}
    assert set(empty.values()) <= {(0, 0)}


def _tiles_in_area(level: int) -> int:
    """Tiles written at ``level`` whose square meets :data:`AREA`, by their coordinates."""
    size = 2 * WEB_MERCATOR_HALF / 2**level
    xmin, ymin, xmax, ymax = AREA

    def meets(row: int, col: int) -> bool:
        west, north = -WEB_MERCATOR_HALF + col * size, WEB_MERCATOR_HALF - row * size
        return west < xmax and west + size > xmin and north - size < ymax and north > ymin

    return sum(1 for lv, row, col in TILES if lv == level and meets(row, col))


def _selected(builds: Builds, kind: str, command: str) -> dict[str, Any]:
    """The JSON of ``cachestatus COMMAND`` (``report`` or ``verify``) of the cache of ``kind``
    over levels 8 and 12 and :data:`AREA`; a report's rows as ``"rows"``."""
    cache = builds.cache(kind)
    args = [command, str(cache.path), "--levels", "8,12", "--extent", ",".join(map(repr, AREA))]
    out = builds.root / "reports" / kind
    if command == "report":
        args += ["--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--json", "--workers", "1", *cache.cli])
    assert result.exit_code == 0, result.output
    found: dict[str, Any] = json.loads(result.stdout)
    if command == "report":
        found["rows"] = _comparable(task_rows(out / "Status.gdb"), sizes=False)
    return found


def test_a_selection_of_levels_and_area_counts_the_same(builds: Builds, kind: str):
    twin = builds.once(("report", TWIN), lambda: _selected(builds, TWIN, "report"))
    report = builds.once(("report", kind), lambda: _selected(builds, kind, "report"))

    def counts(levels: list[dict[str, int]]) -> dict[int, tuple[int, int, int]]:
        return {
            lv["level"]: (lv["tiles_expected"], lv["tiles_present"], lv["tiles_stray"])
            for lv in levels
        }

    assert counts(report["levels"]) == counts(twin["levels"])
    assert sorted(counts(twin["levels"])) == [8, 12] and twin["totals"]["tiles_expected"] > 0
    assert report["rows"] == (
        _as_virtual(twin["rows"]) if kind in VIRTUAL_BUNDLES else twin["rows"]
    )
    checked = _selected(builds, kind, "verify")
    assert checked["clean"]
    assert {lv["level"]: lv["tiles_checked"] for lv in checked["levels"]} == {
        lv: _tiles_in_area(lv) for lv in (8, 12)
    }
