"""Tile packages unpacked into a folder: Esri's extracted sample from the tile-package
specification (its figures are the oracle of tests/data/realworld/README.md, read from the
bundle's index by the Compact V2 specification, without cachestatus), Usa.tpkx unpacked, and
hostile folders."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from cachestatus import formats, operations
from cachestatus.cli import main
from cachestatus.errors import InvalidCacheConfig
from tests.builders import tpkx_root_json, zip_tpkx
from tests.test_blobs_hostile import _cli
from tests.test_tpkx import USA, USA_TILES

SAMPLE = (
    Path(__file__).parent
    / "data"
    / "realworld"
    / "tpkx-extracted"
    / "Sample_of_extracted_TPKX _file"
)
#: Oracle (README): L00 holds 1 tile of 5,924 bytes; root.json declares LODs 0-5.
SAMPLE_TILES = {0: 1}
SAMPLE_BYTES = 5_924


def _sample(tmp_path: Path) -> Path:
    """The sample copied to a path with a space, as it is published."""
    target = tmp_path / "unpacked packages" / SAMPLE.name
    shutil.copytree(SAMPLE, target)
    return target


def test_extracted_sample_is_read_with_the_readme_counts(tmp_path):
    """Oracle: README, Sample_of_extracted_TPKX _file: L00 1 tile (5,924 bytes)."""
    folder = _sample(tmp_path)
    assert " " in str(folder)
    report = operations.rebuild(folder, workers=1)
    assert report.format == "tpkx-folder"
    assert [lv.level for lv in report.levels] == [0, 1, 2, 3, 4, 5]  # minLOD..maxLOD
    assert {lv.level: lv.tiles_present for lv in report.levels if lv.tiles_present} == SAMPLE_TILES
    assert report.totals.tile_bytes == SAMPLE_BYTES
    # The levels root.json declares are expected, built or not: 0 % where no bundle is.
    assert [lv.percent_complete for lv in report.levels][1:] == [0.0] * 5
    # The default status store goes beside root.json, as Status.gdb goes beside conf.xml.
    assert report.status_path == str(folder / "Status.gdb")
    again = operations.rebuild(folder, workers=1)  # the default store is ours to replace
    assert again.totals.tiles_present == 1
    summary = CliRunner().invoke(main, ["summary", str(folder), "--json"])
    assert summary.exit_code == 0, summary.output
    assert json.loads(summary.stdout)["totals"]["tiles_present"] == 1


def test_extracted_sample_on_the_command_line_by_folder_or_root_json(tmp_path):
    folder = _sample(tmp_path)
    for path in (folder, folder / "root.json"):
        result = CliRunner().invoke(main, ["info", str(path), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["format"] == "tpkx-folder"
    # Its L00 tile lacks its PNG signature, as in Usa.tpkx (tests/data/esri/README.md).
    checked = CliRunner().invoke(main, ["verify", str(folder), "--json"])
    assert checked.exit_code == 1
    (problem,) = json.loads(checked.stdout)["problems"]
    assert (problem["tile"], problem["kind"]) == ("L00/R0/C0", "not-an-image")


def test_detected_by_content_whatever_the_folder_is_called(tmp_path):
    folder = _sample(tmp_path)
    renamed = folder.rename(tmp_path / "tiles.gdb-not-really")
    with formats.open_cache(renamed) as reader:
        assert reader.name == "tpkx-folder"
        assert reader.scheme.storage_format == "esriMapCacheStorageModeCompactV2"


def test_usa_package_unpacked_reads_like_the_package(tmp_path):
    """Oracle: tests/data/esri/README.md, Usa.tpkx: L00-L05 hold 1, 1, 4, 9, 30, 99 tiles."""
    folder = tmp_path / "Usa"
    with zipfile.ZipFile(USA) as package:
        package.extractall(folder)
    unpacked = operations.rebuild(folder, tmp_path / "u.gdb", workers=1)
    assert [lv.tiles_present + lv.tiles_stray for lv in unpacked.levels] == USA_TILES
    package = tmp_path / "Usa.tpkx"
    shutil.copyfile(USA, package)
    zipped = operations.rebuild(package, tmp_path / "z.gdb", workers=1)
    for a, b in zip(unpacked.levels, zipped.levels, strict=True):
        assert (a.tiles_expected, a.tiles_present, a.tile_bytes) == (
            b.tiles_expected,
            b.tiles_present,
            b.tile_bytes,
        )


def test_tile_bundles_path_is_followed_inside_the_package(tmp_path):
    folder = _sample(tmp_path)
    (folder / "tile").rename(folder / "bundles")
    root = json.loads((folder / "root.json").read_text())
    root["tileBundlesPath"] = "./bundles"
    (folder / "root.json").write_text(json.dumps(root))
    report = operations.rebuild(folder, tmp_path / "s.gdb", workers=1)
    assert report.totals.tiles_present == 1


@pytest.mark.parametrize("value", ["../../outside", "/etc", "C:/tiles", 7])
def test_a_bundle_path_leading_out_of_the_package_exits_2(tmp_path, value):
    folder = _sample(tmp_path)
    root = json.loads((folder / "root.json").read_text())
    root["tileBundlesPath"] = value
    (folder / "root.json").write_text(json.dumps(root))
    with pytest.raises(InvalidCacheConfig, match="tileBundlesPath is"):
        formats.open_cache(folder)
    result = _cli("rebuild", folder, "--workers", "1")
    assert result.returncode == 2 and "tileBundlesPath is" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested 100,000 deep"),
        (b"{}", "no 'tileInfo' object"),
        (b"\xff\xfe not json", "not valid JSON"),
        (b'{"a": "' + b" " * (16 * 2**20) + b'"}', "larger than 16,777,216 bytes"),
    ],
)
def test_a_bad_root_json_exits_2_naming_it(tmp_path, content, message):
    folder = _sample(tmp_path)
    (folder / "root.json").write_bytes(content)
    result = _cli("rebuild", folder, "--workers", "1")
    assert result.returncode == 2, result.stderr
    assert "root.json" in result.stderr and message in result.stderr


def test_a_fifo_named_root_json_does_not_hang(tmp_path):
    folder = _sample(tmp_path)
    (folder / "root.json").unlink()
    os.mkfifo(folder / "root.json")
    result = _cli("info", folder)
    assert result.returncode == 2 and "not a file" in result.stderr


def test_a_truncated_bundle_is_one_corrupt_row(tmp_path):
    folder = _sample(tmp_path)
    bundle = folder / "tile" / "L00" / "R0000C0000.bundle"
    bundle.write_bytes(bundle.read_bytes()[:1000])
    report = operations.rebuild(folder, tmp_path / "s.gdb", workers=1)
    assert [p.kind for p in report.problems] == ["corrupt"]


def test_a_point_full_extent_expects_the_tile_holding_it(tmp_path):
    from tests.helpers import mapproxy_v2_cache

    point = (1.2345e6, 5.4321e6)
    cache = mapproxy_v2_cache(tmp_path / "v2", {(3, 2, 4): b"x" * 10}, levels=8, extent=None)
    folder = tmp_path / "pkg"
    shutil.copytree(cache / "_alllayers", folder / "tile")
    (folder / "root.json").write_text(json.dumps(tpkx_root_json(8, (*point, *point))))
    package = zip_tpkx(cache, tmp_path / "p.tpkx", tpkx_root_json(8, (*point, *point)))
    for path in (folder, package):  # unpacked, and the same files zipped
        report = operations.rebuild(path, tmp_path / f"{path.name}.gdb", workers=1)
        assert [lv.tiles_expected for lv in report.levels] == [1] * 8
        assert [lv.tiles_present for lv in report.levels] == [0, 0, 0, 1, 0, 0, 0, 0]
        assert not any("declares no full extent" in w for w in report.warnings)
