"""The bounds of one outbound read: a deadline shared by all reads of a hook call and a size
cap (counted decompressed, and compressed too), and what a failed read may say."""

from __future__ import annotations

import http.client
import time
import zlib
from collections.abc import Callable

import requests
import urllib3


class FetchFailed(Exception):
    """The response could not be had within the deadline and size cap (detail: for logs)."""


READ_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,  # raised by read1
    http.client.HTTPException,
    OSError,
    ValueError,
    zlib.error,
)


def failure_text(exc: BaseException, deadline: float) -> str:
    """What a failed read logs: the type only (messages of requests' errors quote the URL,
    and so the patient id)."""
    return "deadline passed" if time.monotonic() >= deadline else type(exc).__name__


def read_body(read1: Callable[[], bytes], deadline: float, max_bytes: int) -> bytes:
    """The body, one socket read at a time (``read1``), so the deadline is checked as data
    drips and the size cap as it grows (counted decompressed: a small bomb stays small)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = read1()
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise FetchFailed(f"answer larger than {max_bytes} bytes")
        if time.monotonic() > deadline:
            raise FetchFailed("deadline passed while reading")
        chunks.append(chunk)
    if time.monotonic() > deadline:
        raise FetchFailed("deadline passed while reading")
    return b"".join(chunks)


CHUNK = 65_536


class Gunzip:
    """``read1`` of a gzip-encoded body, decompressed a bounded piece at a time: several
    members are read in turn and bytes after the last are ignored, as urllib3 does. The
    compressed bytes count against ``max_bytes`` too (input that decodes to nothing must not
    be read without end)."""

    def __init__(self, response: http.client.HTTPResponse, max_bytes: int) -> None:
        self.response = response
        self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.first = True  # in the first member: an error there is an error
        self.pending = b""
        self.left = max_bytes

    def _more(self) -> bytes:
        data = self.response.read1(CHUNK)
        self.left -= len(data)
        if self.left < 0:
            raise FetchFailed("compressed answer larger than the size cap")
        return data

    def read1(self) -> bytes:
        while True:
            if self.decoder.eof:
                rest = self.decoder.unused_data or self._more()
                if not rest:
                    return b""
                self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self.first, self.pending = False, rest
            if not self.pending:
                self.pending = self._more()
                if not self.pending:
                    raise zlib.error("the compressed answer ends early")
            try:
                out = self.decoder.decompress(self.pending, CHUNK)
            except zlib.error:
                if self.first:
                    raise
                while self._more():  # not another member: what follows is ignored
                    pass
                return b""
            self.pending = self.decoder.unconsumed_tail
            if out:
                return out
