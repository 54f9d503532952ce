"""Tile packages (.tpk): a Compact V1 cache folder zipped, read inside the zip."""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from cachestatus import formats, operations
from cachestatus.cli import main
from tests.builders import zip_tpk
from tests.helpers import mapproxy_v2_cache
from tests.status_rows import COUNTS, task_rows
from tests.test_compact_v1 import EXTENT


@pytest.fixture(scope="module")
def v1_cache(tmp_path_factory) -> Path:
    rng = random.Random(17)
    tiles = {}
    for level, row0, col0, span in [(3, 0, 0, 8), (7, 30, 40, 60)]:
        for _ in range(80):
            row, col = row0 + rng.randrange(span), col0 + rng.randrange(span)
            tiles[(level, row, col)] = rng.randbytes(rng.randrange(1, 300))
    return mapproxy_v2_cache(
        tmp_path_factory.mktemp("tpk") / "cache", tiles, levels=9, extent=EXTENT, version=1
    )


def test_tpk_matches_the_folder_it_was_made_from(v1_cache, tmp_path):
    package = zip_tpk(v1_cache, tmp_path / "Roads.tpk")
    with formats.open_cache(package) as reader:
        assert reader.name == "tpk" and reader.full_extent is not None
    a = operations.rebuild(v1_cache, tmp_path / "a.gdb", workers=1)
    b = operations.rebuild(package, workers=1)
    assert b.status_path == str(tmp_path / "Roads.Status.gdb")
    assert b.levels == a.levels
    assert task_rows(b.status_path, COUNTS) == task_rows(a.status_path, COUNTS)


def test_missing_bundlx_inside_the_package_is_corrupt(v1_cache, tmp_path):
    package = zip_tpk(v1_cache, tmp_path / "cut.tpk", skip="R0000C0000.bundlx")
    report = operations.rebuild(package, workers=1)
    assert {p.detail for p in report.problems} == {"no .bundlx index beside it"}


def test_zip_without_conf_xml_exits_2(tmp_path):
    path = tmp_path / "empty.tpk"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("v101/Roads/_alllayers/L00/R0000C0000.bundle", b"")
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 2 and "a zip without conf.xml" in result.stderr
