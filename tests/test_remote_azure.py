"""Caches in Azure Blob Storage, against Azurite (Microsoft's emulator, from npm): each remote
rebuild equals the local rebuild of the same files, row for row, with the credentials set in the
environment as a user sets them for Azure's own tools.

``.ci/run`` installs and starts Azurite and sets ``CACHESTATUS_AZURITE=1``: then a dead port
fails these tests. Without it they skip, saying how to start Azurite.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cachestatus.errors import BundleChanging
from cachestatus.formats import BundleFile, open_cache
from tests.builders import build
from tests.helpers import SAMPLE_CACHE
from tests.status_rows import task_rows
from tests.test_remote_s3 import comparable, run, tiles

pytest.importorskip("obstore", reason="remote caches need the cloud extra (obstore)")

HOST, PORT = "127.0.0.1", 10000
#: Azurite's well-known development account and key (published in its documentation).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
USA = Path(__file__).parent / "data" / "esri" / "Usa.tpkx"
CONTAINER = "caches"
#: Set by .ci/run once Azurite answers: a dead port is then a failure, not a skip.
REQUIRED = os.environ.get("CACHESTATUS_AZURITE") == "1"
HOW = (
    "npm install azurite@3.35.0, then start "
    "node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort 10000 "
    "--inMemoryPersistence --skipApiVersionCheck; or run .ci/run, which does both"
)


def connection_string(port: int = PORT) -> str:
    """The connection string Azurite documents, with its blob endpoint on ``port``."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint=http://{HOST}:{port}/{ACCOUNT};"
    )


def _unavailable(message: str) -> None:
    if REQUIRED:
        pytest.fail(f"{message}; CACHESTATUS_AZURITE=1 says Azurite is running")
    pytest.skip(f"{message} ({HOW})")


@pytest.fixture(scope="module")
def container() -> Iterator[Any]:
    """A container of its own in Azurite, for the module; its ``ContainerClient``."""
    try:
        socket.create_connection((HOST, PORT), timeout=2).close()
    except OSError:
        _unavailable(f"nothing answers on {HOST}:{PORT}, where Azurite listens")
    try:
        from azure.storage.blob import BlobServiceClient
    except ImportError:
        _unavailable("azure-storage-blob is not installed (the test extra)")
    service = BlobServiceClient.from_connection_string(connection_string())
    client = service.get_container_client(f"{CONTAINER}-{os.getpid()}")
    client.create_container()  # obstore cannot create containers
    try:
        yield client
    finally:
        client.delete_container()


@pytest.fixture
def az_env(container: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The environment pointed at Azurite by a connection string (none of the caller's Azure
    settings); the working folder is ``tmp_path``."""
    for name in list(os.environ):
        if name.startswith(("AZURE_", "AZURITE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string())
    monkeypatch.chdir(tmp_path)
    return container


def upload(container: Any, local: Path, prefix: str) -> str:
    """``local`` (a file, or every file under a folder) put under ``prefix``; the ``az://`` URL
    of what was put."""
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    for path in files:
        name = path.name if path == local else path.relative_to(local).as_posix()
        container.upload_blob(f"{prefix}/{name}", path.read_bytes(), overwrite=True)
    key = f"{prefix}/{local.name}" if local.is_file() else prefix
    return f"az://{container.container_name}/{key}"


def rows_of(cache: object, status: Path) -> dict[str, dict[str, object]]:
    """The comparable rows of ``cache`` rebuilt into ``status``."""
    code, _, err = run("rebuild", cache, "--status", status)
    assert code == 0, err
    return comparable(status)


@pytest.fixture(scope="module")
def mapproxy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Compact V2 cache written by MapProxy."""
    return build("compact-v2", tmp_path_factory.mktemp("built"), tiles(), levels=10).path


@pytest.mark.parametrize(
    "spelling",
    [
        "az://{container}/{key}",
        "abfs://{container}@" + ACCOUNT + ".dfs.core.windows.net/{key}",
        "/vsiaz/{container}/{key}",
    ],
)
def test_a_mapproxy_cache_in_azure_rebuilds_as_the_local_one(
    az_env, mapproxy_cache, tmp_path, spelling
):
    upload(az_env, mapproxy_cache, "arcgiscache/Built/Layers")
    url = spelling.format(container=az_env.container_name, key="arcgiscache/Built/Layers")
    local = rows_of(mapproxy_cache, tmp_path / "local.gdb")
    assert sum(row["tilesPresent"] for row in local.values()) == len(tiles())
    assert rows_of(url, tmp_path / "remote.gdb") == local


def test_usa_tpkx_in_azure_rebuilds_as_the_local_one(az_env, tmp_path):
    url = upload(az_env, USA, "files")
    local = rows_of(USA, tmp_path / "local.gdb")
    assert sum(row["tilesPresent"] for row in local.values()) > 0
    assert rows_of(url, tmp_path / "remote.gdb") == local


def test_an_account_and_key_with_the_emulator_flag_reach_azurite(az_env, monkeypatch, tmp_path):
    url = upload(az_env, SAMPLE_CACHE, "keyed/Sample/Layers")
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", KEY)
    monkeypatch.setenv("AZURE_STORAGE_USE_EMULATOR", "true")
    assert rows_of(url, tmp_path / "remote.gdb") == rows_of(SAMPLE_CACHE, tmp_path / "local.gdb")


class Forwarder:
    """A TCP port of its own that passes every connection on to Azurite, counting them."""

    def __init__(self) -> None:
        self.listener = socket.create_server((HOST, 0))
        self.port: int = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            self.connections += 1
            upstream = socket.create_connection((HOST, PORT))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, target), daemon=True).start()

    def close(self) -> None:
        self.listener.close()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    """Bytes from ``source`` to ``target`` until ``source`` ends."""
    with source:
        try:
            while data := source.recv(65536):
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            target.close()


def test_a_connection_strings_endpoint_is_where_requests_go(az_env, monkeypatch, tmp_path):
    """Azurite on another port, named by the connection string's ``BlobEndpoint``, even with
    the emulator flag set (which alone stands for the default port)."""
    url = upload(az_env, SAMPLE_CACHE, "forwarded/Sample/Layers")
    forwarder = Forwarder()
    try:
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string(forwarder.port))
        monkeypatch.setenv("AZURE_STORAGE_USE_EMULATOR", "true")
        remote = rows_of(url, tmp_path / "remote.gdb")
    finally:
        forwarder.close()
    assert forwarder.connections > 0
    assert remote == rows_of(SAMPLE_CACHE, tmp_path / "local.gdb")


def test_damaged_and_replaced_blobs(az_env, tmp_path):
    """A 0-byte and a truncated blob are CORRUPT; a blob replaced after it was listed fails
    its conditional read (``If-Match`` on Azure's ETag)."""
    url = upload(az_env, SAMPLE_CACHE, "damaged/Sample")
    layers = "damaged/Sample/_alllayers"
    whole = (SAMPLE_CACHE / "_alllayers/L01/R0000C0000.bundle").read_bytes()
    az_env.upload_blob(f"{layers}/L00/R0000C0000.bundle", b"", overwrite=True)
    az_env.upload_blob(f"{layers}/L01/R0000C0000.bundle", whole[:1000], overwrite=True)
    code, _, err = run("rebuild", url, "--status", tmp_path / "damaged.gdb")
    assert code == 0, err
    rows = task_rows(tmp_path / "damaged.gdb")
    assert rows["L00/R0000C0000"]["status"] == "CORRUPT"
    assert rows["L01/R0000C0000"]["status"] == "CORRUPT"
    assert rows["L02/R0000C0000"]["status"] != "CORRUPT"

    az_env.upload_blob(f"{layers}/L01/R0000C0000.bundle", whole, overwrite=True)
    with open_cache(url) as reader:
        (bundle,) = [b for b in reader.list_level(1) if isinstance(b, BundleFile)]
        assert bundle.size == len(whole)
        az_env.upload_blob(f"{layers}/L01/R0000C0000.bundle", whole, overwrite=True)
        with pytest.raises(BundleChanging, match="replaced since it was listed"):
            reader.read_bundle(bundle)
