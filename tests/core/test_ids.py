"""Card and suggestion uuids: from the system's random source, never repeated across a fork;
a card's own time-ordered (version 7), a suggestion's version 4."""

from __future__ import annotations

import os
import time
import uuid

from cds_service.core import ids


def test_a_suggestion_uuid_is_a_version_4_uuid_written_as_uuid_writes_it():
    for _ in range(3 * ids.BATCH):  # across several reads of the system's source
        text = ids.uuid4()
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_the_bits_are_those_uuid4_would_make_of_the_same_bytes(monkeypatch):
    raw = bytes(range(200, 216))
    monkeypatch.setattr(ids.os, "urandom", lambda n: raw * (n // 16))
    ids._reset()
    try:
        assert ids.uuid4() == str(uuid.UUID(bytes=raw, version=4))
    finally:
        ids._reset()


def test_uuids_do_not_repeat():
    made = [ids.uuid4() for _ in range(5 * ids.BATCH)]
    assert len(set(made)) == len(made)


def test_a_forked_child_never_hands_out_the_parents_buffered_bytes():
    ids.uuid4()  # the parent has bytes buffered
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next uuids, to the parent
        os.close(read)
        os.write(write, " ".join(ids.uuid4() for _ in range(8)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {ids.uuid4() for _ in range(8)}
    assert len(child) == 8 and not child & parent


def test_a_cards_uuid_is_version_7_with_the_time_in_milliseconds():
    for _ in range(3 * ids.BATCH):
        before = time.time_ns() // 1_000_000
        text = ids.card_uuid()
        after = time.time_ns() // 1_000_000
        parsed = uuid.UUID(text)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
        assert before <= parsed.int >> 80 <= after


def test_card_uuids_made_later_sort_later_and_keep_74_random_bits(monkeypatch):
    first = ids.card_uuid()
    time.sleep(0.002)
    assert ids.card_uuid() > first  # (the card log's index takes them at its end)
    # every random bit comes from the system's source: all ones in, all ones out
    monkeypatch.setattr(ids.os, "urandom", lambda n: b"\xff" * n)
    ids._reset()
    try:
        random_bits = uuid.UUID(ids.card_uuid()).int & ((1 << 80) - 1)
    finally:
        ids._reset()
    version_and_variant = (0xF << 76) | (0x3 << 62)
    assert random_bits == ((1 << 80) - 1) & ~version_and_variant | (0x7 << 76) | (0x2 << 62)
    assert bin(random_bits & ~version_and_variant).count("1") == 74


def test_card_uuids_do_not_repeat():
    made = [ids.card_uuid() for _ in range(5 * ids.BATCH)]
    assert len(set(made)) == len(made)
