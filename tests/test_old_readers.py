"""The status opens in the readers administrators still run: Debian 12's GDAL 3.6 (the GDAL of
QGIS 3.22-era Linux LTS systems) reads every layer, field and row of what cachestatus writes,
with the values the current GDAL reads."""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pyogrio.raw import read

from cachestatus import operations
from tests.conftest import need_program

OLD_OGRINFO = "/usr/bin/ogrinfo"
HOW = "apt-get install gdal-bin (Debian 12 ships GDAL 3.6)"
LAYERS = ["TaskStatus", "LevelStatus", "Jobs", "MissingAreas"]
_FEATURE = re.compile(r"^OGRFeature\((\w+)\):(\d+)$")
# "exact (Integer(Int16)) = 1": a type, with its subtype for small integers.
_FIELD = re.compile(r"^  (\w+) \((\w+(?:\(\w+\))?)\) = (.*)$")


def _old_gdal(store: Path, layer: str) -> tuple[list[dict[str, str]], str]:
    """The rows of ``layer`` as Debian's ogrinfo prints them, and what it said on stderr."""
    ogrinfo = need_program(OLD_OGRINFO, HOW)
    version = subprocess.run([ogrinfo, "--version"], capture_output=True, text=True).stdout
    assert version.startswith("GDAL 3.6"), version  # the old reader, not a new one
    done = subprocess.run(
        [ogrinfo, "-ro", "-al", "-nomd", str(store), layer],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, str]] = []
    for line in done.stdout.splitlines():
        if _FEATURE.match(line):
            rows.append({})
        elif rows and (field := _FIELD.match(line)):
            rows[-1][field[1]] = field[3]
    return rows, done.stderr


def _same(old: str, new: object) -> bool:
    if old == "(null)":
        if isinstance(new, np.datetime64):
            return bool(np.isnat(new))
        return new is None or (isinstance(new, float) and math.isnan(new))
    if isinstance(new, np.datetime64):
        # GDAL 3.6 prints 2026/11/30 19:45:29(.123)+00: compare to the second.
        return old.replace("/", "-").replace(" ", "T")[:19] == str(new)[:19]
    if isinstance(new, (float, np.floating, int, np.integer)):
        return float(old) == pytest.approx(float(new), rel=1e-12)
    return old == str(new)


def _assert_old_reader_sees_it_all(store: Path) -> None:
    for layer in LAYERS:
        meta, _, _, values = read(str(store), layer=layer, read_geometry=False)
        names = list(meta["fields"])
        count = len(values[0]) if values else 0
        old_rows, stderr = _old_gdal(store, layer)
        assert "ERROR" not in stderr, stderr
        assert len(old_rows) == count, layer
        assert count > 0, layer  # nothing empty passes by accident
        for i, old in enumerate(old_rows):
            assert sorted(old) == sorted(names), layer
            for name, column in zip(names, values, strict=True):
                assert _same(old[name], column[i]), (layer, name, old[name], column[i])


@pytest.mark.parametrize("fmt", ["gdb", "gpkg"])
def test_debian_gdal_3_6_reads_every_layer_field_and_row(sample, tmp_path, fmt):
    store = tmp_path / f"Status.{fmt}"
    operations.rebuild(sample, store, workers=1, blank=True)
    _assert_old_reader_sees_it_all(store)


def test_a_report_opens_in_the_old_reader_too(sample, tmp_path):
    report = operations.report(sample, tmp_path / "out", levels=[2, 3, 4], workers=1)
    _assert_old_reader_sees_it_all(Path(report.status_path))


def test_big_integer_fields_are_the_explicit_choice_old_readers_cannot_open(sample, tmp_path):
    """The evidence that the default matters: with --big-integer, GDAL 3.6 sees no row."""
    store = tmp_path / "Status.gdb"
    operations.rebuild(sample, store, workers=1, big_integer=True)
    meta, _, _, _ = read(str(store), layer="TaskStatus", read_geometry=False, max_features=1)
    assert dict(zip(meta["fields"], meta["dtypes"], strict=True))["tileBytes"] == "int64"
    rows, stderr = _old_gdal(store, "TaskStatus")
    assert rows == [] and "filegdbtable.cpp" in stderr
