"""The server's answers: head and body in one write, byte for byte what gunicorn writes."""

from __future__ import annotations

import io
from typing import Any

import pytest
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from cds_service.web import server

_GUNICORN_RESPONSE = wsgi.Response.__mro__[1]  # (server.py put its own in its place)


class _Socket:
    """Reads the request from ``raw``; records every write."""

    def __init__(self, raw: bytes) -> None:
        self._in = io.BytesIO(raw)
        self.writes: list[bytes] = []

    def recv(self, size: int) -> bytes:
        return self._in.read(size)

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 8080)


def _answer(
    response_class: Any, method: str, status: str, headers: list[tuple[str, str]], body: Any
) -> list[bytes]:
    raw = f"{method} /cds-services/pgx-order-select HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    sock = _Socket(raw)
    cfg = Config()
    request = next(RequestParser(cfg, sock, ("127.0.0.1", 5000)))
    response, _ = wsgi.create(
        request, sock, ("127.0.0.1", 5000), ("127.0.0.1", 8080), cfg, response_class
    )
    response.start_response(status, headers)
    for piece in body:
        response.write(piece)
    response.close()
    return sock.writes


@pytest.fixture(autouse=True)
def _same_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(util, "http_date", lambda *_: "Mon, 07 Dec 2026 16:00:00 GMT")


def test_gunicorn_builds_the_servers_own_response() -> None:
    assert wsgi.Response is server._OneWriteResponse


ANSWER = b'{"cards": [{"summary": "Avoid codeine"}]}'
HEADERS = [("Content-Type", "application/json"), ("X-Request-ID", "abc")]


def test_a_whole_answer_is_one_write_of_gunicorns_bytes() -> None:
    headers = [*HEADERS, ("Content-Length", str(len(ANSWER)))]
    ours = _answer(server._OneWriteResponse, "POST", "200 OK", headers, [ANSWER])
    theirs = _answer(_GUNICORN_RESPONSE, "POST", "200 OK", headers, [ANSWER])
    assert len(ours) == 1
    assert len(theirs) == 2  # (gunicorn: the head, then the body)
    assert ours[0] == b"".join(theirs)
    assert ours[0].endswith(b"\r\n\r\n" + ANSWER)


@pytest.mark.parametrize(
    ("method", "status", "headers", "body"),
    [
        # no Content-Length: chunked, as gunicorn frames it
        ("POST", "200 OK", HEADERS, [ANSWER]),
        # a body in pieces
        ("POST", "200 OK", [*HEADERS, ("Content-Length", str(2 * len(ANSWER)))], [ANSWER] * 2),
        # no body to send: HEAD, 204
        ("HEAD", "200 OK", [*HEADERS, ("Content-Length", str(len(ANSWER)))], [ANSWER]),
        ("POST", "204 No Content", [("X-Request-ID", "abc")], []),
        # larger than is joined
        (
            "POST",
            "200 OK",
            [("Content-Length", str(server.ONE_WRITE_MAX + 1))],
            [b"x" * (server.ONE_WRITE_MAX + 1)],
        ),
    ],
)
def test_any_other_answer_is_written_as_gunicorn_writes_it(
    method: str, status: str, headers: list[tuple[str, str]], body: list[bytes]
) -> None:
    ours = _answer(server._OneWriteResponse, method, status, headers, body)
    theirs = _answer(_GUNICORN_RESPONSE, method, status, headers, body)
    assert ours == theirs
