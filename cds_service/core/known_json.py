"""A large value a client sends again and again, recognised by its bytes instead of read.

An ordering session sends the patient's genomic results (tens of KB) with every order-select
and again at order-sign, the same bytes each time. Reading them into Python objects, writing
them again to look up what they summarise to, and freeing them after the answer took about a
fifth of a worker's CPU on an alerting call.

Once the same value has come at the same place (``prefetch.genomicResults``, say) in two
bodies, each read in full (by orjson) and accepted, its exact bytes are known. A later body
holding those bytes there has everything else read as before (``parse_json``, every check),
and the value left as its bytes: an ``Unread``, which the genomic stage looks up by those
bytes and reads (``Unread.value``) only when it has not summarised them before.

Why the answer is the one a full reading gives:

* the known bytes were, in a body orjson read in full and ``parse_json`` accepted, the whole
  value at that place: valid UTF-8 JSON, no lone surrogate, long number or long string,
  nested within orjson's limit at that depth;
* the rest of the body is read with an unguessable string standing where those bytes were,
  and only when orjson reads it (so the whole body is one orjson reads, as ``parse_json``
  would); it is used only when that string comes out as the value at that place. JSON's
  grammar is context-free, so the body with the bytes back reads the same way, the value
  being theirs;
* anything else (the place not found, unknown bytes, a rest orjson does not read or
  ``parse_json`` refuses, the string elsewhere) reads the whole body as before, with the
  same answer and the same errors.

A value seen once costs nothing more than finding its place; the second time, its end is found
(``json``'s own scanner) and it is checked as above before it is kept; one that cannot be kept
(too large, not at that place) is not scanned again while its first bytes are remembered.
Kept values are bounded in number and bytes.
"""

from __future__ import annotations

import json
import secrets
import string
import threading
from collections import OrderedDict
from typing import Any

from .errors import ClientError
from .json_limits import NotFast, parse_json, parse_json_fast, read_json

#: The first bytes of a value that find its known versions (then compared in full).
FINGERPRINT = 512
#: Smaller values are read as they are: finding them would save little.
SMALLEST = 4096
#: Larger ones too: each kept value is held in memory.
LARGEST = 256 * 1024
#: At most this many bytes of values kept, and this many values; this many fingerprints of
#: values seen once (the first half of the way to being kept).
MAX_BYTES = 16 * 1024 * 1024
MAX_VALUES = 1024
MAX_SEEN = 4096
#: Values kept with the same fingerprint (the same patient's results as they change).
PER_FINGERPRINT = 4

# JSON's white space; how far after a key its colon and the value's first byte are looked for.
_WHITE = b" \t\n\r"
_NEAR = 64
_SCANNER = json.JSONDecoder()


class Unread:
    """A JSON value of a request body, still the bytes it was sent as: those bytes were read
    in full and accepted at the same place before. ``value()`` reads them (as the whole
    body's reading would have: the same parser, the same numbers)."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def value(self) -> Any:
        return parse_json(self.raw)

    def __repr__(self) -> str:  # (never the content: it is patient data)
        return f"Unread({len(self.raw)} bytes)"


class KnownValues:
    """The values a service has seen twice at one place of its request bodies (``where``:
    an object's key, then a key of that object), kept by their bytes. One per app; shared
    by its threads."""

    def __init__(self, where: tuple[str, str]) -> None:
        self.where = where
        self._key = json.dumps(where[1]).encode()  # the key as a JSON string, quotes included
        # (never leaves the process; letters only: no digits to look like a long number)
        self._mark = "".join(secrets.choice(string.ascii_letters) for _ in range(32))
        self._stand_in = json.dumps(self._mark).encode()
        self._known: OrderedDict[bytes, tuple[bytes, ...]] = OrderedDict()
        #: fingerprints of values seen once (True), or tried and not kept (False)
        self._seen: OrderedDict[bytes, bool] = OrderedDict()
        self.bytes = 0
        self.values = 0
        self._lock = threading.Lock()

    def read(self, raw: bytes) -> Any:
        """``parse_json(raw)``, the same answer or the same error; with the value at
        ``where`` left as an ``Unread`` when its bytes are known."""
        start = self._value_start(raw)
        if start is not None:
            sent = self._known_at(raw, start)
            if sent is not None:
                body = self._read_around(raw, start, sent)
                if body is not None:
                    return body
        body, by_orjson = read_json(raw)
        if start is not None and by_orjson:  # (see ``_read_around``)
            self._note(raw, start, body)
        return body

    def _value_start(self, raw: bytes) -> int | None:
        """Where the object after the first ``"key":`` starts (None: no such key, no object
        after it within a little white space, or too short to be kept)."""
        at = raw.find(self._key)
        if at < 0:
            return None
        after = raw[at + len(self._key) : at + len(self._key) + _NEAR]
        colon = after.lstrip(_WHITE)
        value = colon[1:].lstrip(_WHITE) if colon[:1] == b":" else b""
        start = at + len(self._key) + len(after) - len(value)
        if value[:1] != b"{" or len(raw) - start < SMALLEST:
            return None
        return start

    def _known_at(self, raw: bytes, start: int) -> bytes | None:
        fingerprint = raw[start : start + FINGERPRINT]
        with self._lock:
            candidates = self._known.get(fingerprint, ())
            if candidates:
                self._known.move_to_end(fingerprint)
        for sent in candidates:
            if raw.startswith(sent, start):
                return sent
        return None

    def _read_around(self, raw: bytes, start: int, sent: bytes) -> Any:
        """The body read with a stand-in where ``sent`` is, then ``sent`` put back as a
        ``Unread``; None when the stand-in is not then the value at ``where``."""
        rest = b"".join((raw[:start], self._stand_in, raw[start + len(sent) :]))
        try:
            # Only a rest orjson reads: ``sent`` was kept from a body orjson read, so the
            # whole body is one orjson reads too, the way ``parse_json`` reads it (the
            # standard library's parser, for other bodies, has its own depth limit).
            body = parse_json_fast(rest)
        except (NotFast, ClientError):  # (the whole body then gives its answer or error)
            return None
        outer = body.get(self.where[0]) if type(body) is dict else None
        if type(outer) is not dict or outer.get(self.where[1]) != self._mark:
            return None
        outer[self.where[1]] = Unread(sent)
        return body

    def _note(self, raw: bytes, start: int, body: Any) -> None:
        """After ``body`` was read in full from ``raw``: the first time an object comes at
        ``where`` with these first bytes, remember that; the second time, keep its bytes."""
        outer = body.get(self.where[0]) if type(body) is dict else None
        if type(outer) is not dict or type(outer.get(self.where[1])) is not dict:
            return
        fingerprint = raw[start : start + FINGERPRINT]
        with self._lock:
            state = self._seen.get(fingerprint)
            if state is None:  # the first time
                self._seen[fingerprint] = True
                if len(self._seen) > MAX_SEEN:
                    self._seen.popitem(last=False)
                return
            if state is False:  # tried before and not kept: not tried again
                return
            self._seen[fingerprint] = False
        sent = _value_bytes(raw, start)
        if sent is None or not SMALLEST <= len(sent) <= LARGEST:
            return
        if self._read_around(raw, start, sent) is None:  # (not the value at ``where``)
            return
        with self._lock:
            self._seen.pop(fingerprint, None)
        self._keep(fingerprint, sent)

    def _keep(self, fingerprint: bytes, sent: bytes) -> None:
        with self._lock:
            old = self._known.pop(fingerprint, ())
            if sent in old:
                self._known[fingerprint] = old
                return
            kept = (sent, *old)
            for dropped in kept[PER_FINGERPRINT:]:
                self._count(dropped, -1)
            self._known[fingerprint] = kept[:PER_FINGERPRINT]
            self._count(sent, 1)
            while self._known and (self.bytes > MAX_BYTES or self.values > MAX_VALUES):
                _, dropped_all = self._known.popitem(last=False)
                for dropped in dropped_all:
                    self._count(dropped, -1)

    def _count(self, sent: bytes, sign: int) -> None:
        self.bytes += sign * len(sent)
        self.values += sign


def _value_bytes(raw: bytes, start: int) -> bytes | None:
    """The bytes of the JSON value that starts at ``start`` (None: not readable as UTF-8
    JSON there; the body was then read some other way, e.g. as UTF-16)."""
    try:
        text = raw.decode("utf-8")
        at = start if raw.isascii() else len(raw[:start].decode("utf-8"))
        _, end = _SCANNER.raw_decode(text, at)
    except (ValueError, RecursionError):  # (UnicodeDecodeError is a ValueError)
        return None
    sent = text[at:end].encode("utf-8")
    return sent if raw.startswith(sent, start) else None
