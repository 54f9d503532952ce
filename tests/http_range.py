"""A small HTTP server that answers byte ranges, serving one folder on 127.0.0.1.

Python's own ``http.server`` answers ``Range: bytes=0-63`` with 200 and the whole file, so it
cannot stand for a server that publishes PMTiles or tile packages. This one answers a single
range ``bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` with 206 and ``Content-Range``, a range that
starts past the end with 416, ``HEAD`` and 404, and sends ``ETag`` and ``Last-Modified``
(RFC 9110); ``If-Match`` with another ETag is 412. It counts what it sent, so tests can assert
how much of a file a reader fetched.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeServer(ThreadingHTTPServer):
    """Serves the files under ``root`` at ``http://127.0.0.1:<port>/<relative path>``."""

    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root.resolve()
        #: Body bytes sent, and requests answered (any status), since the last :meth:`reset`.
        self.bytes_sent = 0
        self.requests = 0
        self._count = threading.Lock()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def reset(self) -> None:
        """Start counting again."""
        with self._count:
            self.bytes_sent = self.requests = 0

    def counted(self, body: int) -> None:
        """Count one request that sent ``body`` bytes."""
        with self._count:
            self.bytes_sent += body
            self.requests += 1


class _Handler(BaseHTTPRequestHandler):
    server: RangeServer
    protocol_version = "HTTP/1.1"  # keep-alive, as clients expect

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read the counts, not a log."""

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        path = (self.server.root / self.path.split("?", 1)[0].lstrip("/")).resolve()
        if not path.is_file() or not path.is_relative_to(self.server.root):
            self._send(404, b"not found\n", {}, body)
            return
        st = path.stat()
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        headers = {
            "ETag": etag,
            "Last-Modified": formatdate(st.st_mtime, usegmt=True),
            "Accept-Ranges": "bytes",
        }
        wanted = self.headers.get("If-Match")
        if wanted is not None and wanted.strip() not in ("*", etag):
            self._send(412, b"precondition failed\n", headers, body)
            return
        size = st.st_size
        start, end, status = 0, size, 200
        given = self.headers.get("Range")
        if given is not None:
            span = _span(given, size)
            if span is None:
                self._send(416, b"", {**headers, "Content-Range": f"bytes */{size}"}, body)
                return
            start, end, status = *span, 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(end - start)
        self._send(status, data, headers, body)

    def _send(self, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
        self.server.counted(len(data) if body else 0)  # before the client can see the answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


def _span(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end excluded) of one ``bytes=`` range of a ``size``-byte file; ``None``
    when it starts past the end (or is not one range: a server may then send it all, but
    these tests ask for single ranges only)."""
    match = _RANGE.match(header.strip())
    if match is None or match[1] == match[2] == "":
        return None
    if match[1] == "":  # the last n bytes
        last = int(match[2])
        return (max(0, size - last), size) if last and size else None
    start = int(match[1])
    end = size if match[2] == "" else min(size, int(match[2]) + 1)
    return (start, end) if start < size and start < end else None


def serve(root: Path) -> Iterator[RangeServer]:
    """A running :class:`RangeServer` over ``root``, stopped afterwards (for fixtures)."""
    server = RangeServer(root)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
