"""Tile packages (.tpkx): Esri's Usa.tpkx, a package made from a MapProxy cache, damage."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from cachestatus import formats, operations
from cachestatus.cli import main
from cachestatus.errors import InvalidCacheConfig
from cachestatus.formats.base import BundleFile
from tests.builders import tpkx_root_json, zip_tpkx
from tests.helpers import mapproxy_v2_cache

USA = Path(__file__).parent / "data" / "esri" / "Usa.tpkx"
# Known facts of Esri's Usa.tpkx (tests/data/esri/README.md): stored tiles at L00-L05.
USA_TILES = [1, 1, 4, 9, 30, 99]


def test_usa_tpkx_known_counts(tmp_path):
    package = tmp_path / "Usa.tpkx"
    package.write_bytes(USA.read_bytes())
    report = operations.rebuild(package, workers=1)
    assert report.format == "tpkx"
    assert report.status_path == str(tmp_path / "Usa.Status.gdb")
    assert [lv.level for lv in report.levels] == [0, 1, 2, 3, 4, 5]  # minLOD..maxLOD only
    assert [lv.tiles_present + lv.tiles_stray for lv in report.levels] == USA_TILES
    assert report.problems == []


def test_usa_full_extent_is_the_expected_area():
    with formats.open_cache(USA) as reader:
        assert reader.full_extent is not None
        assert reader.full_extent.xmin == pytest.approx(-19839092.300098713)
        assert reader.full_extent.ymax == pytest.approx(11542624.896685526)
        scheme = reader.scheme
        assert scheme.spatial_reference.user_input() == "EPSG:3857"
        assert (scheme.tile_cols, scheme.origin_x) == (256, -20037508.342787)


def test_package_matches_the_folder_cache_it_was_made_from(tmp_path):
    extent = (-9.5e6, -4.2e6, 1.31e7, 7.7e6)
    tiles = {
        (lv, r, c): bytes(10 + r % 7)
        for lv in (3, 6)
        for r in range(0, 2**lv, 3)
        for c in range(1, 2**lv, 5)
    }
    folder = mapproxy_v2_cache(tmp_path / "cache", tiles, levels=8, extent=extent)
    package = zip_tpkx(folder, tmp_path / "cache.tpkx", tpkx_root_json(8, extent))
    from_folder = operations.rebuild(folder, tmp_path / "a.gdb", workers=1)
    from_package = operations.rebuild(package, tmp_path / "b.gdb", workers=1)
    assert from_package.levels == from_folder.levels
    with formats.open_cache(package) as reader:
        bundle = next(b for b in reader.list_bundles(6) if isinstance(b, BundleFile))
        with pickle.loads(pickle.dumps(reader.spec)).open() as again:  # as in worker processes
            assert again.read_bundle(bundle).tiles == reader.read_bundle(bundle).tiles


def test_truncated_bundle_inside_the_package_is_corrupt(tmp_path):
    with zipfile.ZipFile(USA) as src, zipfile.ZipFile(tmp_path / "cut.tpkx", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "tile/L03/R0000C0000.bundle":
                data = data[:4000]
            dst.writestr(info, data)
    report = operations.rebuild(tmp_path / "cut.tpkx", workers=1)
    assert [p.bundle for p in report.problems] == ["L03/R0000C0000"]
    assert "truncated" in report.problems[0].detail
    assert [lv.tiles_present for lv in report.levels] == [1, 1, 4, 0, 30, 99]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("no-root", "a zip without root.json"),
        ("not-zip", "not a readable zip"),
        ("bad-json", "root.json: not valid JSON"),
    ],
)
def test_damaged_packages_exit_2(tmp_path, content, message):
    path = tmp_path / "bad.tpkx"
    if content == "not-zip":
        path.write_bytes(b"PK but not really a zip")
    else:
        with zipfile.ZipFile(path, "w") as z:
            if content == "bad-json":
                z.writestr("root.json", "{not json")
            z.writestr("tile/L00/R0000C0000.bundle", b"")
    result = CliRunner().invoke(main, ["rebuild", str(path)])
    assert result.exit_code == 2
    assert message in result.stderr
    with pytest.raises(InvalidCacheConfig):
        formats.open_cache(path)
