"""A GeoPackage store is updated in place of rewritten by an incremental rebuild: the rows of
changed and gone bundles are deleted, the new ones appended. The result must be the store a
full rebuild writes, row for row, and a GeoPackage GDAL accepts whole: every layer reads, the
old ogrinfo reports no error, SQLite finds the file sound, and the R-tree answers spatial
queries as the rows' polygons do.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyogrio import list_layers
from pyogrio.raw import read

from cachestatus import rebuild
from cachestatus.store import partial, reader
from cachestatus.store.schema import (
    BUNDLE_FILES_LAYER,
    JOBS_LAYER,
    LEVEL_STATUS_LAYER,
    MISSING_AREAS_LAYER,
    TASK_STATUS_LAYER,
)
from tests.conftest import need_program
from tests.status_rows import task_rows
from tests.test_incremental import (
    BASE,
    EXTRA,
    HOUR,
    _apply,
    _bundle,
    _copy,
    _first_rebuild,
    _plans,
    assert_same_store,
    caches,
    first_rebuilds,
    rebuilt_after,
)
from tests.test_old_readers import HOW, OLD_OGRINFO

__all__ = ["caches", "first_rebuilds"]  # the fixtures, shared with the incremental tests


def _polygons(store: Path) -> dict[str, Any]:
    return {
        name: shapely.from_wkb(row["wkb"])
        for name, row in task_rows(store, [], geometry=True).items()
    }


def assert_sound_geopackage(store: Path, full: Path) -> None:
    """``store`` reads whole through GDAL, SQLite finds it sound, and its R-tree holds one
    entry per row, so that a spatial filter finds what the polygons of ``full`` say."""
    for name, _ in list_layers(store):
        read(str(store), layer=name)
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        fids = {fid for (fid,) in db.execute('SELECT fid FROM "TaskStatus"')}
        tree = {fid for (fid,) in db.execute('SELECT id FROM "rtree_TaskStatus_geom"')}
        (count,) = db.execute(
            "SELECT feature_count FROM gpkg_ogr_contents WHERE table_name = 'TaskStatus'"
        ).fetchone()
    assert tree == fids
    assert count == len(fids)
    # The geometry blobs (GeoPackage header, envelope, WKB) byte for byte as a store written
    # whole holds them, and the layer's extent holds every polygon.
    blobs = [_blobs(path) for path in (store, full)]
    assert blobs[0] == blobs[1]
    with sqlite3.connect(store) as db:
        extent = db.execute(
            "SELECT min_x, min_y, max_x, max_y FROM gpkg_contents WHERE table_name = 'TaskStatus'"
        ).fetchone()
    polygons = list(_polygons(store).values())
    if polygons:
        xmin, ymin, xmax, ymax = shapely.bounds(polygons).T
        assert extent[0] <= xmin.min() and extent[1] <= ymin.min()
        assert extent[2] >= xmax.max() and extent[3] >= ymax.max()
    expected = _polygons(full)
    for polygon in expected.values():
        # A box inside one row's polygon: the rows whose polygons meet it, no more.
        xmin, ymin, xmax, ymax = polygon.bounds
        dx, dy = (xmax - xmin) / 4, (ymax - ymin) / 4
        box = (xmin + dx, ymin + dy, xmax - dx, ymax - dy)
        *_, values = read(str(store), layer="TaskStatus", columns=["bundleName"], bbox=box)
        found = set(values[0].tolist())
        want = {n for n, p in expected.items() if p.intersects(shapely.box(*box))}
        assert found == want, box


def _blobs(store: Path) -> dict[str, bytes]:
    """The stored geometry blob of each ``TaskStatus`` row, by bundle name."""
    with sqlite3.connect(store) as db:
        return dict(db.execute('SELECT bundleName, geom FROM "TaskStatus"').fetchall())


def _jobs_of_rows(store: Path) -> dict[str, str]:
    return {name: row["jobID"] for name, row in task_rows(store, ["jobID"]).items()}


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=_plans(BASE), second=_plans(BASE), added=st.sets(st.sampled_from(EXTRA)))
def test_updated_geopackage_is_a_full_rebuilds_and_sound(
    caches: tuple[Path, Path],
    first_rebuilds: dict[str, tuple[Path, Path]],
    first: dict[tuple[int, int, int], str],
    second: dict[tuple[int, int, int], str],
    added: set[tuple[int, int, int]],
) -> None:
    cache, store = _first_rebuild(first_rebuilds["gpkg"], "gpkg")
    for step, plan in enumerate([{**first, **dict.fromkeys(added, "add")}, second], 1):
        before = _jobs_of_rows(store)
        again, full = rebuilt_after(cache, caches[1], store, plan, step)
        assert_sound_geopackage(store, full)
        if again.bundles_reused and again.bundles_read:
            # Updated, not rewritten: a reused row keeps the job that wrote it.
            jobs = _jobs_of_rows(store)
            kept = {n for n, job in jobs.items() if job != again.job_id}
            assert len(kept) >= again.bundles_reused
            assert all(jobs[n] == before[n] for n in kept)


def test_old_ogrinfo_reads_an_updated_geopackage(caches: tuple[Path, Path], tmp_path: Path) -> None:
    ogrinfo = need_program(OLD_OGRINFO, HOW)
    base, other = caches
    cache = _copy(base, tmp_path / "cache")
    store = tmp_path / "Status.gpkg"
    rebuild(cache, store, workers=1)
    plan = {BASE[0]: "rewrite", BASE[1]: "delete", BASE[2]: "truncate", EXTRA[0]: "add"}
    _apply(cache, other, plan, time.time_ns() - HOUR)
    assert not _bundle(cache, BASE[1]).exists()
    again = rebuild(cache, store, workers=1)
    assert again.bundles_read == 3 and again.bundles_reused == len(BASE) - 3
    full = Path(str(rebuild(cache, tmp_path / "Full.gpkg", workers=1, reuse=False).status_path))
    assert_same_store(store, full)
    assert_sound_geopackage(store, full)
    done, whole = (
        subprocess.run(
            [ogrinfo, "-ro", "-al", "-so", str(path)], capture_output=True, text=True, timeout=120
        )
        for path in (store, full)
    )
    assert done.returncode == 0, done.stderr
    # Nothing a store written whole does not get (GDAL 3.6 warns of GeoPackage 1.4 in both).
    assert "ERROR" not in done.stderr, done.stderr
    assert done.stderr.replace(str(store), "") == whole.stderr.replace(str(full), "")
    rows = len(task_rows(full, []))
    assert f"Feature Count: {rows}" in done.stdout
    # The old GDAL's own spatial filter, through the R-tree, finds each row at its centre.
    for name, polygon in _polygons(full).items():
        x, y = polygon.centroid.x, polygon.centroid.y
        spatial = subprocess.run(
            [ogrinfo, "-ro", "-q", "-spat", *map(str, (x, y, x, y)), str(store), "TaskStatus"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert spatial.returncode == 0 and "ERROR" not in spatial.stderr, spatial.stderr
        assert f"bundleName (String) = {name}" in spatial.stdout


@pytest.mark.parametrize("changed", [True, False])
def test_store_lacking_a_field_is_written_whole(
    caches: tuple[Path, Path], tmp_path: Path, changed: bool
) -> None:
    """A previous store without a field TaskStatus has now (as an earlier version wrote it)
    cannot take rows with it: the rebuild still reuses its rows, and writes the store whole;
    with nothing changed too (the answer through SQLite leaves a store by another version to
    the normal path), not carried over as it is."""
    base, other = caches
    cache = _copy(base, tmp_path / "cache")
    store = tmp_path / "Status.gpkg"
    rebuild(cache, store, workers=1)
    with sqlite3.connect(store) as db:
        db.execute('ALTER TABLE "TaskStatus" DROP COLUMN "tilesBlank"')
        db.execute("UPDATE \"Jobs\" SET toolVersion = '0.1.0'")  # the version that wrote it
    if changed:
        _apply(cache, other, {BASE[0]: "rewrite"}, time.time_ns() - HOUR)
    again = _cli_rebuild(cache, store)
    assert (again["bundles_read"], again["bundles_reused"]) == (changed, len(BASE) - changed)
    assert "tilesBlank" in read(str(store), layer="TaskStatus", read_geometry=False)[0]["fields"]
    full = Path(str(rebuild(cache, tmp_path / "Full.gpkg", workers=1, reuse=False).status_path))
    assert_same_store(store, full)
    assert len(set(_jobs_of_rows(store).values())) == 1  # every row written by the last run


def _deletions(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Record how many bundle keys each deletion of the store's rows by key is given, and how
    many TaskStatus ids each deletion by feature ids keeps."""
    seen: dict[str, list[int]] = {"drop_bundles": [], "keep_only": []}
    for name in seen:
        real = getattr(partial, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            if _name == "drop_bundles":
                args = (*args[:2], list(args[2]), *args[3:])
                seen[_name].append(len(args[2]))
            else:
                seen[_name].append(len(args[1]["TaskStatus"]))
            return _real(*args, **kwargs)

        monkeypatch.setattr(partial, name, spy)
    return seen


def test_only_the_changed_bundles_are_deleted(
    caches: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, other = caches
    cache = _copy(base, tmp_path / "cache")
    store = tmp_path / "Status.gpkg"
    rebuild(cache, store, workers=1, max_missing_rows=5)  # MISSING rows too
    _apply(cache, other, {BASE[0]: "rewrite", BASE[1]: "delete"}, time.time_ns() - HOUR)
    seen = _deletions(monkeypatch)
    again = rebuild(cache, store, workers=1, max_missing_rows=5)
    assert (again.bundles_read, again.bundles_reused) == (1, len(BASE) - 2)
    # The keys of the two changed bundles, not those of the rows kept.
    assert seen == {"drop_bundles": [2], "keep_only": []}
    full = Path(
        str(
            rebuild(
                cache, tmp_path / "Full.gpkg", workers=1, reuse=False, max_missing_rows=5
            ).status_path
        )
    )
    assert_same_store(store, full)
    assert_sound_geopackage(store, full)


def _rewritten_and_updated(
    cache: Path,
    other: Path,
    key: tuple[int, int, int],
    monkeypatch: pytest.MonkeyPatch,
    read: int,
    deleted: int,
) -> None:
    """Rewrite the bundle ``key`` of ``cache`` (its first rebuild in ``Status.gpkg`` beside
    it), rebuild: ``read`` bundles are read, the others reused; the rows of ``deleted`` bundle
    keys are deleted, then the rows left not reused by their ids; and the store is the one a
    full rebuild writes, and sound."""
    store = cache.parent / "Status.gpkg"
    _apply(cache, other, {key: "rewrite"}, time.time_ns() - HOUR)
    seen = _deletions(monkeypatch)
    again = rebuild(cache, store, workers=1)
    assert (again.bundles_read, again.bundles_reused) == (read, len(BASE) - read)
    assert seen == {"drop_bundles": [deleted], "keep_only": [len(BASE) - read]}
    full = cache.parent / "Full.gpkg"
    full = Path(str(rebuild(cache, full, workers=1, reuse=False).status_path))
    assert_same_store(store, full)
    assert_sound_geopackage(store, full)


def test_rows_of_no_known_kind_are_deleted_by_the_ids_kept(
    caches: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row the update cannot account for (here: a file's row without a BundleFiles row, as a
    bundle without a stamp leaves) goes too: the store keeps exactly the rows reused."""
    base, other = caches
    cache = _copy(base, tmp_path / "cache")
    store = tmp_path / "Status.gpkg"
    rebuild(cache, store, workers=1)
    with sqlite3.connect(store) as db:
        db.execute(
            "DELETE FROM BundleFiles WHERE levelID = ? AND bundleRow = ? AND bundleCol = ?",
            (BASE[2][0], BASE[2][1] * 128, BASE[2][2] * 128),
        )
    _rewritten_and_updated(cache, other, BASE[0], monkeypatch, read=2, deleted=1)


def _copy_rows(store: Path, table: str, keys: list[tuple[int, int, int]]) -> None:
    """Copy the first row of each bundle ``keys`` in ``table`` of ``store``, as another program
    might (the R-tree entry a TaskStatus copy adds is wrong: the row is to go)."""
    with sqlite3.connect(store) as db:
        db.create_function("ST_IsEmpty", 1, lambda _: 0)
        for name in ("ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY"):
            db.create_function(name, 1, lambda _: 0.0)
        names = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")') if r[1] != "fid"]
        fields = ", ".join(f'"{n}"' for n in names)
        for level, row, col in keys:
            db.execute(
                f'INSERT INTO "{table}" ({fields}) SELECT {fields} FROM "{table}" '
                "WHERE levelID = ? AND bundleRow = ? AND bundleCol = ? ORDER BY fid LIMIT 1",
                (level, row * 128, col * 128),
            )


@pytest.mark.parametrize(
    ("table", "copies", "changed"),
    [("BundleFiles", 1, True), ("BundleFiles", 2, False), ("TaskStatus", 1, False)],
)
def test_a_row_held_twice_is_kept_once(
    caches: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    table: str,
    copies: int,
    changed: bool,
) -> None:
    """A store holding the row of a bundle more than once (another program copied it): the
    bundle is reused by its first rows and keeps them (its key is not among those deleted),
    the others go by their ids; a changed bundle held twice loses both; and a store with a
    row twice is not carried over as it is when nothing changed."""
    base, other = caches
    cache = _copy(base, tmp_path / "cache")
    store = tmp_path / "Status.gpkg"
    rebuild(cache, store, workers=1)
    for _ in range(copies):
        _copy_rows(store, table, BASE[:2])
    if changed:
        _rewritten_and_updated(cache, other, BASE[1], monkeypatch, read=1, deleted=1)
    else:
        seen = _deletions(monkeypatch)
        again = rebuild(cache, store, workers=1)
        assert (again.bundles_read, again.bundles_reused) == (0, len(BASE))
        assert seen == {"drop_bundles": [0], "keep_only": [len(BASE)]}
        full = tmp_path / "Full.gpkg"
        full = Path(str(rebuild(cache, full, workers=1, reuse=False).status_path))
        assert_same_store(store, full)
        assert_sound_geopackage(store, full)
    with sqlite3.connect(store) as db:
        for name in ("BundleFiles", "TaskStatus"):
            keys = db.execute(
                f"SELECT levelID, bundleRow, bundleCol FROM \"{name}\" WHERE status <> 'MISSING'"
                if name == "TaskStatus"
                else f'SELECT levelID, bundleRow, bundleCol FROM "{name}"'
            ).fetchall()
            assert len(keys) == len(set(keys)) == len(BASE), name


def test_a_geopackage_reads_through_sqlite_as_through_gdal(
    caches: tuple[Path, Path], tmp_path: Path
) -> None:
    """The store's reader takes a GeoPackage's fields from SQLite (many times faster than
    GDAL for many rows): every field of every table as GDAL reads it, nulls included."""
    base, _ = caches
    cache = _copy(base, tmp_path / "cache")
    store = tmp_path / "Status.gpkg"
    rebuild(cache, store, workers=1, max_missing_rows=5)  # MISSING rows: null times
    rebuild(cache, store, workers=1, blank=True, reuse=False)  # counted blanks, a 2nd job
    for layer in (
        TASK_STATUS_LAYER,
        LEVEL_STATUS_LAYER,
        JOBS_LAYER,
        MISSING_AREAS_LAYER,
        BUNDLE_FILES_LAYER,
    ):
        through_sqlite, _ = reader._table(store, layer)
        through_gdal, _ = reader._table(store, layer, where="1 = 1")  # a filter: GDAL reads
        assert [a for a, *_ in through_sqlite] == [a for a, *_ in through_gdal]
        for (name, column, ours), (_, _, gdal) in zip(through_sqlite, through_gdal, strict=True):
            assert len(ours) > 0, (layer.name, name)
            assert column.items(ours) == column.items(gdal), (layer.name, name)


#: An incremental rebuild into a GeoPackage, in a process of its own: the modules it loaded.
_LOADED = """
import sys
from cachestatus import rebuild
report = rebuild(sys.argv[1], sys.argv[2], workers=1)
assert report.bundles_read and report.bundles_reused, report
print(" ".join(sorted(sys.modules)))
"""


def test_updated_geopackage_is_read_and_written_without_gdal(
    caches: tuple[Path, Path], tmp_path: Path
) -> None:
    """Its rows are read and written through SQLite: GDAL (pyogrio) is not even loaded, and
    the store is still the one a full rebuild writes."""
    base, other = caches
    cache = _copy(base, tmp_path / "cache")
    store = tmp_path / "Status.gpkg"
    rebuild(cache, store, workers=1)
    _apply(cache, other, {BASE[0]: "rewrite", EXTRA[0]: "add"}, time.time_ns() - HOUR)
    loaded = subprocess.run(
        [sys.executable, "-c", _LOADED, str(cache), str(store)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "cachestatus.store.gpkg_rows" in loaded
    assert not [name for name in loaded if name.split(".")[0] == "pyogrio"]
    # Nor pyproj: the cache's CRS (Web Mercator) is one every PROJ knows, its grid mirrors.
    assert "pyproj" not in loaded
    full = Path(str(rebuild(cache, tmp_path / "Full.gpkg", workers=1, reuse=False).status_path))
    assert_same_store(store, full)
    assert_sound_geopackage(store, full)


#: Triggers other software leaves in a GeoPackage: GDAL 1.x's geometry type check, calling
#: functions plain SQLite lacks, and a user's audit of the jobs.
_FOREIGN_TRIGGERS = [
    """CREATE TRIGGER "fgti_TaskStatus_geom" BEFORE INSERT ON "TaskStatus" FOR EACH ROW
    BEGIN SELECT RAISE(ABORT, 'insert on TaskStatus violates constraint: ST_GeometryType(geom)
    is not assignable from POLYGON') WHERE (SELECT geometry_type_name FROM gpkg_geometry_columns
    WHERE Lower(table_name) = Lower('TaskStatus') AND Lower(column_name) = Lower('geom') AND
    gpkg_IsAssignable(geometry_type_name, ST_GeometryType(NEW.geom)) = 0); END""",
    "CREATE TABLE audit (job TEXT)",
    "CREATE TRIGGER audit_jobs AFTER INSERT ON Jobs BEGIN "
    "INSERT INTO audit VALUES (NEW.jobID); END",
    # On a GeoPackage table the rows written through SQLite update (gpkg_contents' times).
    "CREATE TRIGGER audit_contents AFTER UPDATE ON gpkg_contents BEGIN "
    "INSERT INTO audit VALUES (NEW.table_name); END",
]


def _triggers(store: Path) -> set[str]:
    with sqlite3.connect(store) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}


@pytest.mark.parametrize("changed", [False, True])
def test_a_store_with_triggers_gdal_did_not_write_is_written_whole(
    caches: tuple[Path, Path], tmp_path: Path, changed: bool
) -> None:
    """Rows written through SQLite would fire triggers other software put in the store (and
    fail on functions SQLite lacks): the rebuild reuses the rows and writes the store whole,
    through GDAL, whether a bundle changed or none did (the run answered through SQLite
    leaves it to the normal path)."""
    base, other = caches
    cache = _copy(base, tmp_path / "cache")
    store = tmp_path / "Status.gpkg"
    rebuild(cache, store, workers=1)
    assert partial.writable(store)
    gdal_triggers = _triggers(store)
    with sqlite3.connect(store) as db:
        for statement in _FOREIGN_TRIGGERS:
            db.execute(statement)
    assert partial.foreign_triggers(store) == [
        "fgti_TaskStatus_geom",
        "audit_jobs",
        "audit_contents",
    ]
    assert not partial.writable(store)
    if changed:
        _apply(cache, other, {BASE[0]: "rewrite"}, time.time_ns() - HOUR)
    totals = _cli_rebuild(cache, store)
    assert (totals["bundles_read"], totals["bundles_reused"]) == (int(changed), len(BASE) - changed)
    assert _triggers(store) == gdal_triggers  # a store GDAL wrote whole
    assert partial.writable(store)
    full = Path(str(rebuild(cache, tmp_path / "Full.gpkg", workers=1, reuse=False).status_path))
    assert_same_store(store, full)
    assert_sound_geopackage(store, full)
    # Written whole, it is updated in place by the next rebuild again.
    _apply(cache, other, {BASE[3]: "rewrite"}, time.time_ns() - HOUR)
    again = rebuild(cache, store, workers=1)
    assert again.bundles_read == 1
    assert_same_store(store, Path(str(rebuild(cache, full, workers=1, reuse=False).status_path)))


def _as_earlier_version(store: Path) -> None:
    """Declare ``MissingAreas`` as earlier versions did: a ``Polygon`` layer."""
    with sqlite3.connect(store) as db:
        db.execute(
            "UPDATE gpkg_geometry_columns SET geometry_type_name = 'POLYGON' "
            "WHERE table_name = 'MissingAreas'"
        )
    assert _geometry_types(store, "MissingAreas")[0] == "Polygon"


def _cli_rebuild(cache: Path, store: Path) -> dict[str, Any]:
    """``cachestatus rebuild CACHE --json --status STORE`` (which may be answered through
    SQLite); its totals."""
    command = ["rebuild", str(cache), "--json", "--status", str(store)]
    done = subprocess.run(
        [sys.executable, "-m", "cachestatus.cli", *command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout)["totals"])


def _geometry_types(store: Path, layer: str) -> tuple[str, set[str]]:
    """The geometry type GDAL says ``layer`` declares, and those of its rows' geometries."""
    declared = dict(list_layers(store).tolist())[layer]
    _, _, wkb, _ = read(str(store), layer=layer)
    return declared, {shapely.from_wkb(g).geom_type for g in wkb}


# The earlier store is made by changing the declared type alone; GDAL notes the column's own.
@pytest.mark.filterwarnings("ignore:geometry column type for layer:RuntimeWarning")
def test_missing_areas_are_multipolygons_in_a_multipolygon_layer(
    caches: tuple[Path, Path], tmp_path: Path
) -> None:
    """A GeoPackage reader may refuse a geometry whose type is not its layer's: each level's
    missing area, one polygon or several, is a multipolygon in a layer declared so; in a
    store written whole, one updated in place, and one an earlier version wrote (declaring
    ``Polygon``), which is written whole once."""
    base, other = caches
    cache = _copy(base, tmp_path / "cache")
    store = tmp_path / "Status.gpkg"
    rebuild(cache, store, workers=1)
    assert len(read(str(store), layer="MissingAreas")[2]) > 1
    assert _geometry_types(store, "MissingAreas") == ("MultiPolygon", {"MultiPolygon"})
    _apply(cache, other, {BASE[0]: "rewrite"}, time.time_ns() - HOUR)
    again = rebuild(cache, store, workers=1)
    assert again.bundles_read == 1
    assert _geometry_types(store, "MissingAreas") == ("MultiPolygon", {"MultiPolygon"})
    # Nothing changed, a store declaring MissingAreas as an earlier version did: the answer
    # through SQLite leaves it to the normal path, which writes it whole.
    _as_earlier_version(store)
    done = _cli_rebuild(cache, store)
    assert (done["bundles_read"], done["bundles_reused"]) == (0, len(BASE))
    assert _geometry_types(store, "MissingAreas") == ("MultiPolygon", {"MultiPolygon"})
    _as_earlier_version(store)
    _apply(cache, other, {BASE[3]: "rewrite"}, time.time_ns() - HOUR)
    again = rebuild(cache, store, workers=1)
    assert (again.bundles_read, again.bundles_reused) == (1, len(BASE) - 1)
    assert _geometry_types(store, "MissingAreas") == ("MultiPolygon", {"MultiPolygon"})
    full = Path(str(rebuild(cache, tmp_path / "Full.gpkg", workers=1, reuse=False).status_path))
    assert_same_store(store, full)
    assert_sound_geopackage(store, full)
