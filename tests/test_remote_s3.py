"""Caches in S3, against moto's S3 server: each remote rebuild equals the local rebuild of the
same files, row for row; GDAL reads over ``/vsis3/`` a tile the status counts; damage, a bundle
replaced while the scan runs, ``Conf.xml``, throttling, and the refusals."""

from __future__ import annotations

import gc
import json
import logging
import pickle
import shutil
import sys
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cachestatus.cli import main
from cachestatus.errors import BundleChanging, UsageError
from cachestatus.formats import BundleFile, open_cache
from cachestatus.formats.arcgis_layout import ObjectLayout
from cachestatus.storage import ObjectStorage, parse_location
from tests.builders import build
from tests.helpers import SAMPLE_CACHE
from tests.remote import S3Server, Throttling, make_bucket, point_at, upload
from tests.status_rows import task_rows
from tests.test_verify import _png

#: Columns that may differ between a local and a remote rebuild of the same files: the job, and
#: the modification time (a file's, or the object's upload time).
DIFFERENT = {"jobID", "modified"}


logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log


def run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def comparable(status: Path) -> dict[str, dict[str, object]]:
    """The rows of ``status`` without what may differ; NaN (not counted) as ``None``."""
    rows = task_rows(status)
    return {
        name: {k: None if v != v else v for k, v in row.items() if k not in DIFFERENT}
        for name, row in rows.items()
    }


def tiles() -> dict[tuple[int, int, int], bytes]:
    """Tiles over several bundles of level 8 and a few at level 3."""
    rng = np.random.default_rng(12)
    keys = [(3, 1, 2), (3, 5, 6), (8, 0, 0), (8, 3, 130), (8, 129, 7), (8, 200, 255), (8, 131, 131)]
    return {key: _png(rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)) for key in keys}


@pytest.fixture(scope="module")
def bucket(s3: S3Server) -> str:
    return make_bucket(s3, "remote-caches")


def rebuild_both(local: Path, url: str, work: Path) -> tuple[Path, Path]:
    """The status of ``local`` rebuilt from the disk and from ``url``; their stores."""
    code, _, err = run("rebuild", local, "--status", work / "local.gdb")
    assert code == 0, err
    code, _, err = run("rebuild", url)
    assert code == 0, err
    return work / "local.gdb", work / f"{parse_location(url).cache_name}.Status.gdb"


def test_locations_parse_every_spelling():
    assert parse_location("/work/cache") is None and parse_location("C:\\cache") is None
    s3_url = parse_location("s3://bkt/arcgiscache/Svc/Layers/")
    assert (s3_url.scheme, s3_url.bucket, s3_url.key) == ("s3", "bkt", "arcgiscache/Svc/Layers")
    assert s3_url.cache_name == "Svc" and s3_url.name == "Layers"
    assert parse_location("/vsis3/bkt/arcgiscache/Svc/Layers") == s3_url
    abfs = parse_location("abfs://tiles@acct.dfs.core.windows.net/a/b")
    assert (abfs.scheme, abfs.bucket, abfs.account, abfs.key) == ("az", "tiles", "acct", "a/b")
    assert parse_location("/vsiaz/tiles/a/b").url == "az://tiles/a/b"
    assert parse_location("/vsigs/b/k").url == "gs://b/k"
    http = parse_location("/vsicurl/https://example.com:8443/t/world.pmtiles")
    assert (http.scheme, http.bucket, http.key) == ("https", "example.com:8443", "t/world.pmtiles")
    assert parse_location("s3://b/k", anon=True).anon
    for bad in ("s3:///key", "ftp://host/x", "/vsicurl/ftp://x/y", "abfs://c@nowhere/x"):
        with pytest.raises(UsageError):
            parse_location(bad)


def test_storage_pickles_without_a_secret(s3_env, bucket, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-ship-me")
    storage = ObjectStorage(parse_location(f"s3://{bucket}/x"))
    list(storage.list())  # the client is built
    data = pickle.dumps(storage)
    assert b"do-not-ship-me" not in data
    assert pickle.loads(data).location == storage.location


@pytest.mark.parametrize("kind", ["compact-v2", "compact-v1"])
def test_remote_rebuild_of_a_mapproxy_cache_equals_the_local_one(s3_env, bucket, in_tmp, kind):
    local = build(kind, in_tmp / "built", tiles(), levels=10).path
    url = upload(s3_env, local, bucket, f"arcgiscache/{kind}/Layers")
    local_store, remote_store = rebuild_both(local, url, in_tmp)
    rows = comparable(local_store)
    assert sum(row["tilesPresent"] for row in rows.values()) == len(tiles())
    assert comparable(remote_store) == rows


def test_remote_rebuild_of_esri_sample_equals_the_local_one(s3_env, bucket, in_tmp):
    upload(s3_env, SAMPLE_CACHE, bucket, "arcgiscache/Sample/Layers")
    code, _, err = run("rebuild", SAMPLE_CACHE, "--status", in_tmp / "local.gdb")
    assert code == 0, err
    code, out, err = run("rebuild", f"/vsis3/{bucket}/arcgiscache/Sample/Layers", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["cache"] == f"/vsis3/{bucket}/arcgiscache/Sample/Layers"
    assert doc["totals"]["requests_retried"] == 0
    assert doc["status_path"] == str(in_tmp / "Sample.Status.gdb")
    assert comparable(in_tmp / "Sample.Status.gdb") == comparable(in_tmp / "local.gdb")


def test_gdal_reads_over_vsis3_a_tile_the_status_counts(s3_env, bucket, in_tmp, monkeypatch):
    rasterio = pytest.importorskip("rasterio")
    url = upload(s3_env, SAMPLE_CACHE, bucket, "gdal/Sample/Layers")
    code, _, err = run("rebuild", url)
    assert code == 0, err
    rows = task_rows(in_tmp / "Sample.Status.gdb")
    assert rows["L02/R0000C0000"]["tilesPresent"] == 16
    env = {
        "AWS_S3_ENDPOINT": f"{s3_env.host}:{s3_env.port}",
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }
    path = f"/vsis3/{bucket}/gdal/Sample/Layers/conf.xml"
    with rasterio.Env(**env):
        with rasterio.open(path) as ds:
            # The dataset is the deepest LOD; level 2 (4 x 4 tiles) is one of its overviews.
            level2 = ds.overviews(1).index(ds.width // (4 * 256))
        with rasterio.open(path, overview_level=level2) as ds:
            assert ds.width == 4 * 256
            block = ds.read(1, window=((0, 256), (0, 256)))
    assert block.shape == (256, 256) and block.any()


def test_conf_xml_in_another_case_is_found(s3_env, bucket, in_tmp):
    copy = in_tmp / "Sample"
    shutil.copytree(SAMPLE_CACHE, copy)
    (copy / "conf.xml").rename(copy / "Conf.xml")
    url = upload(s3_env, copy, bucket, "cased/Sample")
    code, _, err = run("rebuild", url)
    assert code == 0, err
    code, _, err = run("rebuild", SAMPLE_CACHE, "--status", in_tmp / "local.gdb")
    assert comparable(in_tmp / "Sample.Status.gdb") == comparable(in_tmp / "local.gdb")


def test_empty_and_truncated_bundles_are_corrupt(s3_env, bucket, in_tmp):
    url = upload(s3_env, SAMPLE_CACHE, bucket, "damaged/Sample")
    client = s3_env.client()
    layers = "damaged/Sample/_alllayers"
    client.put_object(Bucket=bucket, Key=f"{layers}/L00/R0000C0000.bundle", Body=b"")
    whole = (SAMPLE_CACHE / "_alllayers/L01/R0000C0000.bundle").read_bytes()
    client.put_object(Bucket=bucket, Key=f"{layers}/L01/R0000C0000.bundle", Body=whole[:1000])
    code, _, err = run("rebuild", url)
    assert code == 0, err
    rows = task_rows(in_tmp / "Sample.Status.gdb")
    assert rows["L00/R0000C0000"]["status"] == "CORRUPT"
    assert rows["L01/R0000C0000"]["status"] == "CORRUPT"
    assert rows["L02/R0000C0000"]["status"] != "CORRUPT"


def test_a_bundle_replaced_after_listing_is_in_progress(s3_env, bucket, in_tmp, monkeypatch):
    url = upload(s3_env, SAMPLE_CACHE, bucket, "replaced/Sample")
    key = "replaced/Sample/_alllayers/L01/R0000C0000.bundle"
    with open_cache(url) as reader:
        (bundle,) = [b for b in reader.list_level(1) if isinstance(b, BundleFile)]
        assert bundle.size == (SAMPLE_CACHE / "_alllayers/L01/R0000C0000.bundle").stat().st_size
        body = (SAMPLE_CACHE / "_alllayers/L02/R0000C0000.bundle").read_bytes()
        s3_env.client().put_object(Bucket=bucket, Key=key, Body=body)
        with pytest.raises(BundleChanging, match="replaced since it was listed"):
            reader.read_bundle(bundle)

    # Through a whole rebuild: the object is replaced once the level is listed.
    url = upload(s3_env, SAMPLE_CACHE, bucket, "replaced2/Sample")
    key = "replaced2/Sample/_alllayers/L01/R0000C0000.bundle"
    listed = ObjectLayout.bundles

    def replacing(self: ObjectLayout, level: int, folder: str) -> Iterator[object]:
        found = list(listed(self, level, folder))
        if level == 1:
            s3_env.client().put_object(Bucket=bucket, Key=key, Body=body)
        yield from found

    monkeypatch.setattr(ObjectLayout, "bundles", replacing)
    code, _, err = run("rebuild", url, "--workers", "1")
    assert code == 0, err
    rows = task_rows(in_tmp / "Sample.Status.gdb")
    assert rows["L01/R0000C0000"]["status"] == "IN_PROGRESS"
    assert rows["L02/R0000C0000"]["status"] != "IN_PROGRESS"


def test_throttling_answers_are_retried_and_counted(s3_env, bucket, in_tmp, monkeypatch):
    url = upload(s3_env, SAMPLE_CACHE, bucket, "throttled/Sample")
    with Throttling(s3_env, slow=3) as proxy:
        point_at(monkeypatch, f"http://127.0.0.1:{proxy.server_address[1]}")
        code, out, err = run("rebuild", url, "--json")
    assert code == 0, err
    assert json.loads(out)["totals"]["requests_retried"] == 3
    assert "3 requests retried after throttling" in err
    code, _, _ = run("rebuild", SAMPLE_CACHE, "--status", in_tmp / "local.gdb")
    assert comparable(in_tmp / "Sample.Status.gdb") == comparable(in_tmp / "local.gdb")


def test_without_the_cloud_extra_a_url_exits_2_naming_it(monkeypatch, in_tmp):
    monkeypatch.setitem(sys.modules, "obstore", None)
    code, _, err = run("rebuild", "s3://bucket/arcgiscache/Svc/Layers")
    assert code == 2
    assert "pip install 'cachestatus[cloud]'" in err


def test_sqlite_caches_by_url_exit_2(s3_env, bucket, in_tmp):
    code, _, err = run("rebuild", f"s3://{bucket}/world.mbtiles")
    assert code == 2 and "copy the file locally first (SQLite needs a file)" in err
    code, _, err = run("info", f"s3://{bucket}/world.gpkg", "--format-hint", "geopackage")
    assert code == 2 and "SQLite needs a file" in err


def test_a_folder_over_http_exits_2_saying_why(s3_env, bucket, in_tmp):
    code, _, err = run("info", f"http://127.0.0.1:{s3_env.port}/{bucket}/arcgiscache/Sample")
    assert code == 2 and "nothing can be listed" in err


def test_reads_are_kept_in_flight_by_default_on_object_storage(s3_env, bucket, in_tmp, monkeypatch):
    """A remote cache keeps several bundle reads waiting on the network at once (the storage's
    default), and the rows are those of the local rebuild."""
    local = build("compact-v2", in_tmp / "many", tiles()).path
    url = upload(s3_env, local, bucket, "in-flight/Layers")
    active, most = 0, 0
    lock = threading.Lock()
    read_timed = ObjectStorage.read_timed

    def counting(self, *args, **kwargs):
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        try:
            return read_timed(self, *args, **kwargs)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(ObjectStorage, "read_timed", counting)
    assert open_cache(url).io_concurrency == 64
    code, _, err = run("rebuild", url, "--workers", 1, "--status", in_tmp / "remote.gdb")
    assert code == 0, err
    assert most > 1
    code, _, err = run("rebuild", local, "--status", in_tmp / "local.gdb", "--workers", 1)
    assert code == 0, err
    assert comparable(in_tmp / "remote.gdb") == comparable(in_tmp / "local.gdb")


@pytest.mark.parametrize("kind", ["compact-v2", "compact-v1", "exploded", "xyz"])
def test_a_cache_root_is_listed_once_at_open(s3_env, bucket, in_tmp, monkeypatch, kind):
    """Opening a folder cache in S3 lists its root once (one ``LIST`` with a delimiter, as the
    server logs it) and reads ``conf.xml`` once (where there is one): what detection found is
    what the reader reads."""
    from cachestatus import open_cache

    local = build(kind, in_tmp / "built", tiles(), levels=10).path
    url = upload(s3_env, local, bucket, f"listed/{kind}/Layers")
    with Throttling(s3_env, slow=0) as proxy:
        point_at(monkeypatch, f"http://127.0.0.1:{proxy.server_address[1]}")
        with open_cache(url) as reader:
            assert reader.name == kind
            opened = list(proxy.requests)
    root = f"prefix=listed%2F{kind}%2FLayers%2F"
    lists = [path for method, path in opened if method == "GET" and "list-type=2" in path]
    assert len([path for path in lists if path.endswith(root) or f"{root}&" in path]) == 1, opened
    confs = [path for method, path in opened if method == "GET" and path.endswith("/conf.xml")]
    assert len(confs) == (kind != "xyz"), opened


def _storages() -> list[ObjectStorage]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, ObjectStorage)]


def test_nothing_of_a_remote_cache_is_kept_once_it_is_closed(s3_env, bucket, in_tmp):
    """What detection found of a location (its layout, listing and configuration) lives as long
    as the cache opened there, not in a process-wide cache that holds its client."""
    local = build("compact-v2", in_tmp / "built", tiles(), levels=10).path
    url = upload(s3_env, local, bucket, "kept/compact-v2")
    earlier = {id(o) for o in _storages()}
    opened = []
    for _ in range(2):
        with open_cache(url) as reader:
            assert reader.name == "compact-v2"
            opened += [weakref.ref(o) for o in _storages() if id(o) not in earlier]
        del reader
    assert opened
    gc.collect()
    assert [ref() for ref in opened if ref() is not None] == []
