"""Tile packages and PMTiles read where they are published: in S3 (moto's server) and over
HTTP (a server that answers ranges), each compared with the local rebuild of the same bytes.

The oracle is the local reader on the same file: the remote rebuild's ``TaskStatus`` rows equal
the local rebuild's, row for row (read with GDAL, :mod:`tests.status_rows`); damaged or replaced
objects read as the local file with the same bytes reads. The HTTP server counts what it sent:
a package is read by ranges, never downloaded whole.
"""

from __future__ import annotations

import math
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cachestatus import formats, operations
from cachestatus.cli import main
from cachestatus.errors import BundleChanging, CorruptBundle, InvalidCacheConfig, UsageError
from cachestatus.formats.base import BundleFile
from cachestatus.formats.bytesource import ZIP_BUFFER, ZipArchive
from tests.builders import build, tpkx_root_json, zip_tpk, zip_tpkx
from tests.helpers import MemorySource, mapproxy_v2_cache
from tests.http_range import RangeServer, serve
from tests.remote import S3Server, make_bucket
from tests.status_rows import task_rows

pytest.importorskip("obstore", reason="remote caches need the cloud extra (obstore)")

DATA = Path(__file__).parent / "data"
USA = DATA / "esri" / "Usa.tpkx"
REALWORLD_PMTILES = sorted((DATA / "realworld" / "pmtiles").glob("*.pmtiles"))
BUCKET = "published-files"


@pytest.fixture(scope="module")
def http_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RangeServer]:
    """A range-answering HTTP server over a folder of its own (``server.root``)."""
    yield from serve(tmp_path_factory.mktemp("served"))


@pytest.fixture
def s3_bucket(s3_env: S3Server) -> S3Server:
    """The environment pointed at moto's S3 server, with :data:`BUCKET` made."""
    if BUCKET not in [b["Name"] for b in s3_env.client().list_buckets()["Buckets"]]:
        make_bucket(s3_env, BUCKET)
    return s3_env


def _tiles(levels: tuple[int, ...], body: Callable[[int, int, int], bytes]) -> dict:
    return {(lv, r, c): body(lv, r, c) for lv in levels for r in range(2**lv) for c in range(2**lv)}


def _built(kind: str, root: Path) -> Path:
    """A package or archive written by an independent writer (MapProxy, the pmtiles package)."""
    tiles = _tiles((2, 3), lambda lv, r, c: bytes([lv, r, c]) * (20 + r * c))
    return build(kind, root / kind, tiles, levels=5).path


#: The files compared: the repository's real fixtures, and packages written by other tools.
FILES: dict[str, Callable[[Path], Path]] = {
    "Usa.tpkx": lambda _: USA,
    **{path.name: (lambda _, p=path: p) for path in REALWORLD_PMTILES},
    "built.tpk": lambda root: _built("tpk", root),
    "built.tpkx": lambda root: _built("tpkx", root),
    "built.pmtiles": lambda root: _built("pmtiles", root),
}


def _publish(where: str, local: Path, name: str, servers: dict[str, Any]) -> str:
    """``local``'s bytes published as ``name`` in S3 or on the HTTP server; its URL."""
    if where == "s3":
        servers["s3"].client().put_object(
            Bucket=BUCKET, Key=f"files/{name}", Body=local.read_bytes()
        )
        return f"s3://{BUCKET}/files/{name}"
    server: RangeServer = servers["http"]
    shutil.copyfile(local, server.root / name)
    return f"{server.url}/{name}"


@pytest.fixture(params=["s3", "http"])
def publish(request, tmp_path, monkeypatch) -> Callable[[Path, str], str]:
    """Publishes a file in S3 or over HTTP (each test runs with both); returns its URL."""
    servers: dict[str, Any] = {}
    if request.param == "s3":
        servers["s3"] = request.getfixturevalue("s3_bucket")
    else:
        servers["http"] = request.getfixturevalue("http_files")
    monkeypatch.chdir(tmp_path)  # a remote cache's default status store goes here
    return lambda local, name: _publish(request.param, local, name, servers)


def _rows(status: str | None) -> dict[str, dict[str, Any]]:
    """The rows without what differs between any two runs (the job's ID), NaN as None."""
    return {
        bundle: {
            field: None if isinstance(value, float) and math.isnan(value) else value
            for field, value in row.items()
            if field != "jobID"
        }
        for bundle, row in task_rows(status).items()
    }


@pytest.mark.parametrize("name", list(FILES))
def test_a_remote_rebuild_writes_the_rows_of_the_local_one(publish, tmp_path, name):
    local = FILES[name](tmp_path / "built")
    url = publish(local, name)
    here = operations.rebuild(local, tmp_path / "local.gdb", workers=1)
    there = operations.rebuild(url, workers=1)
    assert there.format == here.format
    # The default store of a remote file is written locally, named after the file.
    assert there.status_path == str(tmp_path / f"{Path(name).stem}.Status.gdb")
    assert _rows(there.status_path) == _rows(here.status_path)
    assert len(_rows(there.status_path)) == len(_rows(here.status_path)) > 0
    assert [lv.tiles_present for lv in there.levels] == [lv.tiles_present for lv in here.levels]


def test_the_cli_reads_a_package_over_http_and_from_vsis3(s3_bucket, http_files, tmp_path):
    """The same package from its https-style URL and from GDAL's /vsis3/ spelling."""
    shutil.copyfile(USA, http_files.root / "Usa.tpkx")
    s3_bucket.client().put_object(Bucket=BUCKET, Key="gdal/Usa.tpkx", Body=USA.read_bytes())
    for url, store in [
        (f"{http_files.url}/Usa.tpkx", "http.gdb"),
        (f"/vsis3/{BUCKET}/gdal/Usa.tpkx", "vsis3.gdb"),
    ]:
        result = CliRunner().invoke(main, ["rebuild", url, "--status", str(tmp_path / store)])
        assert result.exit_code == 0, result.output
    assert _rows(tmp_path / "http.gdb") == _rows(tmp_path / "vsis3.gdb")


def test_a_package_is_read_by_ranges_never_downloaded_whole(http_files, tmp_path):
    """A package whose bundles hold large tiles: a rebuild fetches the zip's end record and
    central directory, then each bundle's local header, header and index (131,136 bytes, in
    one request of :data:`~cachestatus.formats.bytesource.ZIP_BUFFER` bytes), never a tile."""
    extent = (-2.0e7, -2.0e7, 2.0e7, 2.0e7)
    tiles = _tiles((1, 2), lambda lv, r, c: bytes([r, c]) * 150_000)  # 20 tiles of 300 KB
    folder = mapproxy_v2_cache(tmp_path / "cache", tiles, levels=3, extent=extent)
    package = zip_tpkx(folder, tmp_path / "big.tpkx", tpkx_root_json(3, extent))
    shutil.copyfile(package, http_files.root / "big.tpkx")
    size = package.stat().st_size
    with zipfile.ZipFile(package) as z:
        bundles = sum(1 for name in z.namelist() if name.endswith(".bundle"))
    http_files.reset()
    report = operations.rebuild(f"{http_files.url}/big.tpkx", tmp_path / "s.gdb", workers=1)
    assert report.totals.tiles_present == len(tiles)
    # Per bundle at most two index reads (one buffered read, and once more where the run
    # looks at a bundle twice), plus the object's HEAD and the zip's end and directory.
    assert http_files.bytes_sent <= 2 * bundles * ZIP_BUFFER + 64 * 1024
    assert http_files.bytes_sent < 0.2 * size, (http_files.bytes_sent, size)
    assert http_files.requests <= 2 * bundles + 6
    print(
        f"big.tpkx: {http_files.bytes_sent:,} of {size:,} bytes in {http_files.requests} requests"
    )


@pytest.mark.parametrize(("tile_size", "share"), [(300_000, 0.05), (10_000, 1.0)])
def test_a_v1_tpk_in_s3_is_read_by_ranges(s3_bucket, tmp_path, monkeypatch, tile_size, share):
    """A ``.tpk`` of Compact V1 bundles in moto's S3, counted at the storage layer: the zip's
    directory, each ``.bundlx`` and the size words of the live slots. Words of large tiles
    are asked for alone (their bodies never fetched: a few % of the package); those of small
    tiles share requests with the bytes between them, never more than the package in all.
    The rows are the local rebuild's."""
    from cachestatus.storage.objects import ObjectStorage

    extent = (-2.0e7, -2.0e7, 2.0e7, 2.0e7)
    tiles = _tiles((1, 2, 3), lambda lv, r, c: bytes([lv, r, c]) * (tile_size // 3))
    folder = mapproxy_v2_cache(tmp_path / "cache", tiles, levels=4, extent=extent, version=1)
    package = zip_tpk(folder, tmp_path / "v1.tpk")
    s3_bucket.client().put_object(Bucket=BUCKET, Key="v1/v1.tpk", Body=package.read_bytes())
    fetched: list[int] = []
    real = ObjectStorage.read_timed

    def counted(self, key, start, length, stamp=None):
        answer = real(self, key, start, length, stamp)
        fetched.append(len(answer[0]))
        return answer

    monkeypatch.setattr(ObjectStorage, "read_timed", counted)
    there = operations.rebuild(f"s3://{BUCKET}/v1/v1.tpk", tmp_path / "s3.gdb", workers=1)
    monkeypatch.undo()
    here = operations.rebuild(package, tmp_path / "local.gdb", workers=1)
    assert there.totals.tiles_present == len(tiles)
    assert _rows(there.status_path) == _rows(here.status_path)
    size = package.stat().st_size
    assert sum(fetched) < share * size, (sum(fetched), size)
    print(f"v1.tpk: {sum(fetched):,} of {size:,} bytes in {len(fetched)} reads")


def test_usa_tpkx_is_read_by_ranges(http_files):
    """Esri's Usa.tpkx (1.6 MB, six bundles of 137-549 KB): a reader fetches the zip's
    directory, root.json and each bundle's header and index, one request each."""
    shutil.copyfile(USA, http_files.root / "Usa.tpkx")
    http_files.reset()
    with formats.open_cache(f"{http_files.url}/Usa.tpkx") as reader:
        for level in reader.scheme.levels:
            for bundle in reader.list_bundles(level):
                assert isinstance(bundle, BundleFile)
                reader.read_bundle(bundle)
    # HEAD; the end record, the ZIP64 locator before it, the central directory; root.json;
    # one read per bundle.
    assert http_files.requests == 1 + 3 + 1 + 6
    # Each of those seven reads is at most one buffer; the bundles are small and side by side,
    # so the buffered reads run on from one bundle's index into the next: 58 % of the file.
    assert http_files.bytes_sent <= 7 * ZIP_BUFFER + 2048
    assert http_files.bytes_sent < 0.6 * USA.stat().st_size


def _outcome(run: Callable[[], Any], local: str, url: str) -> tuple[str, Any]:
    """What a rebuild gave: its rows, or its error's type and message (naming the file as
    ``<file>``, whatever its path or URL)."""
    try:
        report = run()
    except UsageError as exc:
        return type(exc).__name__, str(exc).replace(url, "<file>").replace(local, "<file>")
    return "rows", _rows(report.status_path)


@pytest.mark.parametrize(
    ("name", "keep"),
    [
        ("Usa.tpkx", 1_000_000),  # its central directory cut off: not a readable zip
        ("Usa.tpkx", 0),  # a 0-byte object
        ("leaf.pmtiles", 200),  # the leaf directory cut off
        ("single_tile_brotli.pmtiles", 100),  # the header cut
    ],
)
def test_a_truncated_object_reads_as_the_local_file_of_the_same_bytes(
    publish, tmp_path, name, keep
):
    source = USA if name == "Usa.tpkx" else DATA / "realworld" / "pmtiles" / name
    local = tmp_path / "cut" / name
    local.parent.mkdir()
    local.write_bytes(source.read_bytes()[:keep])
    url = publish(local, name)
    here = _outcome(
        lambda: operations.rebuild(local, tmp_path / "l.gdb", workers=1, format_hint=None),
        str(local),
        url,
    )
    there = _outcome(
        lambda: operations.rebuild(url, tmp_path / "r.gdb", workers=1), str(local), url
    )
    assert there == here


def test_a_truncated_object_exits_2_with_one_line(publish, tmp_path):
    local = tmp_path / "Usa.tpkx"
    local.write_bytes(USA.read_bytes()[:1_000_000])
    url = publish(local, "cut.tpkx")
    result = CliRunner().invoke(main, ["rebuild", url, "--status", str(tmp_path / "s.gdb")])
    assert result.exit_code == 2
    assert "not a readable zip" in result.output
    assert len(result.output.strip().splitlines()) == 1


def _read_all(reader: formats.CacheReader) -> list[str]:
    """Each bundle's outcome: ``read``, or the kind of damage it raised."""
    outcomes = []
    for level in reader.scheme.levels:
        for bundle in reader.list_bundles(level):
            assert isinstance(bundle, BundleFile)
            try:
                reader.read_bundle(bundle)
                outcomes.append("read")
            except BundleChanging:
                outcomes.append("IN_PROGRESS")
            except CorruptBundle:
                outcomes.append("CORRUPT")
    return outcomes


def _other_usa() -> bytes:
    """Usa.tpkx with another root.json of the same length: the same members at the same
    offsets, other bytes (a package rewritten in place)."""
    data = bytearray(USA.read_bytes())
    at = data.index(b'"tileInfo"')
    data[at : at + 10] = b'"tileInfO"'
    return bytes(data)


def test_a_package_replaced_while_read_makes_its_bundles_in_progress(publish, tmp_path):
    """Replaced after the reader opened it (its ETag, or its size and time, moved): every
    bundle read afterwards is IN_PROGRESS, remote as local."""
    local = tmp_path / "Usa.tpkx"
    local.write_bytes(USA.read_bytes())
    url = publish(local, "moving.tpkx")
    with formats.open_cache(local) as here, formats.open_cache(url) as there:
        assert _read_all(here) == _read_all(there) == ["read"] * 6
        with open(local, "r+b") as f:  # rewritten in place: the open descriptor sees it
            f.write(_other_usa())
        publish(local, "moving.tpkx")
        assert _read_all(here) == _read_all(there) == ["IN_PROGRESS"] * 6


def test_a_pmtiles_replaced_before_its_directories_are_read_is_refused(publish, tmp_path):
    """An archive whose ETag moved between its header and its directories is refused with a
    one-line message, never read as a mix of two states."""
    source = DATA / "realworld" / "pmtiles" / "leaf.pmtiles"
    local = tmp_path / "leaf.pmtiles"
    local.write_bytes(source.read_bytes())
    url = publish(local, "moving.pmtiles")
    with formats.open_cache(url) as reader:
        local.write_bytes(source.read_bytes() + b"\0")
        publish(local, "moving.pmtiles")
        with pytest.raises(InvalidCacheConfig, match=r"moving\.pmtiles: replaced since"):
            reader.list_level(reader.scheme.levels[-1])


def test_a_zip_over_a_source_that_changes_while_listed_is_refused():
    class Replaced(MemorySource):
        def read(self, offset: int, length: int) -> bytes:
            raise BundleChanging("replaced since it was listed")

    with pytest.raises(
        InvalidCacheConfig, match=r"x\.tpkx: replaced since it was listed; its member"
    ):
        ZipArchive("x.tpkx", Replaced(USA.read_bytes()))
    archive = ZipArchive("usa", MemorySource(USA.read_bytes()))
    with zipfile.ZipFile(USA) as z:
        assert list(archive.entries) == z.namelist()
        member = archive.member("root.json")
        assert member.read(0, 100) == z.read("root.json")[:100]
        assert member.version == archive.version == (USA.stat().st_size, 0)
