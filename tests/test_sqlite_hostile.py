"""Hostile MBTiles and GeoPackage files: views that never end, values of any type anywhere.

Each file is made here with the sqlite3 module and run through the command line in a
subprocess, under an address-space limit and a time limit: a hang or a memory explosion fails
the test instead of the machine. What is asserted is the exit code and the one-line message.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cachestatus import formats
from cachestatus.errors import CorruptBundle
from cachestatus.grid import HALF_WORLD
from tests.helpers import run_limited

SRC = str(Path(__file__).resolve().parent.parent / "src")
#: Address space of a run: GDAL, numpy and the scan fit in well under it.
MEMORY = 2 << 30
TIMEOUT = 60

ENDLESS = (
    "WITH RECURSIVE r(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM r) "
    "SELECT 0 AS zoom_level, n AS tile_column, 0 AS tile_row, x'00' AS tile_data FROM r"
)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(40)


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``cachestatus ARGS`` in a subprocess under :data:`MEMORY` and :data:`TIMEOUT`."""
    return run_limited(*args, memory=MEMORY, timeout=TIMEOUT)


def _errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error")]


def mbtiles(path: Path, rows=(), metadata=(), tiles_sql: str | None = None, index=True) -> Path:
    """An MBTiles file: ``tiles`` a table of ``rows`` (under the spec's unique index), or the
    view ``tiles_sql``; ``metadata`` (name, value) pairs."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE metadata (name text, value text)")
        db.executemany("INSERT INTO metadata VALUES (?, ?)", metadata)
        if tiles_sql is not None:
            db.execute(f"CREATE VIEW tiles AS {tiles_sql}")
        else:
            db.execute(
                "CREATE TABLE tiles (zoom_level integer, tile_column integer, "
                "tile_row integer, tile_data blob)"
            )
            if index:
                db.execute("CREATE UNIQUE INDEX t ON tiles (zoom_level, tile_column, tile_row)")
            db.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)", rows)
    db.close()
    return path


def geopackage(
    path: Path,
    rows=((0, 0, 0, PNG),),
    matrices=((0, 1, 1, 256, 256, 2 * HALF_WORLD / 256, 2 * HALF_WORLD / 256),),
    matrix_set=(-HALF_WORLD, -HALF_WORLD, HALF_WORLD, HALF_WORLD),
    contents=(-HALF_WORLD, -HALF_WORLD, HALF_WORLD, HALF_WORLD),
    srs=("EPSG", 3857),
    tiles_sql: str | None = None,
    contents_sql: str | None = None,
) -> Path:
    """A GeoPackage with one tile table, ``tiles``, every value given (any type)."""
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE gpkg_spatial_ref_sys (srs_name, srs_id INTEGER PRIMARY KEY,
                organization, organization_coordsys_id, definition, description);
            CREATE TABLE gpkg_tile_matrix_set (table_name, srs_id, min_x, min_y, max_x, max_y);
            CREATE TABLE gpkg_tile_matrix (table_name, zoom_level, matrix_width, matrix_height,
                tile_width, tile_height, pixel_x_size, pixel_y_size);
            """
        )
        if contents_sql is not None:
            db.execute(f"CREATE VIEW gpkg_contents AS {contents_sql}")
        else:
            db.execute(
                "CREATE TABLE gpkg_contents (table_name, data_type, identifier, description, "
                "last_change, min_x, min_y, max_x, max_y, srs_id)"
            )
            db.execute(
                "INSERT INTO gpkg_contents VALUES ('tiles', 'tiles', 't', '', '', ?, ?, ?, ?, 5)",
                contents,
            )
        db.execute("INSERT INTO gpkg_spatial_ref_sys VALUES ('s', 5, ?, ?, 'undefined', '')", srs)
        db.execute("INSERT INTO gpkg_tile_matrix_set VALUES ('tiles', 5, ?, ?, ?, ?)", matrix_set)
        db.executemany(
            "INSERT INTO gpkg_tile_matrix VALUES ('tiles', ?, ?, ?, ?, ?, ?, ?)", matrices
        )
        if tiles_sql is not None:
            db.execute(f"CREATE VIEW tiles AS {tiles_sql}")
        else:
            db.execute(
                "CREATE TABLE tiles (id INTEGER PRIMARY KEY, zoom_level INTEGER, "
                "tile_column INTEGER, tile_row INTEGER, tile_data BLOB, "
                "UNIQUE (zoom_level, tile_column, tile_row))"
            )
            db.executemany(
                "INSERT INTO tiles (zoom_level, tile_column, tile_row, tile_data) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )
    db.close()
    return path


# --- Hangs: views that never end -----------------------------------------------------------


@pytest.mark.parametrize("command", ["rebuild", "info"])
def test_an_mbtiles_whose_tiles_never_end_is_refused_in_a_second(tmp_path, command):
    path = mbtiles(tmp_path / "endless.mbtiles", tiles_sql=ENDLESS)
    started = time.monotonic()
    result = cli(command, path)
    assert result.returncode == 2, result.stderr
    (line,) = _errors(result)
    assert str(path) in line and "'tiles' does not behave like a table" in line
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["endless.mbtiles"]  # no status


def test_an_mbtiles_whose_metadata_never_ends_is_refused(tmp_path):
    endless = "WITH RECURSIVE r(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM r) "
    path = tmp_path / "m.mbtiles"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tiles (zoom_level, tile_column, tile_row, tile_data)")
        db.execute("INSERT INTO tiles VALUES (1, 0, 0, x'00')")
        db.execute(f"CREATE VIEW metadata AS {endless} SELECT 'minzoom' AS name, n AS value FROM r")
    db.close()
    result = cli("rebuild", path)
    assert result.returncode == 2, result.stderr
    (line,) = _errors(result)
    assert str(path) in line and "metadata table does not behave like a table" in line


@pytest.mark.parametrize("where", ["tiles", "gpkg_contents"])
def test_a_geopackage_whose_tables_never_end_is_refused(tmp_path, where):
    if where == "tiles":
        path = geopackage(tmp_path / "g.gpkg", tiles_sql=ENDLESS)
    else:
        path = geopackage(
            tmp_path / "g.gpkg",
            contents_sql="WITH RECURSIVE r(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM r) "
            "SELECT 'tiles' AS table_name, 'tiles' AS data_type, 0 AS min_x, 0 AS min_y, "
            "1 AS max_x, 1 AS max_y FROM r",
        )
    result = cli("rebuild", path)
    assert result.returncode == 2, result.stderr
    (line,) = _errors(result)
    assert str(path) in line and "does not behave like a table" in line


def test_a_bundle_read_past_its_budget_is_a_corrupt_bundle(tmp_path):
    """A query of one bundle stopped by the budget is that bundle's problem, not the run's."""
    path = mbtiles(tmp_path / "b.mbtiles", [(3, c, r, PNG) for c in range(8) for r in range(8)])
    with formats.open_cache(path, sizes=True) as reader:
        (bundle,) = list(reader.list_bundles(3))
        db = reader._connect()
        db._watch.allowed = 0  # the next query runs out at its first check
        db.set_progress_handler(db._watch, 1)
        with pytest.raises(CorruptBundle, match="SQLite steps"):
            reader.read_bundle(bundle)
        db._watch.allowed = 10**9
        assert reader.read_bundle(bundle).tiles == 64  # the next query has its own budget


def test_ctrl_c_stops_a_query_that_never_ends(tmp_path):
    """A file large enough to be given a long budget (48 MB: ~50 s of steps): Ctrl-C, not the
    budget, must end the run, at once and without a traceback."""
    path = mbtiles(tmp_path / "big.mbtiles", tiles_sql=ENDLESS)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE padding (b)")
        db.execute("INSERT INTO padding VALUES (zeroblob(48000000))")
    db.close()
    process = subprocess.Popen(
        [sys.executable, "-m", "cachestatus.cli", "rebuild", str(path)],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY)),
        env={**os.environ, "PYTHONPATH": SRC},
    )
    time.sleep(1.5)  # the interpreter up and the query running
    assert process.poll() is None, process.communicate()
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("Ctrl-C did not stop the query")
    assert time.monotonic() - sent < 5
    assert process.returncode != 0 and "Traceback" not in stderr, stderr
    assert "does not behave like a table" not in stderr  # stopped by Ctrl-C, not the budget
    assert len(stderr.strip().splitlines()) == 1, stderr
    if process.returncode == 130:
        assert "interrupt" in stderr.lower()


def test_the_budget_grows_with_the_file():
    from cachestatus.formats import sqlite_db

    assert sqlite_db.MIN_STEPS <= 10**8  # a tiny file: a fraction of a second
    # 100 GB: more steps than any honest query of it takes (about one a byte at most).
    assert sqlite_db.STEPS_PER_BYTE * 100 * 10**9 >= 10 * 100 * 10**9


# --- Bad values in MBTiles ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "warning"),
    [
        ("-inf,-10,10,10", "not finite"),
        ("nan,nan,nan,nan", "not finite"),
        ("10,-10,-10,10", "west is not below east"),
        ("-1e308,-1e308,1e308,1e308", "beyond the world"),
        ("a,b,c,d", "not four numbers"),
        ("1,2,3", "not four numbers"),
    ],
)
def test_unusable_mbtiles_bounds_are_a_warning(tmp_path, bounds, warning):
    path = mbtiles(tmp_path / "b.mbtiles", [(2, 1, 1, PNG)], [("bounds", bounds)])
    result = cli("rebuild", path, "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert warning in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("low", "high", "levels", "warning"),
    [
        ("0", "2000000000", range(31), "kept to 0 / 30"),
        ("-1", "40", range(31), "kept to 0 / 30"),
        ("abc", "3", [0], "are not zoom levels"),
        ("5", "2", [0], "above maxzoom"),
        ("2", "4", range(2, 5), None),
    ],
)
def test_minzoom_maxzoom_are_kept_to_the_grid(tmp_path, low, high, levels, warning):
    path = mbtiles(tmp_path / "z.mbtiles", [], [("minzoom", low), ("maxzoom", high)])
    result = cli("info", path, "--json")
    assert result.returncode == 0, result.stderr
    assert [lv["level"] for lv in json.loads(result.stdout)["levels"]] == list(levels)
    if warning:
        assert warning in result.stderr


HOSTILE_ROWS = [
    (40, 0, 0, PNG),
    (-1, 0, 0, PNG),
    ("abc", 0, 0, PNG),
    (None, 0, 0, PNG),
    (2.5, 0, 0, PNG),
    (2**62, 0, 0, PNG),
    (3, 8, 0, PNG),  # column beyond 2**3
    (3, -1, 0, PNG),
    (3, 0, -5, PNG),
    (3, 1.5, 0, PNG),
    (3, "x", 0, PNG),
    (3, None, 0, PNG),
    (3, 0, 2**62, PNG),
    (3, 2, b"\x00\x01", PNG),
    (3, 3, None, PNG),
]


@pytest.mark.parametrize("index", [True, False])
@pytest.mark.parametrize("command", [["rebuild", "--sizes"], ["rebuild"], ["verify"]])
def test_tiles_with_bad_addresses_are_listed_and_the_scan_goes_on(tmp_path, command, index):
    good = [(3, c, r, PNG) for c in range(2) for r in range(4)]
    path = mbtiles(tmp_path / "t.mbtiles", good + HOSTILE_ROWS, index=index)
    result = cli(*command, path, "--workers", "1", "--json")
    # verify lists problems on stdout and exits 1 when it finds any
    assert result.returncode == (1 if command[0] == "verify" else 0), result.stderr
    assert "Traceback" not in result.stderr and "Overflow" not in result.stderr
    report = json.loads(result.stdout)
    listed = [p["detail"] for p in report["problems"] if p["kind"] == "bad-tile"]
    for shown in ["zoom_level 40", "zoom_level -1", "zoom_level 'abc'", "zoom_level NULL"]:
        assert any(shown in line for line in listed), (shown, listed)
    for shown in ["tile_column 8", "tile_column -1", "tile_column 1.5", "tile_column 'x'"]:
        assert any(shown in line for line in listed), (shown, listed)
    assert any("tile_row -5" in line for line in listed)
    # The 8 good tiles are counted, and only them.
    if command[0] == "rebuild":
        assert report["totals"]["tiles_present"] + report["totals"]["tiles_stray"] == 8


def test_tile_data_that_is_not_a_blob_is_a_damaged_tile(tmp_path):
    """A tile_data of 2,000,000,000 (an integer) must not become 2 GB of zeros."""
    rows = [(1, 0, 0, PNG), (1, 0, 1, 2_000_000_000), (1, 1, 0, "text"), (1, 1, 1, 2.5)]
    path = mbtiles(tmp_path / "d.mbtiles", rows)
    result = cli("verify", path, "--workers", "1")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    assert "not a blob" in result.stdout + result.stderr
    blank = cli("rebuild", path, "--blank", "--workers", "1")
    assert blank.returncode == 0, blank.stderr
    assert "not a blob" in blank.stderr  # the bundle is CORRUPT, listed, and the run ends


# --- Bad values in GeoPackage ---------------------------------------------------------------

RES = 2 * HALF_WORLD / 256


@pytest.mark.parametrize(
    "row",
    [
        (40, 1, 1, 256, 256, RES, RES),
        (-1, 1, 1, 256, 256, RES, RES),
        ("abc", 1, 1, 256, 256, RES, RES),
        (1, 10**15, 2, 256, 256, RES / 2, RES / 2),
        (1, 2, 2, 0, 256, RES / 2, RES / 2),
        (1, 2, 2, 256, 256, 0.0, RES / 2),
        (1, 2, 2, 256, 256, -RES, RES / 2),
        (1, 2, 2, 256, 256, math.inf, RES / 2),
        (1, 2, 2, 256, 256, None, RES / 2),
        (1, 2, 2, 256, 256, "x", RES / 2),
        (1, 2, 2, 256, 256, 1e-300, 1e-300),
    ],
)
def test_a_bad_tile_matrix_row_is_left_out_with_a_warning(tmp_path, row):
    good = (0, 1, 1, 256, 256, RES, RES)
    path = geopackage(tmp_path / "g.gpkg", matrices=[good, row])
    result = cli("rebuild", path, "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "gpkg_tile_matrix rows left out" in result.stderr and "Traceback" not in result.stderr
    alone = geopackage(tmp_path / "alone.gpkg", matrices=[row])
    result = cli("rebuild", alone)
    assert result.returncode == 2, result.stderr
    (line,) = _errors(result)
    assert str(alone) in line and "no usable gpkg_tile_matrix row" in line


@pytest.mark.parametrize(
    "matrix_set",
    [
        (math.nan, -1.0, 1.0, 1.0),
        (-math.inf, -1.0, 1.0, 1.0),
        (-1.0, -1.0, 1.0, math.inf),
        ("a", -1.0, 1.0, 1.0),
        (1.0, -1.0, -1.0, 1.0),
    ],
)
def test_a_tile_matrix_set_without_finite_bounds_is_refused(tmp_path, matrix_set):
    path = geopackage(tmp_path / "g.gpkg", matrix_set=matrix_set)
    result = cli("rebuild", path)
    assert result.returncode == 2, result.stderr
    (line,) = _errors(result)
    assert str(path) in line and "gpkg_tile_matrix_set bounds" in line


@pytest.mark.parametrize(
    "contents",
    [(math.inf, 0.0, 1.0, 1.0), ("a", "b", "c", "d"), (5.0, 5.0, 1.0, 1.0)],
)
def test_unusable_contents_bounds_are_a_warning(tmp_path, contents):
    path = geopackage(tmp_path / "g.gpkg", contents=contents)
    result = cli("rebuild", path, "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "gpkg_contents bounds" in result.stderr


@pytest.mark.parametrize("srs", [("EPSG", 99999), ("EPSG", "abc"), ("nobody", 3857), ("EPSG", -5)])
def test_a_crs_pyproj_cannot_resolve_is_a_warning_and_no_crs(tmp_path, srs):
    path = geopackage(tmp_path / "g.gpkg", srs=srs)
    result = cli("rebuild", path, "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "not one pyproj knows" in result.stderr and "Traceback" not in result.stderr


def test_geopackage_tiles_with_bad_addresses_are_listed(tmp_path):
    matrices = [(z, 2**z, 2**z, 256, 256, RES / 2**z, RES / 2**z) for z in (0, 1, 2)]
    rows = [
        (2, 1, 1, PNG),
        (5, 0, 0, PNG),  # a level without a matrix
        ("z", 0, 0, PNG),
        (2, -3, 0, PNG),
        (2, 0, 2**40, PNG),
        (2, "c", 1, PNG),
    ]
    path = geopackage(tmp_path / "g.gpkg", rows=rows, matrices=matrices)
    result = cli("rebuild", path, "--sizes", "--workers", "1")
    assert result.returncode == 0, result.stderr
    for shown in ["zoom_level 5", "zoom_level 'z'", "tile_column -3", "tile_row 1099511627776"]:
        assert shown in result.stderr, shown
    assert "tile_column 'c'" in result.stderr


@pytest.mark.parametrize(
    "call",
    [
        "length(printf('%.*c', 2000000000 + n, 'x'))",
        "length(randomblob(900000000))",
        "length(replace(zeroblob(1000000), x'00', zeroblob(1000)))",
    ],
)
def test_a_view_calling_a_costly_function_is_refused_at_once(tmp_path, call):
    """One call of such a function takes seconds inside SQLite, between two steps, where
    neither the step budget nor Ctrl-C acts: a view may call only cheap functions."""
    sql = (
        "WITH RECURSIVE r(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM r WHERE n < 30) "
        f"SELECT {call} AS zoom_level, 0 AS tile_column, 0 AS tile_row, x'00' AS tile_data FROM r"
    )
    path = mbtiles(tmp_path / "costly.mbtiles", tiles_sql=sql)
    started = time.monotonic()
    result = cli("rebuild", path)
    assert time.monotonic() - started < 20
    assert result.returncode == 2, result.stderr
    assert "not authorized to use function" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
