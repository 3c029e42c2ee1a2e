"""Card and suggestion uuids: random (version 4) uuids from the operating system's
cryptographic source, read a few kilobytes at a time instead of 16 bytes per uuid, and
written out directly.

``str(uuid.uuid4())`` makes one ``getrandom`` system call per uuid (on the virtual machines
the service runs on, a system call can cost tens of microseconds under load) and builds a
``UUID`` object only to print it: about 8 µs a uuid, against about 1.5 µs here, and a card
with its suggestions takes two or three. The bytes are the same kind (``os.urandom``): a card's
uuid is what feedback names, so it must stay unguessable (a predicted uuid could be used to
mark another clinician's card as overridden). The buffer is dropped in a forked child, so two
workers never hand out the same bytes.
"""

from __future__ import annotations

import os
import threading

#: uuids read from the system at once (16 bytes each)
BATCH = 256

_lock = threading.Lock()
_buffer = b""
_taken = 0


def _reset() -> None:
    global _buffer, _taken, _lock
    _buffer, _taken = b"", 0
    _lock = threading.Lock()  # (a lock held by another thread at the fork stays held)


os.register_at_fork(after_in_child=_reset)


def uuid4() -> str:
    """A new random uuid, as ``str(uuid.uuid4())`` writes it."""
    global _buffer, _taken
    with _lock:
        if _taken >= len(_buffer):
            _buffer, _taken = os.urandom(16 * BATCH), 0
        raw = _buffer[_taken : _taken + 16]
        _taken += 16
    h = raw.hex()
    # the version (4) and the variant (10xx) bits set as ``uuid.UUID(..., version=4)`` sets them
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


_VARIANT = "89ab"
