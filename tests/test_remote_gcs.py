"""Caches in Google Cloud Storage, through obstore's own GCS client: ``gs://`` and ``/vsigs/``
URLs, credentials from the environment (``GOOGLE_BEARER_TOKEN`` here; ``--anon`` sends none),
and ``GOOGLE_BASE_URL`` for a GCS-compatible endpoint.

No GCS emulator speaks the XML API that obstore lists with (fake-gcs-server and
gcp-storage-emulator answer only the JSON API), so the endpoint is moto's S3 server behind
:class:`~tests.remote.GcsFront`: GCS's XML API is S3's (``list-type=2``, ``start-after``,
ranged ``GET``, ETags), apart from object names sent encoded and the ``Bearer`` token, which the
front handles as GCS does. Each remote rebuild equals the local rebuild of the same files, row
for row; a level folder is listed in parts starting at a key, as the Dask workers list it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from cachestatus.storage import ObjectStorage, parse_location
from tests.builders import build
from tests.helpers import SAMPLE_CACHE
from tests.remote import GcsFront, S3Server, make_bucket, upload
from tests.test_remote_s3 import comparable, run, tiles

pytest.importorskip("obstore", reason="remote caches need the cloud extra (obstore)")

TOKEN = "ya29.test-token"
USA = Path(__file__).parent / "data" / "esri" / "Usa.tpkx"


@pytest.fixture(scope="module")
def front(s3: S3Server) -> Iterator[GcsFront]:
    with GcsFront(s3, slow=0) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def bucket(s3: S3Server) -> str:
    return make_bucket(s3, "gcs-caches")


@pytest.fixture
def gs_env(front: GcsFront, monkeypatch: pytest.MonkeyPatch) -> GcsFront:
    """The environment pointed at the GCS endpoint with a token (none of the caller's Google
    settings)."""
    import os

    for name in list(os.environ):
        if name.startswith("GOOGLE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GOOGLE_BASE_URL", f"http://127.0.0.1:{front.server_address[1]}")
    monkeypatch.setenv("GOOGLE_BEARER_TOKEN", TOKEN)
    front.clear()
    return front


def _gs(s3: S3Server, folder: Path, bucket: str, prefix: str, public: bool = False) -> str:
    """``folder`` uploaded at ``prefix``; its ``gs://`` URL."""
    return "gs://" + upload(s3, folder, bucket, prefix, public).removeprefix("s3://")


def _requests(front: GcsFront, bucket: str) -> tuple[list[dict[str, list[str]]], list[str]]:
    """The listing requests' queries and the objects read, as the front saw them."""
    listings, reads = [], []
    for method, target in front.requests:
        parts = urlsplit(target)
        key = unquote(parts.path).removeprefix(f"/{bucket}").lstrip("/")
        if method == "GET" and not key:
            listings.append(parse_qs(parts.query))
        elif method == "GET":
            reads.append(key)
    return listings, reads


@pytest.mark.parametrize("kind", ["compact-v2", "compact-v1"])
def test_gs_rebuild_of_a_mapproxy_cache_equals_the_local_one(s3, bucket, gs_env, in_tmp, kind):
    local = build(kind, in_tmp / "built", tiles(), levels=10).path
    url = _gs(s3, local, bucket, f"arcgiscache/{kind}/Layers")
    code, _, err = run("rebuild", local, "--status", in_tmp / "local.gdb")
    assert code == 0, err
    code, out, err = run("rebuild", url, "--json")
    assert code == 0, err
    store = Path(json.loads(out)["status_path"])
    assert store == in_tmp / f"{kind}.Status.gdb"  # named after the service
    assert comparable(store) == comparable(in_tmp / "local.gdb")

    listings, reads = _requests(gs_env, bucket)
    assert listings and all(q["list-type"] == ["2"] for q in listings)
    assert any(key.endswith(".bundle") for key in reads)
    # The token came from the environment, on every request.
    assert set(gs_env.authorizations) == {f"Bearer {TOKEN}"}


def test_a_tile_package_in_gcs_equals_the_local_one(s3, bucket, gs_env, in_tmp):
    s3.client().put_object(Bucket=bucket, Key="packages/Usa.tpkx", Body=USA.read_bytes())
    code, _, err = run("rebuild", USA, "--status", in_tmp / "local.gdb")
    assert code == 0, err
    code, _, err = run("rebuild", f"/vsigs/{bucket}/packages/Usa.tpkx", "--status", "gs.gdb")
    assert code == 0, err
    assert comparable(in_tmp / "gs.gdb") == comparable(in_tmp / "local.gdb")
    _, reads = _requests(gs_env, bucket)
    assert reads and set(reads) == {"packages/Usa.tpkx"}


def test_anon_sends_no_credentials(s3, bucket, gs_env, in_tmp):
    url = _gs(s3, SAMPLE_CACHE, bucket, "public/Sample/Layers", public=True)
    code, _, err = run("rebuild", url, "--anon", "--status", "anon.gdb")
    assert code == 0, err
    code, _, err = run("rebuild", SAMPLE_CACHE, "--status", "local.gdb")
    assert code == 0, err
    assert comparable(in_tmp / "anon.gdb") == comparable(in_tmp / "local.gdb")
    assert gs_env.requests and set(gs_env.authorizations) == {""}


def test_a_level_is_listed_from_a_key_as_the_workers_list_it(s3, bucket, gs_env):
    names = [f"R{row:04x}C{col:04x}.bundle" for row in range(0, 0x800, 0x80) for col in (0, 0x80)]
    client = s3.client()
    for name in names:
        client.put_object(Bucket=bucket, Key=f"parts/L05/{name}", Body=b"x")
    client.put_object(Bucket=bucket, Key="parts/L05/sub/R0000C0000.bundle", Body=b"x")
    storage = ObjectStorage(parse_location(f"gs://{bucket}/parts"))
    gs_env.clear()
    start, stop = "R0200C", "R0500C"
    found = [e.key.rsplit("/", 1)[-1] for e in storage.list_between("L05", start, stop)]
    assert found == [n for n in names if start <= n < stop]
    listings, _ = _requests(gs_env, bucket)
    assert [q.get("start-after") for q in listings] == [["parts/L05/R0200"]]
