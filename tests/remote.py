"""A real S3 server for the tests: moto's, in this process, on 127.0.0.1 and a free port.

The ``s3`` fixture (session-wide) starts it; ``s3_env`` points the environment at it the way a
user points the AWS tools at an S3-compatible store (``AWS_ENDPOINT_URL`` and keys), ``in_tmp``
makes a temporary folder the working folder (where a remote cache's status goes), and
``upload`` copies a folder into a bucket, key for key. :class:`Throttling` is a proxy in front
of it that records the requests, answers ``503 SlowDown`` to the first few, and can wait before
each (the benchmarks' latency).
"""

from __future__ import annotations

import http.client
import http.server
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

KEYS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


class S3Server(NamedTuple):
    """A running S3 server."""

    host: str
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
            region_name=KEYS["AWS_REGION"],
        )


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """moto's S3 server, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(host, port)
    finally:
        server.stop()


def point_at(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """Point the AWS environment at ``endpoint`` with the test keys (and nothing else of the
    caller's AWS settings)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The environment pointed at the S3 server."""
    point_at(monkeypatch, s3.endpoint)
    return s3


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working folder, where a remote cache's status goes by default."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_bucket(server: S3Server, name: str) -> str:
    """A new, empty bucket."""
    server.client().create_bucket(Bucket=name)
    return name


def upload(server: S3Server, folder: Path, bucket: str, prefix: str) -> str:
    """Every file under ``folder`` put at ``prefix/<its relative path>``; the ``s3://`` URL of
    the prefix."""
    client = server.client()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    return f"s3://{bucket}/{prefix}"


class Throttling(http.server.ThreadingHTTPServer):
    """A proxy to the S3 server that answers its first ``slow`` requests ``503 SlowDown``, and
    waits ``delay`` seconds before forwarding each request (a far server's latency: the waits of
    requests in flight overlap, each in its own thread, and cost no CPU)."""

    #: Connections waiting to be taken (a cluster's readers open many at once).
    request_queue_size = 256

    def __init__(self, target: S3Server, slow: int, delay: float = 0.0) -> None:
        self.target, self.slow, self.delay, self.lock = target, slow, delay, threading.Lock()
        #: Every request forwarded or throttled: its method and its path with the query.
        self.requests: list[tuple[str, str]] = []
        #: Requests being answered, and the most at once since :meth:`clear`.
        self.in_flight = self.most_in_flight = 0
        super().__init__(("127.0.0.1", 0), _Forward)

    def clear(self) -> None:
        """Forget the requests seen so far."""
        with self.lock:
            self.requests.clear()
            self.most_in_flight = self.in_flight


class _Forward(http.server.BaseHTTPRequestHandler):
    server: Throttling
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _forward(self) -> None:
        server = self.server
        with server.lock:
            server.in_flight += 1
            server.most_in_flight = max(server.most_in_flight, server.in_flight)
        try:
            self._answer()
        finally:
            with server.lock:
                server.in_flight -= 1

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.requests.append((self.command, self.path))
            throttled = self.server.slow > 0
            self.server.slow -= throttled
        if self.server.delay:
            time.sleep(self.server.delay)
        if throttled:
            error = b"<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        target = http.client.HTTPConnection(self.server.target.host, self.server.target.port)
        target.request(self.command, self.path, body, dict(self.headers))
        answer = target.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        target.close()

    do_GET = do_HEAD = do_PUT = _forward
