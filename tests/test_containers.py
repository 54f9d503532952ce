"""The same damage reads the same in every container: a folder cache, a ``.tpk``, a ``.tpkx``
(stored, or re-zipped with deflate) and an unpacked ``.tpkx``.

One healthy Compact V1 and one Compact V2 cache are written by MapProxy. Each case damages one
bundle of a copy, then puts the copy in a container and rebuilds it: the damaged bundle's row
must have the status and reason the folder cache gives it (the folder's reason is the right
one), and every other row must equal the healthy folder's.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from cachestatus import operations
from tests.builders import WORLD, tpkx_root_json
from tests.helpers import mapproxy_v2_cache
from tests.status_rows import task_rows
from tests.test_damage import (
    FIELDS,
    TARGET,
    _v1_no_index,
    _v1_offset_past_end,
    _v1_truncated_index,
    _v2_bad_header,
    _v2_offset_past_end,
    _v2_truncated_index,
    _zero_length,
)
from tests.test_tpkx import USA

BUNDLE = "_alllayers/L09/R0000C0000.bundle"


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> dict[int, tuple[Path, dict[str, dict]]]:
    """A healthy folder cache of each Compact version (nine bundles at level 9), and its rows."""
    rng = random.Random(29)
    tiles = {
        (9, rng.randrange(384), rng.randrange(384)): rng.randbytes(rng.randrange(200, 3000))
        for _ in range(200)
    }
    tiles[(9, 5, 5)] = rng.randbytes(500)  # the damage aims at this tile of the target bundle
    root = tmp_path_factory.mktemp("healthy")
    out = {}
    for version in (1, 2):
        cache = mapproxy_v2_cache(root / f"v{version}", tiles, 12, WORLD, version=version)
        report = operations.rebuild(cache, root / f"v{version}.gdb", workers=1)
        assert not report.problems
        out[version] = (cache, task_rows(report.status_path))
    return out


def _zip(folder: Path, target: Path, compression: int, package: str) -> Path:
    """``folder`` as a package: a ``.tpk`` (the folder under ``v101/Roads/``) or a ``.tpkx``
    (``root.json`` and the bundles under ``tile/``)."""
    with zipfile.ZipFile(target, "w", compression) as z:
        if package == "tpkx":
            z.writestr("root.json", json.dumps(tpkx_root_json(12, WORLD)))
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            name = path.relative_to(folder).as_posix()
            if package == "tpk":
                z.write(path, "v101/Roads/" + name)
            elif path.suffix == ".bundle":
                z.write(path, "tile/" + name.removeprefix("_alllayers/"))
    return target


def _unpacked(folder: Path, target: Path) -> Path:
    """``folder`` as an unpacked ``.tpkx``: ``root.json`` and ``tile/Lnn/``."""
    shutil.copytree(folder / "_alllayers", target / "tile")
    (target / "root.json").write_text(json.dumps(tpkx_root_json(12, WORLD)))
    return target


CONTAINERS: dict[str, Callable[[Path, Path], Path]] = {
    "folder": lambda folder, _: folder,
    "tpk": lambda folder, at: _zip(folder, at / "c.tpk", zipfile.ZIP_STORED, "tpk"),
    "tpk deflated": lambda folder, at: _zip(folder, at / "c.tpk", zipfile.ZIP_DEFLATED, "tpk"),
    "tpkx": lambda folder, at: _zip(folder, at / "c.tpkx", zipfile.ZIP_STORED, "tpkx"),
    "tpkx deflated": lambda folder, at: _zip(folder, at / "c.tpkx", zipfile.ZIP_DEFLATED, "tpkx"),
    "tpkx unpacked": lambda folder, at: _unpacked(folder, at / "unpacked"),
}
#: The containers each Compact version comes in (a .tpkx holds V2 bundles only).
HOLDING = {
    1: ["folder", "tpk", "tpk deflated"],
    2: ["folder", "tpk", "tpk deflated", "tpkx", "tpkx deflated", "tpkx unpacked"],
}


def _v1_truncated_bundle(bundle: Path) -> None:
    bundle.write_bytes(bundle.read_bytes()[:1000])


DAMAGE: list[tuple[int, str, Callable[[Path], None]]] = [
    (1, "truncated .bundle", _v1_truncated_bundle),
    (1, "truncated .bundlx", _v1_truncated_index),
    (1, "no .bundlx", _v1_no_index),
    (1, "offset past the end", _v1_offset_past_end),
    (1, "zero-length file", _zero_length),
    (2, "truncated index", _v2_truncated_index),
    (2, "bad header word", _v2_bad_header),
    (2, "offset past the end", _v2_offset_past_end),
    (2, "zero-length file", _zero_length),
]
CASES = [
    (version, damage, apply, container)
    for version, damage, apply in DAMAGE
    for container in HOLDING[version]
    if container != "folder"
]


@pytest.mark.parametrize(
    ("version", "damage", "apply", "container"),
    CASES,
    ids=[f"V{version} {damage} in {container}" for version, damage, _, container in CASES],
)
def test_damage_reads_as_in_the_folder(healthy, tmp_path, version, damage, apply, container):
    source, baseline = healthy[version]
    folder = tmp_path / "folder"
    shutil.copytree(source, folder)
    apply(folder / BUNDLE)
    in_folder = task_rows(operations.rebuild(folder, tmp_path / "f.gdb", workers=1).status_path)
    cache = CONTAINERS[container](folder, tmp_path)
    report = operations.rebuild(cache, tmp_path / "s.gdb", workers=1)
    rows = task_rows(report.status_path)
    assert (rows[TARGET]["status"], rows[TARGET]["detail"]) == (
        in_folder[TARGET]["status"],
        in_folder[TARGET]["detail"],
    )
    assert rows[TARGET]["status"] == "CORRUPT"
    assert [p.bundle for p in report.problems] == [TARGET]
    for name, row in baseline.items():
        if name != TARGET:
            assert {f: rows[name][f] for f in FIELDS} == {f: row[f] for f in FIELDS}, name
    assert set(rows) == set(baseline)


def test_a_truncated_v1_bundle_has_the_folders_reason_in_a_tpk(healthy, tmp_path):
    source, _ = healthy[1]
    folder = tmp_path / "folder"
    shutil.copytree(source, folder)
    _v1_truncated_bundle(folder / BUNDLE)
    reason = (
        "truncated: 1,000 bytes, a Compact V1 bundle holds at least 65,596 (header and size slots)"
    )
    for cache in (folder, CONTAINERS["tpk"](folder, tmp_path)):
        report = operations.rebuild(cache, tmp_path / f"{cache.name}.gdb", workers=1)
        assert [(p.bundle, p.detail) for p in report.problems] == [(TARGET, reason)]


def _deflated_usa(target: Path, damage_at: int | None = None) -> Path:
    """Esri's ``Usa.tpkx`` re-zipped with deflate; with ``damage_at``, 64 bytes of the L03
    bundle's compressed stream overwritten from there (negative: from its end)."""
    member = "tile/L03/R0000C0000.bundle"
    with zipfile.ZipFile(USA) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), zipfile.ZIP_DEFLATED)
    if damage_at is not None:
        with zipfile.ZipFile(target) as z:
            info = z.getinfo(member)
        data = bytearray(target.read_bytes())
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        at = start + (damage_at if damage_at >= 0 else info.compress_size + damage_at)
        data[at : at + 64] = b"\xff" * 64
        target.write_bytes(bytes(data))
    return target


def _level_rows(report) -> list[tuple]:
    return [(lv.level, lv.tiles_present, lv.tile_bytes) for lv in report.levels]


def test_a_broken_deflate_stream_is_a_corrupt_bundle(tmp_path):
    """64 bytes damaged early in a deflated bundle member: that bundle is CORRUPT (not a
    ``zlib.error`` ending the run); nothing else changes."""
    intact = operations.rebuild(_deflated_usa(tmp_path / "ok.tpkx"), tmp_path / "a.gdb", workers=1)
    damaged = _deflated_usa(tmp_path / "early.tpkx", damage_at=16)
    report = operations.rebuild(damaged, tmp_path / "b.gdb", workers=1)
    (problem,) = report.problems
    assert (problem.bundle, problem.kind) == ("L03/R0000C0000", "corrupt")
    assert problem.detail.startswith("the zip entry cannot be read (error: Error -3 ")
    rows = task_rows(report.status_path)
    assert rows["L03/R0000C0000"]["status"] == "CORRUPT"
    others = [row for row in _level_rows(report) if row[0] != 3]
    assert others == [row for row in _level_rows(intact) if row[0] != 3]


def test_a_bad_crc_is_a_corrupt_bundle_in_verify(tmp_path):
    """64 bytes damaged near the end of a deflated bundle member: the rebuild (header and index
    only) does not see it; verify, which reads every tile, reports that bundle (not a
    ``BadZipFile`` ending the run); nothing else changes."""
    intact = _deflated_usa(tmp_path / "ok.tpkx")
    damaged = _deflated_usa(tmp_path / "late.tpkx", damage_at=-100)
    before = operations.rebuild(intact, tmp_path / "a.gdb", workers=1)
    after = operations.rebuild(damaged, tmp_path / "b.gdb", workers=1)
    assert after.problems == [] and _level_rows(after) == _level_rows(before)
    expected = {(p.bundle, p.kind, p.tile) for p in operations.verify(intact, workers=1).problems}
    found = {(p.bundle, p.kind, p.tile): p for p in operations.verify(damaged, workers=1).problems}
    assert set(found) == expected | {("L03/R0000C0000", "corrupt", "")}
    assert "Bad CRC-32" in found["L03/R0000C0000", "corrupt", ""].detail


def test_tile_bundles_path_is_followed_in_a_zip_too(tmp_path):
    package = tmp_path / "moved.tpkx"
    root = json.loads(zipfile.ZipFile(USA).read("root.json"))
    root["tileBundlesPath"] = "./bundles"
    with zipfile.ZipFile(USA) as src, zipfile.ZipFile(package, "w") as dst:
        for info in src.infolist():
            data = json.dumps(root).encode() if info.filename == "root.json" else src.read(info)
            dst.writestr(info.filename.replace("tile/", "bundles/", 1), data)
    moved = operations.rebuild(package, tmp_path / "m.gdb", workers=1)
    original = operations.rebuild(USA, tmp_path / "o.gdb", workers=1)
    assert _level_rows(moved) == _level_rows(original)


@pytest.mark.parametrize("container", ["folder", "tpk deflated", "tpkx", "tpkx unpacked"])
def test_a_reader_opened_from_the_spec_reads_the_same(healthy, tmp_path, container):
    """Worker processes receive the reader's pickled spec and open their own reader from it:
    it reads the same as the reader that has read already (its zip open, its decoding arrays
    filled)."""
    from cachestatus import formats
    from cachestatus.formats.base import BundleFile

    source, _ = healthy[2]
    with formats.open_cache(CONTAINERS[container](source, tmp_path)) as reader:
        bundles = [b for b in reader.list_bundles(9) if isinstance(b, BundleFile)]
        counts = [reader.read_bundle(b).tiles for b in bundles]
        tiles = list(reader.read_tiles(bundles[0]))
        with pickle.loads(pickle.dumps(reader.spec)).open() as copy:
            assert [copy.read_bundle(b).tiles for b in bundles] == counts
            assert list(copy.read_tiles(bundles[0])) == tiles


def test_a_file_written_while_read_raises_bundle_changing(tmp_path):
    """The check a LocalFile makes itself: its size or modification time moved since it was
    opened (a caching job appending a tile)."""
    from cachestatus.errors import BundleChanging
    from cachestatus.formats.bytesource import LocalFile

    path = tmp_path / "R0000C0000.bundle"
    path.write_bytes(bytes(1000))
    with LocalFile(str(path)) as src:
        assert src.read(990, 100) == bytes(10)
        src.check_unchanged()
        with open(path, "ab") as f:
            f.write(b"tile")
        with pytest.raises(BundleChanging, match=r"changed while being read \(1,000 -> 1,004"):
            src.check_unchanged()


def _redated(package: Path, target: Path, date_time: tuple[int, ...]) -> Path:
    """``package`` written again by hand, its bundle members dated ``date_time`` (a zero DOS
    date, ``(1980, 0, 0, ...)``, is what some zip writers store)."""
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            if info.filename.endswith((".bundle", ".bundlx")):
                dst.writestr(zipfile.ZipInfo(info.filename, date_time), src.read(info))
            else:
                dst.writestr(info, src.read(info))
    return target


@pytest.mark.parametrize(("version", "container"), [(2, "tpkx"), (1, "tpk"), (2, "tpk deflated")])
def test_bundles_with_a_zero_zip_date_read_with_their_time_unknown(
    healthy, tmp_path, version, container
):
    """A member whose DOS date is zero (month 0) is read as any other, its modification time
    unknown: the rebuild goes on (exit 0) and its rows are the validly dated package's."""
    from click.testing import CliRunner

    from cachestatus.cli import main

    source, _ = healthy[version]
    package = CONTAINERS[container](source, tmp_path)
    rows = {}
    for name, date in (("valid", (2021, 6, 30, 12, 0, 0)), ("zero", (1980, 0, 0, 0, 0, 0))):
        redated = _redated(package, tmp_path / f"{name}{package.suffix}", date)
        status = tmp_path / f"{name}.gdb"
        args = ["rebuild", str(redated), "--status", str(status), "--workers", "1"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        rows[name] = task_rows(status, [*FIELDS, "detail", "modified"])
    assert rows["zero"].keys() == rows["valid"].keys()
    for bundle, row in rows["valid"].items():
        zero = rows["zero"][bundle]
        assert {**zero, "modified": None} == {**row, "modified": None}, bundle
        if row["status"] != "MISSING":
            assert row["modified"] is not None and zero["modified"] is None, bundle


def test_a_zip_archive_is_closed_when_opening_fails_and_refuses_once_closed(tmp_path, monkeypatch):
    from cachestatus.formats import bytesource

    package = tmp_path / "p.tpkx"
    with zipfile.ZipFile(package, "w") as z:
        z.writestr("root.json", "{}")
    opened: list[zipfile.ZipFile] = []

    class Recorded(zipfile.ZipFile):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            opened.append(self)

    def unreadable(_: object) -> None:
        raise OSError("no stat")

    monkeypatch.setattr(zipfile, "ZipFile", Recorded)
    monkeypatch.setattr(bytesource, "stat_version", unreadable)
    with pytest.raises(OSError, match="no stat"):
        bytesource.ZipArchive(package)
    assert opened[0].fp is None  # closed
    monkeypatch.undo()
    archive = bytesource.ZipArchive(package)
    assert archive.member("root.json").read(0, 10) == b"{}"
    archive.close()
    with pytest.raises(ValueError, match="the zip is closed"):
        archive.member("root.json")
