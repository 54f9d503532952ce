"""Rows written into a GeoPackage store through SQLite (:mod:`cachestatus.store.gpkg_rows`)
are the rows GDAL writes: the same store is written twice from one copy, once by GDAL
(pyogrio) and once through SQLite, with random rows in every table an incremental rebuild
writes, and the two are compared byte for byte in SQLite (fields, geometry blobs, R-tree,
feature counts, layer extents), field by field through GDAL, and checked by Debian's ogrinfo.
"""

from __future__ import annotations

import math
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pyogrio.raw import read

from cachestatus import rebuild
from cachestatus.models import (
    BundleKey,
    BundleState,
    BundleStatus,
    Extent,
    MissingAreaRecord,
    RowBatch,
    TileRange,
)
from cachestatus.request import CacheSource
from cachestatus.results import LevelSummary
from cachestatus.store.geometry import rectangles_wkb, tile_rectangles
from cachestatus.store.records import BundleFileRows
from cachestatus.store.schema import (
    BUNDLE_FILES_LAYER,
    LEVEL_STATUS_LAYER,
    MISSING_AREAS_LAYER,
    TASK_STATUS_LAYER,
)
from cachestatus.store.writer import StatusWriter, areas_wkb
from tests.builders import build
from tests.conftest import need_program

INT32 = st.integers(0, 2**31 - 1)
INT64 = st.integers(0, 2**53)
#: Epoch seconds: whole, to the millisecond, or unknown.
MTIMES = st.one_of(
    st.none(),
    st.integers(0, 4_000_000_000).map(float),
    st.integers(0, 4_000_000_000_000).map(lambda ms: ms / 1000),
)
TEXTS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Extent]:
    """A GeoPackage store GDAL wrote (a rebuild's), its cache's tiling scheme and extent."""
    root = tmp_path_factory.mktemp("gpkg-rows")
    tiles = {(8, r, c): b"t" * 20 for r in range(0, 256, 7) for c in range(0, 130, 5)}
    cache = build("compact-v2", root / "cache", tiles, levels=10).path
    status = root / "Status.gpkg"
    rebuild(cache, status, workers=1)
    with CacheSource(cache).open() as reader:
        assert reader.full_extent is not None
        return status, reader.scheme, reader.full_extent


@st.composite
def task_rows(draw: st.DrawFn) -> RowBatch:
    count = draw(st.integers(0, 6))
    rows = []
    for _ in range(count):
        level = draw(st.sampled_from([8, 9]))
        row0, col0 = draw(st.integers(0, 7)) * 128, draw(st.integers(0, 7)) * 128
        rows.append(
            BundleStatus(
                BundleKey(level, row0, col0),
                draw(st.sampled_from(list(BundleState))),
                *(draw(INT32) for _ in range(3)),
                *(draw(INT64) for _ in range(3)),
                draw(MTIMES),
                TileRange(row0, row0 + draw(st.integers(1, 128)), col0, col0 + 128),
                draw(TEXTS),
                draw(st.one_of(st.none(), INT32)),
            )
        )
    return RowBatch.from_statuses(rows)


@st.composite
def bundle_files(draw: st.DrawFn) -> BundleFileRows:
    count = draw(st.integers(0, 5))
    ints = st.lists(INT32, min_size=count, max_size=count).map(
        lambda v: np.array(v, dtype=np.int64)
    )
    texts = st.lists(TEXTS, min_size=count, max_size=count)
    return BundleFileRows(
        level=draw(ints),
        row=draw(ints),
        col=draw(ints),
        size=draw(ints),
        stamp=draw(texts),
        row0=draw(ints),
        row1=draw(ints),
        col0=draw(ints),
        col1=draw(ints),
        holes=draw(texts),
    )


FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=64)
LEVELS = st.lists(
    st.builds(
        LevelSummary,
        st.integers(0, 20),
        FLOATS,
        FLOATS,
        INT32,
        INT64,
        INT64,
        INT64,
        INT64,
        st.one_of(st.none(), INT64),
    ),
    max_size=5,
)
COORDS = st.integers(-(2**20), 2**20).map(lambda v: v * 19.109257071294063)


@st.composite
def areas(draw: st.DrawFn) -> list[MissingAreaRecord]:
    records = []
    for level in range(draw(st.integers(0, 3))):
        boxes = [
            shapely.box(x, y, x + w, y + h)
            for x, y, w, h in draw(
                st.lists(
                    st.tuples(COORDS, COORDS, st.integers(1, 50), st.integers(1, 50)),
                    min_size=1,
                    max_size=4,
                )
            )
        ]
        geometry = shapely.union_all(boxes) if draw(st.booleans()) else boxes[0]
        records.append(
            MissingAreaRecord(level, draw(FLOATS), draw(INT64), geometry, draw(st.booleans()))
        )
    return records


def _writer(store: tuple[Path, Any, Extent]) -> StatusWriter:
    base, scheme, extent = store
    return StatusWriter(base, scheme, extent, "20261201T000000Z-abcdef", "ab12cd")


def _write(
    store: tuple[Path, Any, Extent],
    copy: Path,
    sqlite: bool,
    rows: RowBatch,
    files: BundleFileRows,
    levels: list[LevelSummary],
    missing: list[MissingAreaRecord],
) -> None:
    """What an update of ``base`` writes (appended rows, tables written whole), into ``copy``,
    through SQLite or GDAL."""
    shutil.copyfile(store[0], copy)
    writer = _writer(store)
    scheme = writer.scheme
    writer.temp = copy
    writer._updated = sqlite
    geometry = rectangles_wkb(*tile_rectangles(scheme, rows.level, rows.tiles, writer.clip))
    writer._write(TASK_STATUS_LAYER, rows, geometry, append=True)
    writer._write(BUNDLE_FILES_LAYER, files, append=True)
    writer._write(MISSING_AREAS_LAYER, missing, areas_wkb(missing))
    writer._write(LEVEL_STATUS_LAYER, levels)


def _sqlite_tables(store: Path) -> dict[str, Any]:
    """Every table's rows in SQLite, in order, and the GeoPackage's bookkeeping."""
    found: dict[str, Any] = {}
    with sqlite3.connect(store) as db:
        for table in ("TaskStatus", "BundleFiles", "MissingAreas", "LevelStatus", "Jobs"):
            found[table] = db.execute(f'SELECT * FROM "{table}" ORDER BY fid').fetchall()
        for tree in ("rtree_TaskStatus_geom", "rtree_MissingAreas_geom"):
            found[tree] = db.execute(f'SELECT * FROM "{tree}" ORDER BY id').fetchall()
        found["contents"] = db.execute(
            "SELECT table_name, data_type, identifier, description, min_x, min_y, max_x, "
            "max_y, srs_id FROM gpkg_contents ORDER BY table_name"
        ).fetchall()
        found["counts"] = db.execute(
            "SELECT * FROM gpkg_ogr_contents ORDER BY table_name"
        ).fetchall()
        found["sequence"] = db.execute("SELECT * FROM sqlite_sequence ORDER BY name").fetchall()
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    return found


def _same_extents(ours: list[tuple[Any, ...]], gdals: list[tuple[Any, ...]]) -> bool:
    """``gpkg_contents`` rows equal, but for the last of the 16 digits GDAL prints of an
    extent: SQLite prints it for GDAL (``%.17g``), and SQLite 3.43 changed how it rounds
    (pyogrio's GDAL writes ``1024198.741993077`` where Debian's, on SQLite 3.40, writes
    ``...076``); the rows written through SQLite hold the nearest 16-digit value."""
    if len(ours) != len(gdals):
        return False
    for mine, theirs in zip(ours, gdals, strict=True):
        if mine[:4] != theirs[:4] or mine[8:] != theirs[8:]:
            return False
        for a, b in zip(mine[4:8], theirs[4:8], strict=True):
            if (a is None) != (b is None) or (
                a is not None and not math.isclose(a, b, rel_tol=2e-15)
            ):
                return False
    return True


def _gdal_tables(store: Path) -> dict[str, Any]:
    """Every table read through GDAL: its fields (NaN as ``None``) and geometries."""
    found = {}
    for table in ("TaskStatus", "BundleFiles", "MissingAreas", "LevelStatus", "Jobs"):
        meta, _, wkb, values = read(str(store), layer=table, read_geometry=True)
        columns = [[None if v != v else v for v in column.tolist()] for column in values]
        found[table] = (
            list(meta["fields"]),
            columns,
            None if wkb is None else list(wkb),
        )
    return found


@settings(
    max_examples=40,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking a store takes minutes
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=task_rows(), files=bundle_files(), levels=LEVELS, missing=areas())
def test_rows_written_through_sqlite_are_gdals(
    store: tuple[Path, Any, Extent],
    tmp_path_factory: pytest.TempPathFactory,
    rows: RowBatch,
    files: BundleFileRows,
    levels: list[LevelSummary],
    missing: list[MissingAreaRecord],
) -> None:
    work = tmp_path_factory.mktemp("written")
    by_gdal, by_sqlite = work / "gdal.gpkg", work / "sqlite.gpkg"
    _write(store, by_gdal, False, rows, files, levels, missing)
    _write(store, by_sqlite, True, rows, files, levels, missing)
    ours, gdals = _sqlite_tables(by_sqlite), _sqlite_tables(by_gdal)
    assert _same_extents(ours.pop("contents"), gdals.pop("contents"))
    assert ours == gdals
    assert _gdal_tables(by_sqlite) == _gdal_tables(by_gdal)
    with sqlite3.connect(by_sqlite) as db:
        assert db.execute("SELECT count(*) FROM rtree_TaskStatus_geom").fetchone()[0] == len(
            db.execute('SELECT fid FROM "TaskStatus"').fetchall()
        )


def test_debian_ogrinfo_reads_rows_written_through_sqlite(
    store: tuple[Path, Any, Extent], tmp_path: Path
) -> None:
    ogrinfo = need_program("ogrinfo", "apt-get install gdal-bin")
    writer = _writer(store)
    rows = RowBatch.from_statuses(
        [
            BundleStatus(
                BundleKey(9, 128, 256),
                BundleState.PARTIAL,
                16384,
                100,
                0,
                5000,
                6000,
                0,
                time.time(),
                TileRange(128, 256, 256, 384),
                "",
                None,
            )
        ]
    )
    files = BundleFileRows(
        *(np.array([v]) for v in (9, 128, 256, 6000)),
        ["1"],
        *(np.array([v]) for v in (128, 256, 256, 384)),
        [""],
    )
    area = MissingAreaRecord(9, 1.0, 5, shapely.box(0, 0, 10, 10))
    copy = tmp_path / "sqlite.gpkg"
    _write(store, copy, True, rows, files, [LevelSummary(9, 1.0, 2.0, 1)], [area])
    out = subprocess.run(
        [ogrinfo, "-al", "-so", str(copy)], capture_output=True, text=True, check=True
    )
    assert "ERROR" not in out.stdout + out.stderr
    for table, count in (("TaskStatus", None), ("MissingAreas", 1), ("LevelStatus", 1)):
        assert f"Layer name: {table}" in out.stdout
        if count is not None:
            text = subprocess.run(
                [ogrinfo, str(copy), "-sql", f"SELECT COUNT(*) AS n FROM {table}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert f"n (Integer) = {count}" in text
    # The R-tree finds the row appended, through GDAL's spatial filter.
    polygon = rectangles_wkb(*tile_rectangles(writer.scheme, rows.level, rows.tiles, writer.clip))
    xmin, ymin, xmax, ymax = shapely.bounds(shapely.from_wkb(polygon[0]))
    middle = ((xmin + xmax) / 2, (ymin + ymax) / 2)
    text = subprocess.run(
        [
            ogrinfo,
            "-q",
            str(copy),
            "TaskStatus",
            "-spat",
            str(middle[0]),
            str(middle[1]),
            str(middle[0] + 1e-3),
            str(middle[1] + 1e-3),
            "-fields=YES",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "bundleName (String) = L09/R0080C0100" in text


def test_missing_areas_are_written_as_multipolygons() -> None:
    """Each area is a multipolygon, as the layer declares: one polygon, several, or none."""
    one = shapely.box(0, 0, 10, 10)
    two = shapely.union_all([one, shapely.box(20, 20, 30, 30)])
    records = [MissingAreaRecord(level, 1.0, 1, g) for level, g in enumerate([one, two])]
    records.append(MissingAreaRecord(2, 1.0, 0, shapely.Polygon()))
    written = [shapely.from_wkb(wkb) for wkb in areas_wkb(records)]
    assert [g.geom_type for g in written] == ["MultiPolygon"] * 3
    assert written[0].equals(one) and written[1].equals(two) and written[2].is_empty
    assert len(shapely.get_parts(written[2])) == 0
