"""A real HTTP server on loopback that misbehaves on purpose (drips, streams without end,
answers huge), for tests of the service's time and size budgets. ``responses`` cannot
model these: they are about sockets."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Behaviour = Callable[[BaseHTTPRequestHandler], None]


def drip_body(handler: BaseHTTPRequestHandler) -> None:
    """Headers at once, then one byte every 0.1 s of a body that does not complete."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/fhir+json")
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    _drip(handler, b'{"resourceType": "Bundle", "entry": [' + b" " * 99_000)


def drip_headers(handler: BaseHTTPRequestHandler) -> None:
    """The status line, then header bytes one every 0.1 s."""
    handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
    handler.wfile.flush()
    _drip(handler, b"X-Slow: " + b"a" * 10_000)


SENT: dict[str, int] = {"endless": 0}
ENDLESS_LIMIT = 64 * 1024 * 1024  # "endless": stops here so a broken client cannot hang a test


def endless(handler: BaseHTTPRequestHandler) -> None:
    """A chunked body that does not end (before 64 MB), as fast as the reader takes it."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/fhir+json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    chunk = b" " * 65_536
    try:
        handler.wfile.write(b'10\r\n{"resourceType":\r\n')
        while SENT["endless"] < ENDLESS_LIMIT:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            SENT["endless"] += len(chunk)
        handler.wfile.write(b"0\r\n\r\n")
    except OSError:
        return


DRIP_SECONDS = 6  # a drip stops after this, so a client without a budget fails, not hangs


def _drip(handler: BaseHTTPRequestHandler, data: bytes) -> None:
    try:
        for i in range(min(len(data), DRIP_SECONDS * 10)):
            handler.wfile.write(data[i : i + 1])
            handler.wfile.flush()
            time.sleep(0.1)
    except OSError:
        return


def json_answer(body: Any, status: int = 200, delay: float = 0.0) -> Behaviour:
    raw = json.dumps(body).encode()

    def answer(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(delay)
        handler.send_response(status)
        handler.send_header("Content-Type", "application/fhir+json")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)

    return answer


class HostileServer:
    """Routes a path prefix to a behaviour; records the paths asked for."""

    def __init__(self) -> None:
        self.routes: dict[str, Behaviour] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.peers: list[int] = []  # the client's port for each request: its connection
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with server.lock:
                    server.requests.append((self.path, dict(self.headers)))
                    server.peers.append(self.client_address[1])
                for prefix, behaviour in server.routes.items():
                    if self.path.startswith(prefix):
                        behaviour(self)
                        return
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Quiet(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the service hanging up on a misbehaving answer is the point

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        with self.lock:
            return [p for p, _ in self.requests]


#: How often the server's loop looks for a shutdown request (the standard library's 0.5 s
#: made every test's teardown wait about half a second).
POLL_SECONDS = 0.01


@contextmanager
def hostile_server(tls: ssl.SSLContext | None = None) -> Iterator[HostileServer]:
    """The server, running (on HTTPS with ``tls``, a server-side context)."""
    server = HostileServer()
    if tls is not None:
        server.httpd.socket = tls.wrap_socket(server.httpd.socket, server_side=True)
        server.base = f"https://127.0.0.1:{server.port}"
    # a short poll: shutdown() waits for the loop to notice, 0.5 s by default per server
    thread = threading.Thread(
        target=server.httpd.serve_forever, kwargs={"poll_interval": POLL_SECONDS}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
