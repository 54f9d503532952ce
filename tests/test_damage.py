"""The damaged-cache matrix: each kind of damage, in Compact V2 and V1 and the SQLite formats.

One healthy cache per format is written by MapProxy and rebuilt once; each case copies it,
damages one bundle and rebuilds. The damaged bundle must be a ``CORRUPT`` row (``IN_PROGRESS``
for a ``.lock``) with its reason, listed under problems; every other row must equal the healthy
rebuild's, field by field: the scan went on and counted the rest exactly.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from cachestatus import operations
from tests.builders import WORLD, build, write_geopackage, write_mbtiles
from tests.helpers import mapproxy_v2_cache, tree_snapshot, with_tile_pages_overwritten
from tests.status_rows import task_rows

FIELDS = (
    "status",
    "tilesExpected",
    "tilesPresent",
    "tilesStray",
    "tileBytes",
    "fileBytes",
    "deadBytes",
)
TARGET = "L09/R0000C0000"


@pytest.fixture(scope="module")
def tiles() -> dict[tuple[int, int, int], bytes]:
    rng = random.Random(17)
    out = {}
    for _ in range(300):  # level 9, rows and columns 0-383: nine bundles
        out[(9, rng.randrange(384), rng.randrange(384))] = rng.randbytes(rng.randrange(200, 3000))
    out[(9, 5, 5)] = rng.randbytes(500)  # the target bundle holds tiles
    return out


@pytest.fixture(scope="module")
def healthy(tiles, tmp_path_factory) -> dict[str, tuple[Path, dict[str, dict]]]:
    root = tmp_path_factory.mktemp("healthy")
    caches = {
        "compact-v2": mapproxy_v2_cache(root / "v2", tiles, 12, WORLD),
        "compact-v1": mapproxy_v2_cache(root / "v1", tiles, 12, WORLD, version=1),
        "mbtiles": write_mbtiles(root / "t.mbtiles", tiles),
        "geopackage": write_geopackage(root / "t.gpkg", tiles),
    }
    out = {}
    for name, cache in caches.items():
        report = operations.rebuild(cache, root / f"{name}.gdb", workers=1, sizes=True)
        assert not report.problems
        out[name] = (cache, task_rows(report.status_path))
    return out


def _v2_truncated_index(bundle: Path) -> None:
    bundle.write_bytes(bundle.read_bytes()[:1000])


def _v2_bad_header(bundle: Path) -> None:
    data = bytearray(bundle.read_bytes())
    data[0:4] = struct.pack("<I", 2)  # version 2: not a V2 bundle
    bundle.write_bytes(bytes(data))


def _v2_offset_past_end(bundle: Path) -> None:
    data = bytearray(bundle.read_bytes())
    slot = 64 + 8 * (128 * 5 + 5)  # tile R5/C5, which holds a tile
    entry = int.from_bytes(data[slot : slot + 8], "little")
    data[slot : slot + 8] = ((entry >> 40) << 40 | len(data) + 10).to_bytes(8, "little")
    bundle.write_bytes(bytes(data))


def _v2_prefix(bundle: Path) -> None:
    data = bytearray(bundle.read_bytes())
    slot = 64 + 8 * (128 * 5 + 5)
    entry = int.from_bytes(data[slot : slot + 8], "little")
    offset, size = entry & (2**40 - 1), entry >> 40
    data[offset - 4 : offset] = struct.pack("<I", size + 1)
    bundle.write_bytes(bytes(data))


def _v1_truncated_index(bundle: Path) -> None:
    index = bundle.with_suffix(".bundlx")
    index.write_bytes(index.read_bytes()[:1000])


def _v1_no_index(bundle: Path) -> None:
    bundle.with_suffix(".bundlx").unlink()


def _v1_fifo_index(bundle: Path) -> None:
    index = bundle.with_suffix(".bundlx")
    index.unlink()
    os.mkfifo(index)


def _v1_offset_past_end(bundle: Path) -> None:
    index = bundle.with_suffix(".bundlx")
    data = bytearray(index.read_bytes())
    at = 16 + 5 * (128 * 5 + 5)  # column-major: column 5, row 5
    data[at : at + 5] = (bundle.stat().st_size + 10).to_bytes(5, "little")
    index.write_bytes(bytes(data))


def _zero_length(bundle: Path) -> None:
    bundle.write_bytes(b"")


def _directory(bundle: Path) -> None:
    bundle.unlink()
    bundle.mkdir()


def _fifo(bundle: Path) -> None:
    bundle.unlink()
    os.mkfifo(bundle)


def _dangling_link(bundle: Path) -> None:
    bundle.unlink()
    bundle.symlink_to(bundle.with_name("gone.bundle"))


def _unreadable(bundle: Path) -> None:
    bundle.chmod(0)


def _lock(bundle: Path) -> None:
    bundle.with_suffix(".lock").write_bytes(b"")


Damage = Callable[[Path], None]
CASES: list[tuple[str, str, Damage, str, str]] = [
    ("compact-v2", "truncated index", _v2_truncated_index, "CORRUPT", "truncated"),
    ("compact-v2", "bad header word", _v2_bad_header, "CORRUPT", "bad header: version"),
    ("compact-v2", "offset past the end", _v2_offset_past_end, "CORRUPT", "runs past the end"),
    ("compact-v2", "size prefix disagrees", _v2_prefix, "CORRUPT", "size prefix"),
    ("compact-v2", "zero-length file", _zero_length, "CORRUPT", "truncated: 0 bytes"),
    ("compact-v2", "directory", _directory, "CORRUPT", "not a file: a directory"),
    ("compact-v2", "FIFO", _fifo, "CORRUPT", "not a file: a special file"),
    ("compact-v2", "dangling link", _dangling_link, "CORRUPT", "cannot read: No such file"),
    ("compact-v2", "unreadable", _unreadable, "CORRUPT", "cannot read: Permission denied"),
    ("compact-v2", ".lock", _lock, "IN_PROGRESS", "a caching job holds a .lock"),
    ("compact-v1", "truncated .bundlx", _v1_truncated_index, "CORRUPT", "the .bundlx is 1,000"),
    ("compact-v1", "no .bundlx", _v1_no_index, "CORRUPT", "no .bundlx index beside it"),
    ("compact-v1", "FIFO .bundlx", _v1_fifo_index, "CORRUPT", "not a file: a special file"),
    ("compact-v1", "offset past the end", _v1_offset_past_end, "CORRUPT", "past the end"),
    ("compact-v1", "zero-length file", _zero_length, "CORRUPT", "truncated: 0 bytes"),
    ("compact-v1", "directory", _directory, "CORRUPT", "not a file: a directory"),
    ("compact-v1", "FIFO", _fifo, "CORRUPT", "not a file: a special file"),
    ("compact-v1", "dangling link", _dangling_link, "CORRUPT", "cannot read: No such file"),
    ("compact-v1", ".lock", _lock, "IN_PROGRESS", "a caching job holds a .lock"),
]


@pytest.mark.parametrize(
    ("fmt", "damage", "apply", "state", "reason"),
    CASES,
    ids=[f"{fmt}: {damage}" for fmt, damage, *_ in CASES],
)
def test_one_damaged_bundle(healthy, tmp_path, fmt, damage, apply, state, reason):
    if damage == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    source, baseline = healthy[fmt]
    cache = tmp_path / "cache"
    shutil.copytree(source, cache, symlinks=True)
    apply(cache / "_alllayers" / "L09" / "R0000C0000.bundle")
    report = operations.rebuild(
        cache, tmp_path / "s.gdb", workers=1, blank=damage == "size prefix disagrees"
    )
    rows = task_rows(report.status_path)
    assert rows[TARGET]["status"] == state
    assert reason in rows[TARGET]["detail"]
    corrupt = [p.bundle for p in report.problems]
    assert corrupt == ([TARGET] if state == "CORRUPT" else [])
    if state == "IN_PROGRESS":  # a bundle being written is still counted
        assert rows[TARGET]["tilesPresent"] == baseline[TARGET]["tilesPresent"] > 0
    for name, row in baseline.items():
        if name != TARGET:
            assert {f: rows[name][f] for f in FIELDS} == {f: row[f] for f in FIELDS}, name
    assert set(rows) == set(baseline)


@pytest.mark.parametrize("fmt", ["mbtiles", "geopackage"])
def test_corrupt_sqlite_pages_make_corrupt_bundles_and_the_scan_goes_on(healthy, tmp_path, fmt):
    """Random bytes over some leaf pages of the tile table (found with SQLite's dbstat): the
    bundles whose tiles lie there are CORRUPT rows; the others are counted exactly."""
    source, baseline = healthy[fmt]
    damaged = tmp_path / source.name
    damaged.write_bytes(with_tile_pages_overwritten(source))
    report = operations.rebuild(damaged, tmp_path / "s.gdb", workers=1, sizes=True)
    rows = task_rows(report.status_path)
    corrupt = {name for name, row in rows.items() if row["status"] == "CORRUPT"}
    assert corrupt and corrupt == {p.bundle for p in report.problems}
    assert all("cannot be read here" in rows[name]["detail"] for name in corrupt)
    for name, row in baseline.items():
        if name not in corrupt:
            assert {f: rows[name][f] for f in FIELDS} == {f: row[f] for f in FIELDS}, name


@pytest.mark.parametrize(
    "kind",
    ["compact-v2", "compact-v1", "tpkx", "exploded", "xyz", "mbtiles", "geopackage", "pmtiles"],
)
def test_nothing_in_the_cache_changes(kind, tiles, tmp_path):
    """Byte for byte and mtime for mtime, through every command that reads a cache, its status
    kept elsewhere; the cache's folder made read-only (which stops anyone but root)."""
    from click.testing import CliRunner

    from cachestatus.cli import main

    home = tmp_path / "home"
    home.mkdir()
    cache, opening = build(kind, home, tiles)
    elsewhere = tmp_path / "elsewhere"
    hint = ["--scheme", opening["scheme"]] if opening else []
    snapshot = tree_snapshot(home)
    for path in [home, *home.rglob("*")]:
        if path.is_dir():
            path.chmod(0o555)
    try:
        for args in (
            ["info", str(cache)],
            ["rebuild", str(cache), "--status", str(elsewhere / "s.gdb"), "--sizes", "--blank"],
            ["summary", str(cache), "--status", str(elsewhere / "s.gdb")],
            ["report", str(cache), "--out", str(elsewhere / "r"), "--levels", "9"],
            ["verify", str(cache), "--decode", "--blank"],
        ):
            workers = [] if args[0] in ("info", "summary") else ["--workers", "1"]
            result = CliRunner().invoke(main, [*args, *hint, *workers])
            # verify exits 1: these tiles are random bytes, not images.
            assert result.exit_code == (1 if args[0] == "verify" else 0), (args, result.output)
    finally:
        for path in [home, *home.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
    assert tree_snapshot(home) == snapshot


def test_a_wal_mode_sqlite_cache_gets_no_wal_files(healthy, tmp_path):
    """SQLite opens a WAL database read-only by creating -wal and -shm files beside it; such a
    file is opened immutable instead, and its folder stays as it was."""
    source, baseline = healthy["mbtiles"]
    folder = tmp_path / "wal"
    folder.mkdir()
    cache = folder / source.name
    shutil.copy(source, cache)
    with sqlite3.connect(cache) as db:
        assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    db.close()
    assert sorted(p.name for p in folder.iterdir()) == [cache.name]  # closed cleanly
    before = tree_snapshot(folder)
    report = operations.rebuild(cache, tmp_path / "s.gdb", workers=1, sizes=True)
    assert tree_snapshot(folder) == before
    rows = task_rows(report.status_path)
    assert {n: {f: r[f] for f in FIELDS} for n, r in rows.items()} == {
        n: {f: r[f] for f in FIELDS} for n, r in baseline.items()
    }


def _can_mount_read_only() -> bool:
    """Whether a folder can be bind-mounted read-only in a mount namespace here."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        script = f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} {folder}"
        try:
            probe = subprocess.run(
                ["unshare", "-m", "sh", "-c", script], capture_output=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return False
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_read_only(), reason="needs unshare -m (root) for a ro mount")
@pytest.mark.parametrize(
    "kind", ["compact-v2", "compact-v1", "tpkx", "xyz", "mbtiles", "mbtiles-wal", "pmtiles"]
)
def test_a_cache_on_a_read_only_file_system_gets_its_status(kind, tiles, tmp_path):
    """The cache folder bind-mounted read-only (as a share mounted ro): any write beside the
    cache, a WAL or journal file or a status store, would fail with EROFS. Rebuild with the
    status elsewhere, and verify, succeed."""
    import shlex
    import subprocess
    import sys

    home = tmp_path / "home"
    home.mkdir()
    cache, opening = build(kind.removesuffix("-wal"), home, tiles)
    if kind.endswith("-wal"):  # a WAL file read-only would need -wal and -shm files beside it
        with sqlite3.connect(cache) as db:
            db.execute("PRAGMA journal_mode=WAL")
        db.close()
    hint = f"--scheme {opening['scheme']}" if opening else ""
    cli = f"{shlex.quote(sys.executable)} -m cachestatus.cli"
    script = (
        f"mount --bind {home} {home} && mount -o remount,ro,bind {home} {home} && "
        f"! touch {home}/probe 2>/dev/null && "
        f"{cli} rebuild {cache} {hint} --workers 1 --status {tmp_path / 's.gdb'} --json && "
        f"{cli} verify {cache} {hint} --workers 1 --json; echo verify=$?"
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert '"tiles_present"' in done.stdout
    assert "verify=1" in done.stdout  # it ran to the end: these tiles are not images
    assert (tmp_path / "s.gdb").is_dir() and not (home / "probe").exists()
