"""A real S3 server for the tests: moto's, in this process, on 127.0.0.1 and a free port.

The ``s3`` fixture (session-wide) starts it; ``s3_env`` points the environment at it the way a
user points the AWS tools at an S3-compatible store (``AWS_ENDPOINT_URL`` and keys), ``in_tmp``
makes a temporary folder the working folder (where a remote cache's status goes), and
``upload`` copies a folder into a bucket, key for key. :class:`Throttling` is a proxy in front
of it that records the requests, answers ``503 SlowDown`` to the first few, and can wait before
each (the benchmarks' latency); :class:`GcsFront` is Google Cloud Storage's XML API in front
of it.
"""

from __future__ import annotations

import http.client
import http.server
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, Self

import pytest

KEYS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}

#: An ``Authorization`` header naming the test key (moto checks who asks, not the signature).
SIGNED = (
    f"AWS4-HMAC-SHA256 Credential={KEYS['AWS_ACCESS_KEY_ID']}/20260101/us-east-1/s3/aws4_request, "
    "SignedHeaders=host, Signature=0"
)


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


def upload(server: S3Server, folder: Path, bucket: str, prefix: str, public: bool = False) -> str:
    """Every file under ``folder`` put at ``prefix/<its relative path>`` (readable by anyone
    when ``public``); the ``s3://`` URL of the prefix."""
    client = server.client()
    acl = {"ACL": "public-read"} if public else {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), **acl)
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
        #: The ``Authorization`` header of each request ("" when it had none).
        self.authorizations: list[str] = []
        #: Requests being answered, and the most at once since :meth:`clear`.
        self.in_flight = self.most_in_flight = 0
        super().__init__(("127.0.0.1", 0), _Forward)

    def __enter__(self) -> Self:
        """The proxy answering, in a thread of its own, until the block ends."""
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def clear(self) -> None:
        """Forget the requests seen so far."""
        with self.lock:
            self.requests.clear()
            self.authorizations.clear()
            self.most_in_flight = self.in_flight

    def forwarded(self, path: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
        """The path and headers sent on to the S3 server: as they came."""
        return path, headers


class GcsFront(Throttling):
    """Google Cloud Storage's XML API in front of the S3 server: the same requests (``GET
    /bucket?list-type=2&prefix=…&start-after=…``, ranged ``GET /bucket/key``) and answers,
    except that GCS takes ``/`` in an object name encoded (``%2F``, as obstore's GCS client
    sends it) and checks the ``Bearer`` token itself: names are decoded, and a request with a token
    (recorded in :attr:`authorizations`) goes on as one signed with the test key; one without
    goes on anonymous."""

    def forwarded(self, path: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
        name, mark, query = path.partition("?")
        kept = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        if len(kept) < len(headers):  # signed in (with a token): as the test key
            kept["Authorization"] = SIGNED
        return urllib.parse.unquote(name) + mark + query, kept


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
            self.server.authorizations.append(self.headers.get("Authorization", ""))
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
        path, headers = self.server.forwarded(self.path, dict(self.headers))
        target.request(self.command, path, body, headers)
        answer = target.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        head = self.command == "HEAD"  # the length of what a GET would answer
        self.send_header(
            "Content-Length", answer.getheader("Content-Length", "0") if head else str(len(data))
        )
        self.end_headers()
        if not head:
            self.wfile.write(data)
        target.close()

    do_GET = do_HEAD = do_PUT = _forward
