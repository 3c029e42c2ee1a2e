"""Issue 10, item 6: a client JWT is refused on its second use at any replica and after a
restart. Replicas here are two app instances on one SQLite file (the PostgreSQL version is in
tests/integration/test_replay_postgres.py)."""

from __future__ import annotations

import time

import pytest
import responses
from hostile_server import closed_port
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
    """The old in-memory cache scanned every entry under a lock on each call; the pod's
    shared file is indexed (and not synced to disk)."""
    engine = create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
    )
    cache = ReplayCache(engine)
    expires = int(time.time()) + 100
    for i in range(n):
        cache._pod.first_use(str(i), expires, time.time())
    started = time.perf_counter()
    for i in range(1000):
        cache._pod.first_use(f"new-{i}", expires, time.time())
    assert time.perf_counter() - started < 0.5


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


# -- issue 26, item 11: the fallback is shared by the pod's workers, or refuses -------------


def _down_engine():
    return create_engine(
        f"postgresql+psycopg://nobody@127.0.0.1:{closed_port()}/none",
        connect_args={"connect_timeout": 1},
    )


def _in_a_forked_worker(cache: ReplayCache, jti: str) -> bool:
    """What ``first_use`` answers in a worker process forked from this one (gunicorn forks
    its workers after the app is made)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    answer = context.Queue()
    worker = context.Process(
        target=lambda: answer.put(cache.first_use("iss", jti, int(time.time()) + 100))
    )
    worker.start()
    worker.join(timeout=30)
    return answer.get(timeout=5)


def test_with_the_database_down_a_token_passes_once_per_pod_not_once_per_worker():
    """Before: each worker remembered tokens in its own memory, so one token was accepted
    once per worker (three times over two replicas)."""
    cache = ReplayCache(_down_engine())
    expires = int(time.time()) + 100
    assert _in_a_forked_worker(cache, "shared") is True
    assert _in_a_forked_worker(cache, "shared") is False  # another worker of the pod
    assert cache.first_use("iss", "shared", expires) is False  # and this one
    assert cache.first_use("iss", "other", expires) is True


def test_the_pods_file_is_private_and_one_made_by_someone_else_is_refused(tmp_path):
    import stat

    from cds_service.core.errors import ServiceUnavailable
    from cds_service.store.replay import PodReplay

    cache = ReplayCache(_down_engine())
    assert cache.first_use("iss", "a", int(time.time()) + 100)
    assert stat.S_IMODE(cache._pod.path.parent.stat().st_mode) == 0o700
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    with pytest.raises(ServiceUnavailable):  # refused, never waved through
        PodReplay(planted / "seen.sqlite3").first_use("k", time.time() + 100, time.time())


@responses.activate
def test_sites_may_refuse_authenticated_calls_while_the_database_is_down(settings):
    """PGX_CDS_REPLAY_FALLBACK=refuse: a 503 with Retry-After, never an unchecked token."""
    responses.get(JKU, json=rsa_jwks())
    url = f"postgresql+psycopg://pgx@127.0.0.1:{closed_port()}/postgres"
    down = settings.model_copy(update={"database_url": url, "replay_fallback": "refuse"})
    answer = post(make_client(down), f"Bearer {token()}")
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) > 0
    assert "replay" in answer.get_json()["error"]
    pod = settings.model_copy(update={"database_url": url})
    assert post(make_client(pod), f"Bearer {token()}").status_code == 200
