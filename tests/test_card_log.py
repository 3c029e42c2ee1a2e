"""The card log: every card issued is recorded without patient identifiers in clear, feedback
links to it, and advice overridden with a reason is not shown again for the same order in the
same ordering session."""

from __future__ import annotations

from builders import APAP_CODEINE, PATIENT, hook_request, med_order, phenotype_obs, with_results

UM = phenotype_obs("Ultrarapid Metabolizer")


def codeine(call, hook: str, order_id: str = "rx-1"):
    body = hook_request(
        hook, [med_order(APAP_CODEINE, order_id=order_id)], prefetch=with_results(UM)
    )
    status, answer = call(body)
    assert status == 200
    return answer["cards"]


def override(client, service: str, card_uuid: str, reason: str | None = "benefit-outweighs-risk"):
    item = {
        "card": card_uuid,
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-29T10:00:00Z",
    }
    if reason:
        item["overrideReason"] = {
            "reason": {"code": reason, "system": "urn:pgx-pain-cds:override-reason"}
        }
    response = client.post(f"/cds-services/{service}/feedback", json={"feedback": [item]})
    assert response.status_code == 200


def test_every_card_is_logged_without_patient_identifiers(call, app):
    [card] = codeine(call, "order-select")
    assert "_issued" not in card
    [row] = app.extensions["pgx"]["store"].card_log.all()
    assert row["card_uuid"] == card["uuid"]
    assert row["drug"] == "codeine" and row["genes"] == "CYP2D6"
    assert row["recommendation_id"] == "codeine-cyp2d6-um" and row["indicator"] == "critical"
    assert row["hook"] == "order-select" and row["service_id"] == "pgx-order-select"
    assert row["shown"] is True and row["knowledge_version"]
    assert PATIENT not in str(row) and len(row["patient_hash"]) == 64


def test_overridden_advice_is_not_shown_again_for_the_same_order(call, client):
    [card] = codeine(call, "order-select")
    override(client, "pgx-order-select", card["uuid"])
    assert codeine(call, "order-sign") == []  # same order, same session: not again
    assert len(codeine(call, "order-sign", order_id="rx-2")) == 1  # another order: shown


def test_override_without_a_reason_does_not_suppress(call, client):
    [card] = codeine(call, "order-select")
    override(client, "pgx-order-select", card["uuid"], reason=None)
    assert len(codeine(call, "order-sign")) == 1


def test_feedback_for_an_unknown_card_is_stored_and_flagged(call, client, app):
    [card] = codeine(call, "order-select")
    override(client, "pgx-order-select", card["uuid"])
    override(client, "pgx-order-select", "not-a-card-we-issued")
    rows = app.extensions["pgx"]["store"].all()
    assert [(r["card_uuid"], r["card_known"]) for r in rows] == [
        (card["uuid"], True),
        ("not-a-card-we-issued", False),
    ]


def test_repeated_feedback_is_acknowledged_and_stored_once(call, client, app):
    [card] = codeine(call, "order-select")
    item = {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": "s-1"}],
        "outcomeTimestamp": "2026-11-29T10:00:00+01:00",
    }
    same_instant = {**item, "outcomeTimestamp": "2026-11-29T09:00:00Z"}
    url = "/cds-services/pgx-order-select/feedback"
    first = client.post(url, json={"feedback": [item, item]})  # twice in one request
    retry = client.post(url, json={"feedback": [same_instant]})  # the client's retry
    assert (first.status_code, first.get_json()) == (200, {"stored": 1})
    assert (retry.status_code, retry.get_json()) == (200, {"stored": 0})
    later = client.post(url, json={"feedback": [{**item, "outcomeTimestamp": "2026-11-29T11:00Z"}]})
    assert later.get_json() == {"stored": 1}  # a new outcome time is a new item
    assert len(app.extensions["pgx"]["store"].all()) == 2


def test_the_latest_override_is_read_from_an_index_not_a_scan_of_the_log(tmp_path):
    """Asked on the hook path (once a second per process): with a year of cards in the log, a
    scan took about 150 ms with a million rows (bench/bench_card_log.py)."""
    from sqlalchemy import create_engine, text

    from cds_service import schema
    from cds_service.card_log import LATEST_OVERRIDE

    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    schema.upgrade(engine)
    sql = str(LATEST_OVERRIDE.compile(engine))
    with engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
    assert "INDEX ix_card_log_overridden_at" in plan, plan
