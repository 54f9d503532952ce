"""Never lose what the user has: what cachestatus refuses to write or delete, and the store lock.

Every case runs the command line in a subprocess, as a user would, and checks the exit code, the
one-line message and that what was there is byte for byte as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyogrio import list_layers
from pyogrio.raw import read, write

from cachestatus import operations
from cachestatus.store import lock as store_lock
from cachestatus.store.lock import LockOwner, lock_path
from tests.builders import build
from tests.helpers import synthetic_cache, tree_snapshot

SIDE = 34  # 1,156 bundles: a rebuild takes about a second


def _cli(*args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cachestatus.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def _snapshot(path: Path) -> object:
    if path.is_dir():
        return tree_snapshot(path)
    return path.read_bytes(), path.stat().st_mtime_ns


def _user_gdb(path: Path) -> Path:
    """A user's own geodatabase (or GeoPackage) with a feature class of parcels."""
    geometry = np.array([shapely.to_wkb(shapely.box(0, 0, 10, 10))], dtype=object)
    write(
        str(path),
        geometry,
        [np.array(["lot 1"], dtype=object)],
        ["owner"],
        layer="Parcels",
        driver="OpenFileGDB" if path.suffix == ".gdb" else "GPKG",
        geometry_type="Polygon",
        crs="EPSG:3857",
    )
    return path


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> dict[str, Path]:
    """A GeoPackage cache, an XYZ folder cache named like a geodatabase, a Compact V2 cache."""
    root = tmp_path_factory.mktemp("caches")
    tiles = {(1, 0, 0): b"\x89PNG\r\n\x1a\n" + b"a" * 50, (1, 1, 1): b"\x89PNG\r\n\x1a\n" + b"b"}
    gpkg, _ = build("geopackage", root, tiles)
    xyz, _ = build("xyz", root, tiles)
    v2, _ = build("compact-v2", root, tiles)
    named_gdb = xyz.rename(root / "tiles.gdb")
    return {"gpkg": gpkg, "xyz": named_gdb, "v2": v2}


@pytest.fixture
def work(caches, tmp_path) -> dict[str, Path]:
    """Copies of the caches, so that a failure to refuse cannot spoil other tests."""
    import shutil

    out = {}
    for name, path in caches.items():
        dest = tmp_path / path.name
        if path.is_dir():
            shutil.copytree(path, dest, symlinks=True)
        else:
            shutil.copy2(path, dest)
        out[name] = dest
    return out


# -- the cache is never the output ------------------------------------------------------------


def test_a_geopackage_cache_is_never_replaced_by_its_status(work):
    cache = work["gpkg"]
    before = _snapshot(cache)
    _refused(_cli("rebuild", cache, "--status", cache, "--format", "gpkg"), "is the cache itself")
    _refused(_cli("delete", cache, "--status", cache), "is the cache itself")
    assert _snapshot(cache) == before


def test_a_folder_cache_named_like_a_geodatabase_is_never_replaced(work):
    cache = work["xyz"]
    before = _snapshot(cache)
    _refused(_cli("rebuild", cache, "--scheme", "xyz", "--status", cache), "is the cache itself")
    _refused(_cli("delete", cache, "--scheme", "xyz", "--status", cache), "is the cache itself")
    assert _snapshot(cache) == before


def test_a_status_path_holding_the_cache_or_inside_it_is_refused(work, tmp_path):
    cache = work["v2"]
    # A folder named like a store that holds the cache.
    holder = tmp_path / "holder.gdb"
    holder.mkdir()
    moved = holder / "cache"
    cache.rename(moved)
    before = _snapshot(holder)
    _refused(_cli("rebuild", moved, "--status", holder), "holds the cache")
    _refused(_cli("delete", moved, "--status", holder), "holds the cache")
    _refused(_cli("rebuild", moved, "--status", moved / "_alllayers" / "x.gdb"), "inside the cache")
    _refused(_cli("report", moved, "--out", moved / "_alllayers", "--levels", "1"), "inside")
    assert _snapshot(holder) == before
    # The default place beside conf.xml stays where ArcGIS keeps it.
    assert _cli("rebuild", moved, "--status", moved / "Status.gdb").returncode == 0


def test_missing_never_writes_over_the_cache_even_with_overwrite(work, tmp_path):
    cache = work["gpkg"]
    before = _snapshot(cache)
    _refused(_cli("missing", cache, "--out", cache, "--overwrite"), "is the cache itself")
    _refused(
        _cli("missing", cache, "--out", tmp_path / "m.geojson", "--tiles", cache, "--overwrite"),
        "is the cache itself",
    )
    folder = work["v2"]
    snap = _snapshot(folder)
    _refused(_cli("missing", folder, "--out", folder / "m.geojson"), "inside the cache")
    assert _snapshot(cache) == before and _snapshot(folder) == snap
    assert not (tmp_path / "m.geojson").exists()


# -- a user's own data is never replaced or deleted --------------------------------------------


@pytest.mark.parametrize("suffix", [".gdb", ".gpkg"])
def test_a_users_own_geodatabase_is_never_replaced_nor_deleted(work, tmp_path, suffix):
    mine = _user_gdb(tmp_path / f"mywork{suffix}")
    before = _snapshot(mine)
    fmt = suffix.lstrip(".")
    _refused(
        _cli("rebuild", work["v2"], "--status", mine, "--format", fmt), "did not write", "Parcels"
    )
    _refused(_cli("delete", work["v2"], "--status", mine), "did not write")
    out = tmp_path / "report"
    out.mkdir()
    _user_gdb(out / f"Status{suffix}")
    _refused(
        _cli("report", work["v2"], "--out", out, "--format", fmt, "--overwrite"), "did not write"
    )
    assert _snapshot(mine) == before
    assert [name for name, _ in list_layers(str(out / f"Status{suffix}"))] == ["Parcels"]


def test_a_store_that_is_not_a_status_store_is_left_alone(work, tmp_path):
    """An empty folder named .gdb, a text file named .gpkg: not provably ours."""
    empty = tmp_path / "empty.gdb"
    empty.mkdir()
    (empty / "notes.txt").write_text("mine")
    text = tmp_path / "text.gpkg"
    text.write_text("not a database")
    for path in (empty, text):
        before = _snapshot(path)
        _refused(_cli("rebuild", work["v2"], "--status", path), "left alone")
        _refused(_cli("delete", work["v2"], "--status", path), "left alone")
        assert _snapshot(path) == before


def test_missing_overwrites_only_its_own_outputs(work, tmp_path):
    cache = work["v2"]
    theirs = tmp_path / "theirs.geojson"
    theirs.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"road": "A1"},
                        "geometry": {"type": "Point", "coordinates": [1, 2]},
                    }
                ],
            }
        )
    )
    notes = tmp_path / "notes.txt"
    notes.write_text("call the vendor on monday\n")
    before = (_snapshot(theirs), _snapshot(notes))
    _refused(_cli("missing", cache, "--out", theirs, "--overwrite"), "other data")
    _refused(
        _cli("missing", cache, "--out", tmp_path / "m.geojson", "--tiles", notes, "--overwrite"),
        "not a tile list",
    )
    assert (_snapshot(theirs), _snapshot(notes)) == before
    # Its own outputs are replaced with --overwrite, and only with it.
    ours, tiles = tmp_path / "ours.geojson", tmp_path / "tiles.txt"
    levels = ("--levels", "0-3")
    assert _cli("missing", cache, *levels, "--out", ours, "--tiles", tiles).returncode == 0
    assert tiles.read_text()  # the cache misses tiles: the list is not empty
    _refused(_cli("missing", cache, *levels, "--out", ours), "exists")
    again = _cli("missing", cache, *levels, "--out", ours, "--tiles", tiles, "--overwrite")
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [
            *(p.name for p in work.values()),
            "theirs.geojson",
            "notes.txt",
            "ours.geojson",
            "tiles.txt",
        ]
    )


def test_an_arcgis_status_store_at_the_default_place_is_replaced(work):
    """ArcGIS's own Status.gdb (a TaskStatus feature class) beside conf.xml is the status
    REBUILD_CACHE_STATUS replaces; elsewhere, it is not provably a status store."""
    cache = work["v2"]
    geometry = np.array([shapely.to_wkb(shapely.box(0, 0, 1, 1))], dtype=object)
    for where in (cache / "Status.gdb", cache.parent / "elsewhere.gdb"):
        write(
            str(where),
            geometry,
            [np.array(["L01/R0000C0000"], dtype=object)],
            ["BundleName"],
            layer="TaskStatus",
            driver="OpenFileGDB",
            geometry_type="Polygon",
            crs="EPSG:3857",
        )
    _refused(
        _cli("rebuild", cache, "--status", cache.parent / "elsewhere.gdb"), "not a cachestatus"
    )
    done = _cli("rebuild", cache)
    assert done.returncode == 0, done.stderr
    assert {name for name, _ in list_layers(str(cache / "Status.gdb"))} >= {"Jobs", "LevelStatus"}


def test_the_python_api_refuses_the_same(work, tmp_path):
    from cachestatus.errors import NotOurs, UsageError

    mine = _user_gdb(tmp_path / "mine.gdb")
    with pytest.raises(NotOurs, match="did not write"):
        operations.rebuild(work["v2"], mine)
    with pytest.raises(NotOurs, match="is the cache itself"):
        operations.missing(work["gpkg"], work["gpkg"], overwrite=True)
    with pytest.raises(UsageError):
        operations.delete(work["v2"], mine)
    assert [name for name, _ in list_layers(str(mine))] == ["Parcels"]


# -- one writer per store -------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_cache(tmp_path_factory) -> Path:
    return synthetic_cache(tmp_path_factory.mktemp("big") / "cache", SIDE, level=12)


def _jobs(status: Path) -> list[str]:
    _, _, _, values = read(str(status), layer="Jobs", read_geometry=False, columns=["jobID"])
    return values[0].tolist()


def _start(*args: object, **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*kwargs.pop("prefix", []), sys.executable, "-m", "cachestatus.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _names_its_owner(lock: Path) -> bool:
    try:
        return LockOwner.parse(lock.read_text()) is not None
    except OSError:
        return False


def _hold_once_locked(run: subprocess.Popen[str], status: Path) -> None:
    """Stop ``run`` (and its workers) as soon as it holds the lock of ``status`` and the lock
    names it (it is created, then written): it stays in the middle of its work, lock held,
    until SIGCONT."""
    deadline = time.monotonic() + 60
    while not _names_its_owner(lock_path(status)):
        assert run.poll() is None, run.stderr.read() if run.stderr else ""
        assert time.monotonic() < deadline, "the rebuild never took the lock"
        time.sleep(0.001)
    os.killpg(run.pid, signal.SIGSTOP)


def test_overlapping_rebuilds_exclude_each_other_and_lose_no_job(big_cache, tmp_path):
    status = tmp_path / "Status.gdb"
    assert _cli("rebuild", big_cache, "--status", status).returncode == 0
    first = _start("rebuild", big_cache, "--status", status, "--workers", "2")
    try:
        _hold_once_locked(first, status)
        second = _cli("rebuild", big_cache, "--status", status)
        _refused(second, "is being written by another run", f"pid {first.pid}")
        _refused(_cli("delete", big_cache, "--status", status), "is being written")
        os.killpg(first.pid, signal.SIGCONT)
        assert first.wait(120) == 0, first.stderr.read() if first.stderr else ""
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert len(_jobs(status)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Status.gdb"]  # no lock, no leftover


def _can_unshare_pid() -> bool:
    try:
        probe = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


@pytest.mark.skipif(not _can_unshare_pid(), reason="needs unshare --pid (root) for a container")
def test_a_run_in_another_pid_namespace_does_not_take_the_store(big_cache, tmp_path):
    """A run in a container sees no process of the first run: the first run's PID looks dead
    there. It must still be refused, and leave the first run's temporary store alone."""
    status = tmp_path / "Status.gdb"
    first = _start("rebuild", big_cache, "--status", status, "--workers", "2")
    try:
        _hold_once_locked(first, status)
        other = _start(
            "rebuild",
            big_cache,
            "--status",
            status,
            prefix=["unshare", "--pid", "--fork", "--mount-proc"],
        )
        _, err = other.communicate(timeout=120)
        assert other.returncode == 2 and "is being written by another run" in err, err
        os.killpg(first.pid, signal.SIGCONT)
        assert first.wait(120) == 0
    finally:
        for proc in (first,):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    done = _cli("summary", big_cache, "--status", status, "--json")
    level = next(lv for lv in json.loads(done.stdout)["levels"] if lv["level"] == 12)
    assert level["bundles"] == SIDE * SIDE  # the whole TaskStatus, not a truncated one


def _foreign_lock(target: Path, **changes) -> Path:
    owner = LockOwner.me("rebuild")
    fields = {**owner.__dict__, **changes}
    path = lock_path(target)
    path.write_text(json.dumps(fields))
    return path


def test_a_lock_of_another_host_is_respected_until_stale(work, monkeypatch):
    cache = work["v2"]
    target = cache / "Status.gdb"
    lock = _foreign_lock(target, host="web2", boot_id="another-machine", pid=77)
    leftover = cache / ".Status.77-abcdef.tmp.gdb"
    leftover.mkdir()
    _refused(_cli("rebuild", cache), "pid 77", "on host web2", str(lock))
    assert leftover.exists() and lock.exists()
    # Not refreshed for longer than STALE_AFTER: abandoned.
    old = time.time() - store_lock.STALE_AFTER - 60
    os.utime(lock, (old, old))
    done = _cli("rebuild", cache)
    assert done.returncode == 0, done.stderr
    assert not leftover.exists() and not lock.exists()


@pytest.mark.parametrize(
    "stop", [KeyboardInterrupt(), OSError(28, "No space left on device")], ids=["ctrl-c", "full"]
)
def test_a_run_stopped_while_it_names_itself_in_the_lock_leaves_no_lock(
    tmp_path, monkeypatch, stop
):
    """Ctrl-C (or SIGTERM, which the command line turns into the same) between creating the
    lock file and writing its owner: the run's own lock goes with it, and the next run takes
    the store at once."""
    target = tmp_path / "Status.gdb"
    lock = store_lock.StoreLock(target, "rebuild")

    def stopped(fd: int, data: bytes) -> int:
        raise stop

    monkeypatch.setattr(store_lock.os, "write", stopped)
    with pytest.raises(type(stop)):
        lock.acquire()
    monkeypatch.undo()
    assert not lock_path(target).exists()
    with store_lock.StoreLock(target, "rebuild") as again:
        assert again.holds()
    assert not lock_path(target).exists()


def test_ctrl_c_held_back_while_the_lock_is_made_takes_the_lock_with_it(tmp_path, monkeypatch):
    """SIGINT waits while the lock file is made and named, then acts: the run's lock, complete
    by then, goes with it."""
    target = tmp_path / "Status.gdb"

    @contextlib.contextmanager
    def deferred():
        yield
        raise KeyboardInterrupt  # the Ctrl-C held back, delivered as the block ends

    monkeypatch.setattr(store_lock, "signals_deferred", deferred)
    with pytest.raises(KeyboardInterrupt):
        store_lock.StoreLock(target, "rebuild").acquire()
    assert not lock_path(target).exists()


def test_a_lock_of_a_process_that_ended_here_is_taken_over(work):
    cache = work["v2"]
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    pid = int(dead.stdout)
    lock = _foreign_lock(cache / "Status.gdb", pid=pid, process_start="1")
    done = _cli("rebuild", cache)
    assert done.returncode == 0, done.stderr
    assert not lock.exists()


def test_a_reused_pid_does_not_keep_a_lock(work):
    """The lock names this very process's PID but another start time: a reused PID."""
    cache = work["v2"]
    lock = _foreign_lock(cache / "Status.gdb", pid=os.getpid(), process_start="1")
    operations.rebuild(cache, workers=1)
    assert not lock.exists()


def test_a_lock_whose_run_was_taken_over_is_not_swapped_in(work, monkeypatch):
    """A run suspended past STALE_AFTER whose lock another run took: it must not swap its
    store in over the other's."""
    from cachestatus.errors import StatusWriteError
    from cachestatus.store.lock import StoreLock

    cache = work["v2"]
    original = StoreLock.keep_fresh

    def stolen(self):
        original(self)
        self.path.write_text(json.dumps({**LockOwner.me("rebuild").__dict__}))

    monkeypatch.setattr(StoreLock, "keep_fresh", stolen)
    with pytest.raises(StatusWriteError, match="took over the lock"):
        operations.rebuild(cache, workers=1)
    assert not (cache / "Status.gdb").exists()
    assert not [p for p in cache.iterdir() if p.name.startswith(".Status.") and "tmp" in p.name]


# -- read-only places and full disks ------------------------------------------------------------


def _can_mount() -> bool:
    try:
        probe = subprocess.run(
            ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs unshare -m (root) to mount")
CLI = f"{shlex.quote(sys.executable)} -m cachestatus.cli"


def _in_namespace(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300
    )


@needs_mount
def test_a_read_only_cache_without_status_is_told_before_the_scan(big_cache, tmp_path):
    home = big_cache.parent
    script = (
        f"mount --bind {home} {home} && mount -o remount,ro,bind {home} {home} && "
        f"{CLI} rebuild {big_cache} --progress"
    )
    done = _in_namespace(script)
    assert done.returncode == 2, done.stderr
    assert "cannot be written there" in done.stderr and "--status" in done.stderr
    assert "Scanning" not in done.stderr  # told before the scan began
    assert "Traceback" not in done.stderr


@needs_mount
def test_a_full_disk_fails_cleanly_and_keeps_the_previous_status(big_cache, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    status = disk / "Status.gdb"
    script = (
        f"mount -t tmpfs -o size=6m tmpfs {disk} && "
        f"{CLI} rebuild {big_cache} --status {status} --json > {tmp_path}/first.json && "
        # Fill what is left, but for a little: the next store cannot be written whole.
        f"(dd if=/dev/zero of={disk}/filler bs=64k 2>/dev/null; "
        f"truncate -s -128k {disk}/filler); "
        f"{CLI} rebuild {big_cache} --status {status}; echo second=$?; "
        f"rm {disk}/filler; ls -A {disk}; "
        f"{CLI} summary {big_cache} --status {status} --json > {tmp_path}/after.json"
    )
    done = _in_namespace(script)
    assert "second=1" in done.stdout, done.stderr
    assert "No space left on device" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout.split("second=1")[1].split() == ["Status.gdb"]  # no temp, no lock
    first = json.loads((tmp_path / "first.json").read_text())
    after = json.loads((tmp_path / "after.json").read_text())
    assert after["job_id"] == first["job_id"] and after["levels"] == first["levels"]


@pytest.mark.parametrize("text", ["", "[1, 2]", '{"pid": "x"}', "not json", '{"token": 5}'])
def test_a_lock_file_naming_no_owner_is_respected_until_it_is_old(work, text):
    """A lock file cut short or written by something else: a run may be writing its name in
    this very moment, so it is respected for a while, then taken over."""
    cache = work["v2"]
    lock = lock_path(cache / "Status.gdb")
    lock.write_text(text)
    _refused(_cli("rebuild", cache), "is being written by another run")
    old = time.time() - 4 * store_lock.REFRESH_EVERY - 5
    os.utime(lock, (old, old))
    done = _cli("rebuild", cache)
    assert done.returncode == 0, done.stderr
    assert not lock.exists()


def test_folders_linked_into_the_cache_are_the_cache_too(work, tmp_path):
    """The scan follows a linked _alllayers (a cache's levels kept on another disk): nothing is
    written there either."""
    cache = work["v2"]
    elsewhere = tmp_path / "disk2"
    elsewhere.mkdir()
    (cache / "_alllayers").rename(elsewhere / "tiles")
    (cache / "_alllayers").symlink_to(elsewhere / "tiles")
    before = _snapshot(elsewhere)
    level = next((elsewhere / "tiles").iterdir())
    _refused(_cli("rebuild", cache, "--status", level / "s.gdb"), "inside the cache")
    _refused(_cli("report", cache, "--out", level, "--levels", "1"), "inside the cache")
    _refused(_cli("missing", cache, "--levels", "0-1", "--out", level / "m.geojson"), "inside")
    assert _snapshot(elsewhere) == before


def test_the_files_of_someone_elses_shapefile_are_left_alone(work, tmp_path):
    folder = tmp_path / "shp"
    folder.mkdir()
    for ext in (".dbf", ".shx", ".prj"):
        (folder / f"user{ext}").write_bytes(b"theirs")
    before = _snapshot(folder)
    _refused(_cli("missing", work["v2"], "--levels", "0-1", "--out", folder / "user.shp"), "user")
    assert _snapshot(folder) == before


def test_a_store_written_for_another_cache_of_the_same_name_is_left_alone(work, tmp_path):
    """t.mbtiles and t.gpkg share the default name t.Status.gdb: the second is refused."""
    import shutil

    gpkg = work["gpkg"]
    mbtiles = shutil.copy(
        Path(__file__).parent / "data" / "realworld" / "mbtiles" / "02.mbtile",
        gpkg.with_suffix(".mbtiles"),
    )
    assert _cli("rebuild", gpkg).returncode == 0
    store = gpkg.with_name(f"{gpkg.stem}.Status.gdb")
    before = _snapshot(store)
    _refused(_cli("rebuild", mbtiles), "holds the status of another cache", str(gpkg))
    _refused(_cli("delete", mbtiles), "holds the status of another cache")
    assert _snapshot(store) == before
    # A cache moved since: its old status is this one's to replace.
    moved = gpkg.rename(gpkg.with_name("moved.gpkg"))
    assert _cli("rebuild", mbtiles).returncode == 0
    del moved


def test_a_task_status_layer_beside_a_file_cache_is_not_arcgis(work):
    """ArcGIS writes Status.gdb beside conf.xml only: beside a GeoPackage, a geodatabase with a
    TaskStatus layer is a user's."""
    cache = work["gpkg"]
    store = cache.with_name(f"{cache.stem}.Status.gdb")
    geometry = np.array([shapely.to_wkb(shapely.box(0, 0, 1, 1))], dtype=object)
    write(
        str(store),
        geometry,
        [np.array(["x"], dtype=object)],
        ["owner"],
        layer="TaskStatus",
        driver="OpenFileGDB",
        geometry_type="Polygon",
        crs="EPSG:3857",
    )
    before = _snapshot(store)
    _refused(_cli("rebuild", cache), "not a cachestatus status store")
    _refused(_cli("delete", cache), "not a cachestatus status store")
    assert _snapshot(store) == before


def test_an_output_folder_that_does_not_exist_is_told_before_the_scan(work, tmp_path):
    _refused(_cli("missing", work["v2"], "--out", tmp_path / "nodir" / "m.geojson"), "nodir")
    _refused(
        _cli(
            "missing", work["v2"], "--out", tmp_path / "m.geojson", "--tiles", tmp_path / "no" / "t"
        ),
        "does not exist",
    )


def test_a_shapefile_name_with_glob_characters_is_written(work, tmp_path):
    out = tmp_path / "a[1].shp"
    done = _cli("missing", work["v2"], "--levels", "0-1", "--out", out)
    assert done.returncode == 0, done.stderr
    assert out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
