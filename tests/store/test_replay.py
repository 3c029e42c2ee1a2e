"""Issue 10, item 6: a client JWT is refused on its second use at any replica and after a
restart. Replicas here are two app instances on one SQLite file (the PostgreSQL version is in
tests/integration/test_replay_postgres.py)."""

from __future__ import annotations

import time

import pytest
import responses
from jwt_clients import JKU, make_client, post, rsa_jwks, token
from sqlalchemy import create_engine, func, select

from cds_service.store import replay
from cds_service.store.replay import ReplayCache, replay_table


@responses.activate
def test_a_token_used_at_one_replica_is_refused_at_another(settings):
    responses.get(JKU, json=rsa_jwks())
    replica_a, replica_b = make_client(settings), make_client(settings)
    once = f"Bearer {token()}"
    assert post(replica_a, once).status_code == 200
    again = post(replica_b, once)
    assert again.status_code == 401 and "replay" in again.get_json()["error"]


@responses.activate
def test_a_token_used_before_a_restart_is_refused_after_it(settings):
    responses.get(JKU, json=rsa_jwks())
    once = f"Bearer {token()}"
    assert post(make_client(settings), once).status_code == 200
    restarted = make_client(settings)  # a new process: nothing in memory
    assert post(restarted, once).status_code == 401


@responses.activate
def test_distinct_tokens_pass_at_every_replica(settings):
    responses.get(JKU, json=rsa_jwks())
    replicas = [make_client(settings) for _ in range(3)]
    for i in range(9):
        assert post(replicas[i % 3], f"Bearer {token()}").status_code == 200


def test_the_table_holds_no_token_material(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'r.db'}")
    cache = ReplayCache(engine)
    assert cache.first_use("https://iss", "my-jti", int(time.time()) + 100)
    with engine.connect() as conn:
        [row] = conn.execute(select(replay_table)).all()
    assert "my-jti" not in str(row) and len(row.jti_hash) == 64


def test_expired_entries_are_purged_and_may_be_reused(tmp_path, monkeypatch):
    engine = create_engine(f"sqlite:///{tmp_path / 'r.db'}")
    cache = ReplayCache(engine)
    now = int(time.time())
    assert cache.first_use("iss", "old", now - 10)  # already past its expiry
    assert cache.first_use("iss", "live", now + 100)
    assert not cache.first_use("iss", "live", now + 100)
    assert cache.first_use("iss", "old", now + 100)  # its row had expired: not a replay
    monkeypatch.setattr(replay, "PURGE_EVERY", 0.0)
    assert cache.first_use("iss", "gone", now - 1)
    cache.first_use("iss", "trigger", now + 100)  # purges rows past their expiry
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(replay_table)).scalar_one()
    assert count == 3  # live, old (renewed), trigger


def test_with_the_database_down_replays_are_caught_in_the_process():
    engine = create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
    )
    cache = ReplayCache(engine)
    expires = int(time.time()) + 100
    assert cache.first_use("iss", "a", expires)
    assert not cache.first_use("iss", "a", expires)
    assert cache.first_use("iss", "b", expires)


@pytest.mark.parametrize("n", [20_000])
def test_checking_is_not_a_scan_of_every_entry(n):
    """The old in-memory cache scanned every entry under a lock on each call."""
    engine = create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
    )
    cache = ReplayCache(engine)
    expires = int(time.time()) + 100
    for i in range(n):
        cache._memory_first_use(str(i), expires, time.time())
    started = time.perf_counter()
    for i in range(1000):
        cache._memory_first_use(f"new-{i}", expires, time.time())
    assert time.perf_counter() - started < 0.1


def test_a_failing_database_is_not_waited_on_by_every_call(monkeypatch):
    engine = create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
    )
    cache = ReplayCache(engine)
    attempts = []
    real_connect = engine.connect
    monkeypatch.setattr(engine, "connect", lambda: attempts.append(1) or real_connect())
    expires = int(time.time()) + 100
    for i in range(20):
        assert cache.first_use("iss", f"t{i}", expires)
    assert len(attempts) <= 1


def test_the_replay_table_comes_from_the_migrations_only(tmp_path):
    """The database was down at start and is back: an authenticated hook call reaches the
    replay cache before feedback brings the schema up to date. The later upgrade must still
    work (a table made outside the migrations made it fail, and feedback answered 503)."""
    from cds_service.store import schema

    engine = create_engine(f"sqlite:///{tmp_path / 'r.db'}")
    cache = ReplayCache(engine)
    assert cache.first_use("iss", "a", int(time.time()) + 100)
    assert schema.upgrade(engine) == schema.head()
    assert schema.current(engine) == schema.head()
