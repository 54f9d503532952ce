"""Damage is reported, never raised: a damaged container makes ``CORRUPT`` rows and the scan
counts the rest exactly; a web page stored as a tile is named by ``verify``, in every format.

Each case damages a copy of the session's cache (hard links but for the rewritten file).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from cachestatus.cli import main
from tests.builders import BuiltCache
from tests.contract.suite import TILES, Builds, linked_copy
from tests.helpers import with_tile_pages_overwritten
from tests.status_rows import task_rows

#: The bundle the container damages break: L08's checkerboard (tiles in and out of the extent),
#: its level folder and file name in the Compact layout.
FOLDER, NAME = "L08", "R0000C0080"
BUNDLE = f"{FOLDER}/{NAME}"
#: A tile of that bundle, and where ``verify`` names it.
TILE = (8, 5, 128)
ADDRESS = "L08/R5/C128"
COUNTS = ("status", "tilesExpected", "tilesPresent", "tilesStray", "tileBytes", "fileBytes")
SQLITE = ("mbtiles", "geopackage")
ZIPPED = ("tpkx", "tpk")
PAGE = b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>"

Change = Callable[[Path, Path], bytes | None]


def _truncated(member: str) -> Change:
    """The file at ``member`` cut to its first 1,000 bytes."""
    return lambda relative, path: (
        path.read_bytes()[:1000] if relative.as_posix() == member else None
    )


def _in_zip(member: str) -> Change:
    """The zip with its entry ``member`` cut to its first 1,000 bytes."""

    def rewrite(_: Path, path: Path) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                data = src.read(info)
                dst.writestr(info, data[:1000] if info.filename == member else data)
        return out.getvalue()

    return rewrite


#: Per format, a damage its container can carry, and what the ``CORRUPT`` rows' detail says.
#: Tile folders keep no structure beyond their tiles; a PMTiles archive of these tiles keeps
#: them all in its root directory, which cannot be damaged without refusing the archive (exit
#: 2): both are checked with a damaged tile alone (below).
CONTAINER_DAMAGE: dict[str, tuple[Change, str]] = {
    "compact-v2": (_truncated(f"_alllayers/{FOLDER}/{NAME}.bundle"), "truncated"),
    "compact-v1": (_truncated(f"_alllayers/{FOLDER}/{NAME}.bundlx"), ".bundlx is"),
    "tpkx-folder": (_truncated(f"tile/{FOLDER}/{NAME}.bundle"), "truncated"),
    "tpkx": (_in_zip(f"tile/{FOLDER}/{NAME}.bundle"), "truncated"),
    "tpk": (_in_zip(f"v101/Roads/_alllayers/{FOLDER}/{NAME}.bundlx"), ".bundlx is"),
    "mbtiles": (lambda _, path: with_tile_pages_overwritten(path), "cannot be read here"),
    "geopackage": (lambda _, path: with_tile_pages_overwritten(path), "cannot be read here"),
}


def _counts(row: dict) -> dict:
    """What a row says of a bundle's tiles and bytes."""
    return {f: row[f] for f in COUNTS}


def _cli(*args: object) -> tuple[int, dict]:
    result = CliRunner().invoke(main, [*map(str, args), "--json", "--workers", "1"])
    assert result.exit_code in (0, 1), result.output  # never a usage error, never a crash
    return result.exit_code, json.loads(result.stdout)


def _rebuilt(cache: BuiltCache, damaged: Path, status: Path) -> tuple[dict[str, dict], list]:
    """The rows and problems of ``cachestatus rebuild`` of the damaged copy: exit 0."""
    code, report = _cli("rebuild", damaged, "--status", status, "--sizes", *cache.cli)
    assert code == 0, report
    return task_rows(status), report["problems"]


@pytest.mark.parametrize("kind", sorted(CONTAINER_DAMAGE))
def test_a_damaged_container_gives_corrupt_rows(builds: Builds, cache, kind, tmp_path):
    change, detail = CONTAINER_DAMAGE[kind]
    damaged = linked_copy(cache.path, tmp_path / cache.path.name, change)
    rows, problems = _rebuilt(cache, damaged, tmp_path / "s.gdb")
    corrupt = {name for name, row in rows.items() if row["status"] == "CORRUPT"}
    assert corrupt == {p["bundle"] for p in problems}
    if kind not in SQLITE:  # there, the bundles whose tiles lay in the pages
        assert corrupt == {BUNDLE}
    assert corrupt and all(detail in rows[name]["detail"] for name in corrupt)
    healthy = builds.rebuild(kind, sizes=True).rows
    assert set(rows) == set(healthy)
    for name in set(rows) - corrupt:
        assert _counts(rows[name]) == _counts(healthy[name]), name
    code, checked = _cli("verify", damaged, *cache.cli)
    assert code == 1 and corrupt <= {p["bundle"] for p in checked["problems"]}


def test_a_web_page_stored_as_a_tile_is_named_by_verify(builds: Builds, cache, kind, tmp_path):
    """The same damage in every container: a 502 page written over one tile's bytes, where
    the container keeps them (a bundle, a zip entry, an SQLite page, an archive, a file)."""
    tile = TILES[TILE]
    page = PAGE + b" " * (len(tile) - len(PAGE))
    found: list[Path] = []

    def overwrite(relative: Path, path: Path) -> bytes | None:
        if path.stat().st_size < len(tile):  # most tile files: not read
            return None
        data = path.read_bytes()
        if tile not in data:
            return None
        found.append(relative)
        return data.replace(tile, page)

    damaged = linked_copy(cache.path, tmp_path / cache.path.name, overwrite)
    assert len(found) == 1, found
    code, checked = _cli("verify", damaged, *cache.cli)
    assert code == 1
    named = [(p["bundle"], p.get("tile"), p["kind"]) for p in checked["problems"]]
    if kind in ZIPPED:  # the entry's CRC-32 finds the damage too, once the entry is read
        assert set(named) == {(BUNDLE, ADDRESS, "not-an-image"), (BUNDLE, None, "corrupt")}
        assert any("Bad CRC-32" in p["detail"] for p in checked["problems"])
    else:
        assert named == [(BUNDLE, ADDRESS, "not-an-image")]
        assert checked["totals"]["tiles_checked"] == len(TILES)
    rows, problems = _rebuilt(cache, damaged, tmp_path / "s.gdb")
    healthy = builds.rebuild(kind, sizes=True).rows
    if problems and kind in ZIPPED:  # a rebuild that reads the entry to its end (the size
        # words of a V1 bundle) meets its CRC-32; one that reads its index alone does not
        assert [(p["bundle"], p["kind"]) for p in problems] == [(BUNDLE, "corrupt")]
        assert rows[BUNDLE]["status"] == "CORRUPT" and "Bad CRC-32" in rows[BUNDLE]["detail"]
        rows[BUNDLE] = healthy[BUNDLE]
    else:  # an index, a listing or a directory cannot tell
        assert problems == []
    assert {n: _counts(r) for n, r in rows.items()} == {n: _counts(r) for n, r in healthy.items()}
