"""web/gather.py: when a request being gathered on the worker's loop is whole (and so may go
to a request thread), and when it is handed over as it is for gunicorn's parser or the app to
refuse. The server itself is tested in tests/integration/test_slow_clients.py."""

from __future__ import annotations

import socket
import time

import pytest

from cds_service.web import app, gather
from cds_service.web.gather import Request

HEAD = b"POST /cds-services/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def fed(*pieces: bytes) -> list[bool]:
    request = Request(0.0)
    return [request.feed(p) for p in pieces]


def test_a_head_without_body_is_whole_at_its_blank_line():
    assert fed(b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n") == [False, False, True]


def test_the_blank_line_is_found_across_reads():
    assert fed(b"GET / HTTP/1.1\r\nHost: x\r", b"\n\r", b"\n") == [False, False, True]


def test_a_body_is_whole_at_its_content_length():
    head = HEAD + b"Content-Length: 10\r\n\r\n"
    assert fed(head + b"01234", b"5678", b"9") == [False, False, True]


def test_a_dripped_head_is_not_whole_until_it_ends():
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: aaaa\r\n\r\n"
    results = fed(*(raw[i : i + 1] for i in range(len(raw))))
    assert results[-1] and not any(results[:-1])


def test_a_chunked_body_is_whole_after_its_last_chunk_and_trailers():
    head = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    assert fed(head, b"5\r\nhello\r\n", b"0\r\n", b"\r\n") == [False, False, False, True]
    assert fed(head + b"3;ext=1\r\nabc\r\n0\r\nX-Trailer: y\r\n", b"\r\n") == [False, True]
    # a chunk's data may hold what looks like the end
    assert fed(head + b"7\r\n0\r\n\r\nab\r\n", b"0\r\n\r\n") == [False, True]


@pytest.mark.parametrize(
    "head",
    [
        HEAD + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n",  # gunicorn: 400
        HEAD + b"Content-Length: x\r\n\r\n",
        HEAD + b"Transfer-Encoding: xchunked\r\n\r\n",  # gunicorn: 400 (501)
        HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        HEAD + b"Content-Length: %d\r\n\r\n" % (gather.MAX_BODY + 1),  # the app: 413 unread
    ],
    ids=["two-lengths", "bad-length", "unknown-coding", "both", "too-large"],
)
def test_what_is_refused_from_the_head_is_handed_over_at_once(head):
    assert fed(head) == [True]


def test_a_chunked_body_past_the_limit_or_malformed_is_handed_over():
    head = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    big = b"%x\r\n" % (gather.MAX_BODY + 1)
    assert fed(head, big + b"x" * (gather.MAX_BODY + 3)) == [False, True]
    assert fed(head, b"zz\r\n{}\r\n") == [False, True]


def test_expect_100_continue_is_seen():
    request = Request(0.0)
    request.feed(HEAD + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert request.expects_continue()
    plain = Request(0.0)
    plain.feed(HEAD + b"Content-Length: 2\r\n\r\n")
    assert not plain.expects_continue()


def test_the_body_limit_is_the_apps():
    assert gather.MAX_BODY == app.MAX_BODY


def test_error_answers_are_json_and_close():
    answer = gather.http_error(408, "late")
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n")
    assert answer.endswith(b'{"error": "late"}')


# -- what is served on the loop (issue 28) ---------------------------------------------------


def served_on_loop(raw: bytes) -> bool:
    request = Request(0.0)
    request.feed(raw)
    return request.complete and gather._served_on_loop(raw)


@pytest.mark.parametrize(
    ("raw", "on_loop"),
    [
        (HEAD.replace(b"/x ", b"/pgx-order-select ") + b"Content-Length: 2\r\n\r\n{}", True),
        (HEAD.replace(b"/x ", b"/pgx-order-select?a=/b ") + b"Content-Length: 2\r\n\r\n{}", True),
        # its feedback waits for the database; discovery, readiness are not hook calls
        (HEAD.replace(b"/x ", b"/x/feedback ") + b"Content-Length: 2\r\n\r\n{}", False),
        (b"GET /cds-services HTTP/1.1\r\nHost: x\r\n\r\n", False),
        (b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", False),
        # one that will read the FHIR server (no prefetch) goes to a thread at once
        (
            HEAD.replace(b"/x ", b"/y ") + b'Content-Length: 17\r\n\r\n{"fhirServer": 1}',
            False,
        ),
        (
            HEAD.replace(b"/x ", b"/y ")
            + b'Content-Length: 31\r\n\r\n{"fhirServer": 1, "prefetch": 1}',
            True,
        ),
        # not whole, or framed in a way gunicorn's parser judges
        (HEAD + b"Content-Length: 5\r\n\r\n{}", False),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", False),
        (HEAD + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", False),
    ],
)
def test_only_a_whole_hook_call_is_served_on_the_loop(raw, on_loop):
    assert served_on_loop(raw) is on_loop


def test_an_answer_gives_up_on_a_client_that_does_not_read():
    """Neither the loop nor a thread waits for one client: once the buffers are full, a
    write fails after ``ANSWER_TIMEOUT_S`` without progress (the connection is then closed)."""
    ours, client = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    gather.bound_waits(ours, 0.3)
    started = time.monotonic()
    with pytest.raises(OSError):
        ours.sendall(b"x" * 10_000_000)
    assert 0.2 < time.monotonic() - started < 2
    ours.close()
    client.close()
