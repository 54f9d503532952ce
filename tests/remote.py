"""Servers the remote tests read from: moto's S3 server and a range-answering HTTP server, both
on 127.0.0.1 and a free port, started by the tests themselves."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.http_range import RangeServer, serve

#: The bucket files are uploaded to.
BUCKET = "remote-files"
#: What obstore and boto3 need to reach moto: its endpoint is added by :func:`moto_s3`.
_S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


class S3:
    """moto's S3 server, with one bucket: upload files and name them by URL."""

    def __init__(self, endpoint: str) -> None:
        import boto3

        self.endpoint = endpoint
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        self.client.create_bucket(Bucket=BUCKET)

    def put(self, key: str, data: bytes) -> str:
        """Upload ``data`` as ``key``; its ``s3://`` URL."""
        self.client.put_object(Bucket=BUCKET, Key=key, Body=data)
        return f"s3://{BUCKET}/{key}"


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3]:
    """moto's threaded S3 server for the session; the AWS environment variables point at it
    while it runs."""
    pytest.importorskip("obstore", reason="the remote tests need the cloud extra (obstore)")
    server_module = pytest.importorskip("moto.server", reason="moto[server] is a test extra")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {name: os.environ.get(name) for name in (*_S3_ENV, "AWS_ENDPOINT_URL")}
    os.environ.update(_S3_ENV, AWS_ENDPOINT_URL=endpoint)
    try:
        yield S3(endpoint)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


@pytest.fixture(scope="session")
def http_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RangeServer]:
    """A :class:`~tests.http_range.RangeServer` serving a folder of its own for the session:
    tests copy files into ``server.root`` and read them at ``server.url``."""
    pytest.importorskip("obstore", reason="the remote tests need the cloud extra (obstore)")
    root: Path = tmp_path_factory.mktemp("served")
    yield from serve(root)
