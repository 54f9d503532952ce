"""HTTP for ``cachestatus serve``: the standard library's threading server carrying the answers
of an :class:`~.app.App`, one thread per connection, keep-alive, one log line per request."""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import sys
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TextIO

from .. import __version__
from .app import Answer, App

log = logging.getLogger(__name__)

#: What a Host header may be for the server to name itself by it in documents (a host name or
#: an address, and a port); anything else and the server names its own address.
_HOST = re.compile(r"([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?")
#: The Host names a server bound to a loopback address answers (with any port, and its own
#: address): a web page that rebinds its own name to the loopback sends that name instead.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
#: Seconds a connection may stay silent, idle or in the middle of a request, before it is
#: closed (a thread serves each connection).
REQUEST_TIMEOUT = 30.0
#: Control characters (C0, DEL, C1) as the log writes them: escaped, never sent to a terminal.
_CONTROL = str.maketrans({c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))})


def printable(text: str) -> str:
    """``text`` with its control characters escaped (``\\x1b``), for a log line."""
    return text.translate(_CONTROL)


class Server(ThreadingHTTPServer):
    """A threading HTTP server answering with ``app``.

    Attributes:
        app: what the server answers.
        cors: origins allowed to read the answers from a web page (``*`` for any); none by
            default.
        access_log: where one line per request goes (``None``: nowhere).
        request_timeout: seconds a connection may stay silent before it is closed.
        hosts: the Host names answered (lower case, without the port), when bound to a
            loopback address; ``None`` (any) otherwise.
    """

    daemon_threads = True  # keep-alive connections never hold up the end of the server
    block_on_close = False

    def __init__(
        self,
        app: App,
        host: str,
        port: int,
        cors: Sequence[str] = (),
        access_log: TextIO | None = sys.stderr,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.app, self.cors, self.access_log = app, tuple(cors), access_log
        self.request_timeout = request_timeout
        super().__init__((host, port), Handler)
        self.hosts = _loopback_hosts(self.server_address[0])

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the bound socket (the real port when asked for port 0)."""
        host, port = self.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _loopback_hosts(bound: str | bytes | bytearray) -> frozenset[str] | None:
    """The Host names to answer on the bound address ``bound``: :data:`LOOPBACK_NAMES` and
    the address itself when it is a loopback one, else ``None`` (any)."""
    address = ipaddress.ip_address(
        bound.decode() if isinstance(bound, bytes | bytearray) else bound
    )
    if not address.is_loopback:
        return None
    own = f"[{address}]" if address.version == 6 else str(address)
    return LOOPBACK_NAMES | {own}


class Handler(BaseHTTPRequestHandler):
    """One connection's requests: GET and HEAD, answered by the server's app."""

    server: Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm the body would wait for the
    # client's delayed ACK of the headers (40 ms a response on Linux).
    disable_nagle_algorithm = True
    server_version = f"cachestatus/{__version__}"

    def setup(self) -> None:
        """Give the connection's reads the server's timeout."""
        super().setup()
        self.connection.settimeout(self.server.request_timeout)

    def do_GET(self) -> None:
        """Answer a GET."""
        self._send(self._answer(), with_body=True)

    def do_HEAD(self) -> None:
        """Answer a HEAD: the GET's headers, no body."""
        self._send(self._answer(), with_body=False)

    def _answer(self) -> Answer:
        host = self.headers.get("Host", "")
        if not self._host_answered(host):
            return Answer.text(
                421,
                f"misdirected request: Host {printable(host[:80])!r} is not this server's "
                "(it answers localhost, 127.0.0.1 and [::1]; serve --host to listen elsewhere)",
            )
        base = f"http://{host}" if _HOST.fullmatch(host) else self.server.base_url
        try:
            headers = {name.lower(): value for name, value in self.headers.items()}
            return self.server.app.answer(self.path, headers, base)
        except Exception as exc:  # one failed request never stops the server
            message = printable(f"{self.path[:200]}: {type(exc).__name__}: {exc}")
            log.error(message)
            return Answer.text(500, f"internal error: {message}")

    def _host_answered(self, host: str) -> bool:
        """Whether a request naming ``host`` is answered: any on a server bound to another
        address than the loopback; else the loopback's names and the bound address, with any
        port (no Host at all, as an HTTP/1.0 client sends, is no page's request either)."""
        names = self.server.hosts
        if names is None or not host:
            return True
        found = _HOST.fullmatch(host)
        return found is not None and found.group(1).lower() in names

    def _send(self, answer: Answer, with_body: bool) -> None:
        self.log_request(answer.status, len(answer.body))
        self.send_response_only(answer.status)
        self.send_header("Server", self.version_string())
        self.send_header("Date", self.date_time_string())
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.status != 304:
            self.send_header("Content-Type", answer.media_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("X-Content-Type-Options", "nosniff")  # text echoing a URL stays text
        origin = self._allowed_origin()
        if origin is not None:
            self.send_header("Access-Control-Allow-Origin", origin)
        if self.server.cors:  # the answer's headers depend on the Origin asked with
            self.send_header("Vary", "Origin")
        self.end_headers()
        if with_body and answer.body:
            try:
                self.wfile.write(answer.body)
            except ConnectionError:  # the client went away: nothing to answer
                self.close_connection = True

    def _allowed_origin(self) -> str | None:
        cors = self.server.cors
        if "*" in cors:
            return "*"
        origin = self.headers.get("Origin")
        return origin if origin is not None and origin in cors else None

    def log_message(self, format: str, *args: object) -> None:
        """One line per request (and per refused request line) on the access log."""
        out = self.server.access_log
        if out is not None:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            out.write(f"{stamp} {self.client_address[0]} {printable(format % args)}\n")
            out.flush()
