"""Hostile names in folder caches: one odd name is a problem, and the scan goes on.

Each family of odd names is made here, in ``tmp_path``, beside good tiles: names that are not
tiles, numbers off the grid, zoom and level folders a status cannot hold, files where folders
belong and folders where files belong, links that dangle or loop, FIFOs named like tiles. Every
command (rebuild with and without ``--sizes``, ``--blank``, ``verify``) must list each as a
problem (or a warning for a zoom/level folder, or ignore what is plainly not a tile), count the
good tiles exactly, and neither crash nor hang. Tests run as root, so folders that cannot be
listed are made with link loops, files named like folders, and (in-process) a listing that
raises ``PermissionError``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cachestatus import formats, operations
from cachestatus.cli import main
from cachestatus.errors import InvalidCacheConfig
from tests.helpers import synthetic_bundle, write_conf

PNG = b"\x89PNG\r\n\x1a\n" + bytes(24)
#: Bytes that are not UTF-8: os.fsdecode turns them into surrogates.
NOT_UTF8 = b"\xff6.png"


def _write(path: Path, data: bytes = PNG) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _raw(folder: Path, name: bytes, data: bytes = b"x") -> None:
    with open(os.fsencode(folder) + b"/" + name, "wb") as f:
        f.write(data)


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The command line in a process of its own, killed if it hangs."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "cachestatus.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def _problems(report) -> set[tuple[str, str]]:
    return {(p.bundle, p.kind) for p in report.problems}


# -- XYZ: names that are not tiles ------------------------------------------------------------

#: The good tiles of the hostile XYZ folder, (zoom, x, y); rows are y (XYZ).
XYZ_TILES = [(3, 2, 0), (3, 2, 1), (3, 2, 5), (3, 3, 1), (3, 7, 7), (2, 1, 0), (2, 1, 3)]
#: Names in a column folder that end like tiles and are none: each a bad-name problem.
BAD_TILE_NAMES = [
    "².png",  # superscript two: str.isdigit() says yes, int() says no
    "٣.png",  # Arabic-Indic three: int() reads 3
    "\uff13.png",  # full-width three
    " 6.png",
    "6 .png",
    "+6.png",
    "-1.png",
    "1e3.png",
    "6.png\n7.png",
    "8.png",  # off the grid: zoom 3 has rows 0-7
    "99999999999999999999999.png",  # beyond int64
]
#: Names that are plainly not tiles: ignored.
NOT_TILES = [".DS_Store", "Thumbs.db", "metadata.json", "._5.png", "notes.txt", "5.png.tmp"]


def _hostile_xyz(root: Path) -> Path:
    for z, x, y in XYZ_TILES:
        _write(root / str(z) / str(x) / f"{y}.png")
    column = root / "3" / "2"
    for name in BAD_TILE_NAMES + NOT_TILES:
        (column / name).write_bytes(b"x")
    _raw(column, NOT_UTF8)
    (column / "loop").symlink_to("loop")  # a link loop, not named like a tile
    (column / "up").symlink_to("..")  # a folder link to its parent
    (root / "3" / "3" / "6.png").mkdir()  # a folder where a tile belongs
    zoom = root / "3"
    for name in ["٣", "²", "-1", "8", "99999999999999999999"]:
        _write(zoom / name / "1.png")  # column folders that cannot be
    _write(zoom / "03" / "4.png")  # a second name of column 3
    (zoom / "4").write_bytes(b"")  # a file where a column folder belongs
    (zoom / "6").symlink_to("6")  # a column folder that loops
    for name in ["40", "2147483648", "-1", "٣", "²"]:
        _write(root / name / "1" / "1.png")  # zoom folders that cannot be
    (root / "5").write_bytes(b"")  # a file where a zoom folder belongs
    (root / "metadata.json").write_text("{}")
    return root


XYZ_PROBLEMS = {
    *((f"3/2/{n}".replace("\n", "\\n"), "bad-name") for n in BAD_TILE_NAMES),
    ("3/2/\\udcff6.png", "bad-name"),
    ("3/٣", "bad-name"),
    ("3/²", "bad-name"),
    ("3/-1", "bad-name"),
    ("3/8", "bad-name"),
    ("3/99999999999999999999", "bad-name"),
    ("3/03", "bad-name"),
    ("3/4", "corrupt"),
    ("3/6", "corrupt"),
    ("L03/R0000C0000", "corrupt"),  # 3/3/6.png, a folder
}
XYZ_WARNINGS = [
    "level folder -1 (not a number in ASCII digits)",
    "level folder 2147483648 (deeper than zoom 31, the deepest a status holds)",
    "level folder 40 (deeper than zoom 31, the deepest a status holds)",
    "level folder 5 (a file, not a folder)",
    "level folder ² (not a number in ASCII digits)",
    "level folder ٣ (not a number in ASCII digits)",
]


@pytest.mark.parametrize("sizes", [False, True])
def test_odd_names_in_an_xyz_folder_are_problems_and_good_tiles_are_counted(tmp_path, sizes):
    root = _hostile_xyz(tmp_path / "xyz")
    report = operations.rebuild(root, tmp_path / "s.gdb", workers=1, sizes=sizes)
    assert {lv.level: lv.tiles_present + lv.tiles_stray for lv in report.levels} == {2: 2, 3: 5}
    assert report.totals.tile_bytes == (len(PNG) * len(XYZ_TILES) if sizes else 0)
    assert _problems(report) == XYZ_PROBLEMS
    details = {p.bundle: p.detail for p in report.problems}
    assert details["3/2/8.png"].endswith("off the grid: tile numbers of level 3 are below 8")
    assert details["3/2/².png"].endswith("not a tile name")
    assert details["3/8"].endswith("off the grid: level 3 has 8 columns; not read")
    assert details["3/4"].endswith("a file, not a folder; not read")
    assert "Too many levels of symbolic links" in details["3/6"]
    assert "3/3/6.png: not a file: a directory named like a tile" in details["L03/R0000C0000"]
    assert [w.split(" is not")[0] for w in report.warnings if w.startswith("level folder")] == (
        XYZ_WARNINGS
    )


def test_odd_names_are_one_line_each_on_the_command_line(tmp_path):
    root = _hostile_xyz(tmp_path / "xyz")
    done = _run("rebuild", str(root), "--status", str(tmp_path / "s.gdb"), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["totals"]["tiles_present"] + out["totals"]["tiles_stray"] == len(XYZ_TILES)
    assert {(p["bundle"], p["kind"]) for p in out["problems"]} == XYZ_PROBLEMS
    lines = done.stderr.splitlines()
    assert sum(1 for line in lines if ": bad-name: " in line or ": corrupt: " in line) == len(
        XYZ_PROBLEMS
    )
    assert any(line.startswith("Warning: 3/2/6.png\\n7.png: bad-name: ") for line in lines)
    assert any("\\udcff6.png: not a tile name" in line for line in lines)


def test_odd_names_in_listing_processes_match_listing_here(tmp_path):
    """Enough column folders for listing processes: the same problems and counts."""
    root = _hostile_xyz(tmp_path / "xyz")
    for x in range(300):
        _write(root / "9" / str(x) / f"{x}.png")
    (root / "9" / "17" / "².png").write_bytes(b"x")
    (root / "9" / "18" / "5.png").symlink_to("nowhere")
    for sizes in (False, True):
        one = operations.rebuild(root, tmp_path / "a.gdb", workers=1, sizes=sizes)
        two = operations.rebuild(root, tmp_path / "b.gdb", workers=2, sizes=sizes)
        assert one.levels == two.levels
        assert sorted(map(str, one.problems)) == sorted(map(str, two.problems))
        assert ("9/17/².png", "bad-name") in _problems(two)
        assert two.levels[-1].tiles_present + two.levels[-1].tiles_stray == 300 + (not sizes)


def test_a_zoom_folder_beyond_the_grid_is_never_materialised(tmp_path):
    """Zoom 40 and 2**31 alone: a warning each, no OverflowError, no level listed."""
    root = tmp_path / "xyz"
    for name in ["40", "2147483648", "31"]:
        _write(root / name / "1" / "1.png")
    with formats.open_cache(root) as reader:
        assert reader.scheme.levels == (31,)
        assert [n.split(" ")[0] for n in reader.unknown_levels()] == ["2147483648", "40"]
    done = _run("rebuild", str(root), "--status", str(tmp_path / "s.gdb"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["totals"]["tiles_present"] == 1
    assert "level folder 40 (deeper than zoom 31" in done.stderr


def test_a_tms_folder_checks_rows_against_its_grid(tmp_path):
    root = tmp_path / "tms"
    _write(root / "2" / "1" / "0.png")  # row 3 counted from the top
    _write(root / "2" / "1" / "4.png")  # off the grid: would be row -1
    report = operations.rebuild(root, tmp_path / "s.gdb", workers=1, scheme="tms")
    assert report.totals.tiles_present + report.totals.tiles_stray == 1
    assert _problems(report) == {("2/1/4.png", "bad-name")}


# -- --sizes: a tile whose stat fails is a problem for that tile ------------------------------


def _linked_xyz(root: Path) -> Path:
    """Column 3/2 holds five good tiles and three that cannot be read; 3/3/0.png links to a
    good tile."""
    column = root / "3" / "2"
    for y in range(5):
        _write(column / f"{y}.png", PNG + bytes(y))
    (column / "5.png").symlink_to("gone.png")  # dangling
    (column / "6.png").symlink_to("6.png")  # a loop
    os.mkfifo(column / "7.png")
    (root / "3" / "3").mkdir()
    (root / "3" / "3" / "0.png").symlink_to("../2/0.png")
    return root


def test_with_sizes_a_dangling_link_hides_only_itself(tmp_path):
    root = _linked_xyz(tmp_path / "xyz")
    report = operations.rebuild(root, tmp_path / "s.gdb", workers=1, sizes=True)
    assert report.totals.tiles_present + report.totals.tiles_stray == 6
    assert report.totals.tile_bytes == 6 * len(PNG) + sum(range(5))
    found = {p.tile: p for p in report.problems}
    assert set(found) == {"L03/R5/C2", "L03/R6/C2", "L03/R7/C2"}
    assert {p.bundle for p in found.values()} == {"L03/R0000C0000"}
    assert found["L03/R5/C2"].detail.endswith("5.png: cannot read: No such file or directory")
    assert found["L03/R6/C2"].detail.endswith("cannot read: Too many levels of symbolic links")
    assert found["L03/R7/C2"].detail.endswith(
        "not a file: a special file (FIFO, device, socket) named like a tile"
    )
    # Without sizes, names are not checked: every name counts (verify reads them, below).
    counted = operations.rebuild(root, tmp_path / "n.gdb", workers=1)
    assert counted.totals.tiles_present + counted.totals.tiles_stray == 9
    assert not counted.problems


class _Vanishing:
    """``os.scandir`` whose entries are made, then one file is deleted before they are used:
    a caching job removing a tile while the listing runs."""

    def __init__(self, entries: list[os.DirEntry[str]], victim: Path) -> None:
        self.entries = entries
        victim.unlink()

    def __enter__(self) -> list[os.DirEntry[str]]:
        return self.entries

    def __exit__(self, *exc: object) -> None:
        pass


def test_a_file_vanishing_between_listing_and_stat_is_a_problem_for_that_tile(
    tmp_path, monkeypatch
):
    root = tmp_path / "xyz"
    for y in range(4):
        _write(root / "3" / "2" / f"{y}.png")
    column = str(root / "3" / "2")
    real = os.scandir

    def vanishing(path="."):
        if os.fspath(path) != column:
            return real(path)
        with real(path) as it:
            return _Vanishing(list(it), root / "3" / "2" / "2.png")

    monkeypatch.setattr(os, "scandir", vanishing)
    report = operations.rebuild(root, tmp_path / "s.gdb", workers=1, sizes=True)
    assert report.totals.tiles_present + report.totals.tiles_stray == 3
    assert [(p.tile, p.kind) for p in report.problems] == [("L03/R2/C2", "corrupt")]
    assert report.problems[0].detail.endswith("cannot read: No such file or directory")
    assert report.problems[0].at == (3, 2, 2)  # the tile itself, not only its text


# -- verify and --blank read tile files -------------------------------------------------------


def test_verify_reads_every_readable_tile_and_names_each_one_it_cannot(tmp_path):
    root = _linked_xyz(tmp_path / "xyz")
    huge = root / "3" / "2" / "4.png"
    with open(huge, "r+b") as f:
        f.truncate(64 * 2**20 + 1)  # sparse: larger than any tile
    done = _run("verify", str(root), "--json", timeout=60)  # a FIFO must not hang it
    assert done.returncode == 1, done.stderr
    out = json.loads(done.stdout)
    assert out["totals"]["tiles_checked"] == 9
    bad = {p["tile"]: p["detail"] for p in out["problems"]}
    assert set(bad) == {"L03/R4/C2", "L03/R5/C2", "L03/R6/C2", "L03/R7/C2"}
    assert bad["L03/R4/C2"] == "67,108,865 bytes: larger than any tile (at most 67,108,864 read)"
    assert bad["L03/R5/C2"] == "cannot read: No such file or directory"
    assert bad["L03/R6/C2"] == "cannot read: Too many levels of symbolic links"
    assert bad["L03/R7/C2"] == "not a file: a special file (FIFO, device, socket) named like a tile"
    report = operations.verify(root, workers=1)
    assert report.totals.tiles == 9 and report.totals.bad == 4


def test_verify_lists_odd_names_and_checks_the_good_tiles(tmp_path):
    root = _hostile_xyz(tmp_path / "xyz")
    report = operations.verify(root, workers=1)
    assert report.totals.tiles == len(XYZ_TILES) and report.totals.bad == 0
    assert _problems(report) == XYZ_PROBLEMS
    done = _run("verify", str(root), timeout=60)
    assert done.returncode == 1
    assert "3/2/6.png\\n7.png  bad-name: " in done.stdout


def test_blank_with_a_tile_it_cannot_read_is_a_corrupt_bundle_and_the_rest_is_counted(tmp_path):
    """As for a bundle format: damage met while reading tiles makes the bundle CORRUPT. With
    --sizes the listing already set those tiles aside, and nothing is CORRUPT."""
    root = _linked_xyz(tmp_path / "xyz")
    _write(root / "3" / "7" / "7.png")  # in the same bundle as the damage
    _write(root / "9" / "300" / "300.png")  # elsewhere
    report = operations.rebuild(root, tmp_path / "s.gdb", workers=1, blank=True)
    assert [(p.bundle, p.kind) for p in report.problems] == [("L03/R0000C0000", "corrupt")]
    assert "tile R5/C2: cannot read: No such file or directory" in report.problems[0].detail
    assert report.levels[-1].tiles_present + report.levels[-1].tiles_stray == 1
    measured = operations.rebuild(root, tmp_path / "m.gdb", workers=1, blank=True, sizes=True)
    assert {p.tile for p in measured.problems} == {"L03/R5/C2", "L03/R6/C2", "L03/R7/C2"}
    assert measured.totals.tiles_present + measured.totals.tiles_stray == 8
    assert measured.totals.tiles_blank == 0


# -- folders that cannot be listed ------------------------------------------------------------


def test_a_column_folder_that_cannot_be_listed_is_a_problem(tmp_path, monkeypatch):
    root = tmp_path / "xyz"
    for x in range(3):
        _write(root / "3" / str(x) / "1.png")
    locked = str(root / "3" / "1")
    for name in ("listdir", "scandir", "stat"):
        real = getattr(os, name)

        def refusing(path=".", *args, _real=real, **kwargs):
            if isinstance(path, str | os.PathLike) and os.fspath(path) == locked:
                raise PermissionError(13, "Permission denied", locked)
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(os, name, refusing)
    for sizes in (False, True):
        report = operations.rebuild(root, tmp_path / f"{sizes}.gdb", workers=1, sizes=sizes)
        assert report.totals.tiles_present + report.totals.tiles_stray == 2
        assert [(p.bundle, p.kind, p.detail) for p in report.problems] == [
            ("3/1", "corrupt", f"{locked}: cannot list: Permission denied")
        ]
    assert operations.verify(root, workers=1).totals.tiles == 2


def test_a_cache_folder_that_cannot_be_listed_is_refused_before_any_work(tmp_path, monkeypatch):
    root = tmp_path / "xyz"
    _write(root / "3" / "1" / "1.png")
    exploded = write_conf(tmp_path / "e", 6, storage="esriMapCacheStorageModeExploded")
    (exploded / "_alllayers").mkdir()
    real = os.scandir
    refused = {str(root), str(exploded / "_alllayers")}

    def refusing(path="."):
        if isinstance(path, str | os.PathLike) and os.fspath(path) in refused:
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(os, "scandir", refusing)
    with pytest.raises(InvalidCacheConfig, match=r"xyz: cannot be listed \(Permission denied\)"):
        formats.open_cache(root, "xyz")
    result = CliRunner().invoke(main, ["info", str(exploded)])
    assert result.exit_code == 2
    assert "_alllayers: cannot be listed (Permission denied)" in result.stderr
    assert not formats.get("xyz").detect(root)  # detection says no, never raises


# -- ArcGIS exploded caches -------------------------------------------------------------------


def _hostile_exploded(root: Path) -> Path:
    write_conf(root, 6, storage="esriMapCacheStorageModeExploded")
    layers = root / "_alllayers"
    level = layers / "L03"
    row = level / "R00000002"
    for col in (1, 5):
        _write(row / f"C{col:08x}.png")
    _write(level / "R0000000a" / "C00000002.PNG")  # upper-case extension: a tile
    _write(level / "R0000000A" / "C00000003.png")  # a second name of row 10
    for name in ["C0000000g.png", "C0000001.png", "CFFFFFFFF.png", "C٣٣٣٣٣٣٣٣.png"]:
        (row / name).write_bytes(b"x")
    _raw(row, b"C\xff0000000.png")
    (row / "Thumbs.db").write_bytes(b"x")
    (row / "C00000007.png").symlink_to("nowhere")
    (level / "R0000000g").mkdir()
    (level / "RFFFFFFFF").mkdir()  # row 2**32 - 1: beyond what a status holds
    (level / "R00000003").write_bytes(b"")
    (level / "R00000004").symlink_to("R00000004")
    (level / "README.txt").write_text("not a row")
    (layers / "L٣").mkdir()
    (layers / "L3").mkdir()  # a second name of level 3
    (layers / "L04").write_bytes(b"")
    (layers / "L05").symlink_to("L05")
    (layers / "L99999999999").mkdir()
    return root


@pytest.mark.parametrize("sizes", [False, True])
def test_odd_names_in_an_exploded_cache_are_problems(tmp_path, sizes):
    root = _hostile_exploded(tmp_path / "exploded")
    report = operations.rebuild(root, tmp_path / "s.gdb", workers=1, sizes=sizes)
    assert report.totals.tiles_present + report.totals.tiles_stray == 3 + (not sizes)
    expected = {
        ("L03/R00000002/C0000000g.png", "bad-name"),
        ("L03/R00000002/C0000001.png", "bad-name"),
        ("L03/R00000002/CFFFFFFFF.png", "bad-name"),
        ("L03/R00000002/C٣٣٣٣٣٣٣٣.png", "bad-name"),
        ("L03/R00000002/C\\udcff0000000.png", "bad-name"),
        ("L03/R0000000A", "bad-name"),
        ("L03/R0000000g", "bad-name"),
        ("L03/RFFFFFFFF", "bad-name"),
        ("L03/R00000003", "corrupt"),
        ("L03/R00000004", "corrupt"),
    }
    if sizes:
        expected.add(("L03/R0000C0000", "corrupt"))  # the dangling C00000007.png
    assert _problems(report) == expected
    assert [w.split(" is not")[0] for w in report.warnings if w.startswith("level folder")] == [
        "level folder L04 (a file, not a folder)",
        "level folder L05 (cannot be opened: Too many levels of symbolic links)",
        "level folder L3 (the same level as L03)",
        "level folder L99999999999 (not a level folder name: L and 1 to 9 ASCII digits)",
        "level folder L٣ (not a level folder name: L and 1 to 9 ASCII digits)",
    ]


# -- Compact bundle folders -------------------------------------------------------------------


def _hostile_compact(root: Path) -> Path:
    write_conf(root, 6, storage="esriMapCacheStorageModeCompactV2")
    level = root / "_alllayers" / "L03"
    sizes = np.zeros((128, 128), dtype=np.int64)
    sizes[0:2, 0:3] = 10
    for name in ["R0000C0000", "R0080C0000", "R00080C0000", "R0A80C0000", "R00000100C0000"]:
        synthetic_bundle(level / f"{name}.bundle", sizes)
    for name in [
        "Rzzzz.bundle",
        "R٣٣٣٣C0000.bundle",
        "RFFFFFFFFFFFFFFFFFFFFC0000.bundle",
        "R0000C" + "f" * 200 + ".bundle",
        "R0001C0000.bundle",
    ]:
        (level / name).write_bytes(b"")
    _raw(level, b"R\xff000C0000.bundle")
    (level / "R0200C0000.bundle").symlink_to("R0200C0000.bundle")
    (level / "R0000C0000.bundle.bak").write_bytes(b"")
    (root / "_alllayers" / "L04").symlink_to("L04")
    return root


def test_odd_bundle_names_are_problems_and_good_bundles_are_counted(tmp_path):
    root = _hostile_compact(tmp_path / "v2")
    report = operations.rebuild(root, tmp_path / "s.gdb", workers=1)
    # R0000C0000, R0080C0000 (also named R00080C0000), R0A80C0000, R0100C0000: six tiles each.
    assert report.levels[3].tiles_present + report.levels[3].tiles_stray == 24
    assert report.levels[3].bundles == 5
    assert _problems(report) == {
        ("L03/Rzzzz.bundle", "bad-name"),
        ("L03/R٣٣٣٣C0000.bundle", "bad-name"),
        ("L03/RFFFFFFFFFFFFFFFFFFFFC0000.bundle", "bad-name"),
        ("L03/R0000C" + "f" * 200 + ".bundle", "bad-name"),
        ("L03/R0001C0000.bundle", "bad-name"),
        ("L03/R\\udcff000C0000.bundle", "bad-name"),
        ("L03/R00080C0000.bundle", "bad-name"),
        ("L03/R0200C0000", "corrupt"),
    }
    details = {p.bundle: p.detail for p in report.problems}
    assert details["L03/R00080C0000.bundle"].endswith(
        "the same bundle as R0080C0000.bundle; not read"
    )
    assert "beyond what a status holds" in details["L03/RFFFFFFFFFFFFFFFFFFFFC0000.bundle"]
    assert "level folder L04 (cannot be opened: Too many levels of symbolic links)" in " ".join(
        report.warnings
    )
    done = _run("verify", str(root), timeout=60)
    assert done.returncode == 1 and "L03/R0200C0000  corrupt: cannot read" in done.stdout


def test_a_level_folder_that_cannot_be_listed_is_a_problem(tmp_path, monkeypatch):
    root = _hostile_compact(tmp_path / "v2")
    synthetic_bundle(root / "_alllayers" / "L02" / "R0000C0000.bundle", np.ones((128, 128)))
    locked = str(root / "_alllayers" / "L03")
    for name in ("listdir", "scandir"):
        real = getattr(os, name)

        def refusing(path=".", _real=real):
            if isinstance(path, str | os.PathLike) and os.fspath(path) == locked:
                raise PermissionError(13, "Permission denied", locked)
            return _real(path)

        monkeypatch.setattr(os, name, refusing)
    report = operations.rebuild(root, tmp_path / "s.gdb", workers=1)
    assert report.totals.tiles_present + report.totals.tiles_stray == 128 * 128
    assert [(p.bundle, p.kind, p.detail) for p in report.problems] == [
        ("L03", "corrupt", f"{locked}: cannot list: Permission denied")
    ]
