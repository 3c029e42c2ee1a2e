"""Feedback is validated and stored before the 2xx; a bad batch stores nothing."""

from __future__ import annotations

import pytest

from cds_service.store.feedback import FeedbackStore

URL = "/cds-services/pgx-order-select/feedback"


def store_of(app) -> FeedbackStore:
    return app.extensions["pgx"].store


def test_accepted_and_overridden_items_are_stored(client, app):
    body = {
        "feedback": [
            {
                "card": "card-1",
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": "sugg-1"}],
                "outcomeTimestamp": "2026-11-28T10:00:00Z",
            },
            {
                "card": "card-2",
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {
                        "code": "tolerated-before",
                        "system": "urn:pgx-pain-cds:override-reason",
                    },
                    "userComment": "took it for years",
                },
                "outcomeTimestamp": "2026-11-28T10:01:00Z",
            },
        ]
    }
    response = client.post(URL, json=body)
    assert response.status_code == 200
    rows = store_of(app).all()
    assert [(r["card_uuid"], r["outcome"], r["service_id"]) for r in rows] == [
        ("card-1", "accepted", "pgx-order-select"),
        ("card-2", "overridden", "pgx-order-select"),
    ]
    assert rows[0]["accepted_suggestions"] == ["sugg-1"]
    assert rows[1]["override_reason_code"] == "tolerated-before"
    assert rows[1]["override_comment"] == "took it for years"
    assert rows[0]["outcome_timestamp"].year == 2026 and rows[0]["received_at"] is not None


def test_feedback_survives_a_restart(settings):
    from cds_service.web.app import create_app

    first = create_app(settings).test_client()
    first.post(
        URL,
        json={
            "feedback": [
                {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-11-28T10:00:00Z"}
            ]
        },
    )
    again = create_app(settings)
    assert [r["card_uuid"] for r in store_of(again).all()] == ["c"]


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        (
            {
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": "s"}],
                "outcomeTimestamp": "2026-11-28T10:00:00Z",
            },
            "card",
        ),
        ({"card": "c", "outcome": "maybe", "outcomeTimestamp": "2026-11-28T10:00:00Z"}, "outcome"),
        (
            {"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-11-28T10:00:00Z"},
            "acceptedSuggestions",
        ),
        ({"card": "c", "outcome": "overridden"}, "outcomeTimestamp"),
        (
            {"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"},
            "outcomeTimestamp",
        ),
    ],
)
def test_one_bad_item_rejects_the_whole_request(client, app, item, problem):
    good = {"card": "ok", "outcome": "overridden", "outcomeTimestamp": "2026-11-28T10:00:00Z"}
    response = client.post(URL, json={"feedback": [good, item]})
    assert response.status_code == 400
    assert problem in str(response.get_json())
    assert store_of(app).all() == []


@pytest.mark.parametrize("body", [b"nope", b"[]", b'{"feedback": []}', b'{"feedback": {}}', b"{}"])
def test_malformed_feedback_body(client, app, body):
    response = client.post(URL, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]
    assert store_of(app).all() == []


def test_feedback_for_unknown_service_is_404(client):
    response = client.post("/cds-services/nope/feedback", json={"feedback": []})
    assert response.status_code == 404


def test_sandbox_override_without_display_is_accepted(client, app):
    """The public sandbox sends the override reason's code and system only."""
    body = {
        "feedback": [
            {
                "card": "c",
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-28T10:00:00.000Z",
                "overrideReason": {
                    "reason": {
                        "code": "no-alternative",
                        "system": "urn:pgx-pain-cds:override-reason",
                    }
                },
            }
        ]
    }
    assert client.post(URL, json=body).status_code == 200
    assert store_of(app).all()[0]["override_reason_code"] == "no-alternative"


# -- Epic's feedback (issue 27, item 1): overrideReasons, plural, reason or extension --------


def _epic_item(reasons: dict) -> dict:
    return {
        "card": "epic-card",
        "outcome": "overridden",
        "outcomeTimestamp": "2022-05-19T19:44:04Z",
        "overrideReasons": reasons,
    }


def test_epics_plural_override_reasons_are_stored_as_the_specs(client, app):
    """Epic's tutorial: ``overrideReasons`` with ``reason`` and ``userComment``."""
    item = _epic_item(
        {
            "reason": {"code": "will-monitor", "system": "urn:pgx-pain-cds:override-reason"},
            "userComment": "User Entered Free Text",
        }
    )
    assert client.post(URL, json={"feedback": [item]}).get_json() == {"stored": 1}
    (row,) = store_of(app).all()
    assert row["override_reason_code"] == "will-monitor"
    assert row["override_comment"] == "User Entered Free Text"


def test_epics_reasons_built_in_epic_arrive_in_an_extension_and_are_kept(client, app):
    prefix = "com.epic.cdshooks.feedback.overrideReason."
    item = _epic_item(
        {
            "extension": {
                prefix + "reasonCategory": "45",
                prefix + "reasonDisplay": "Does not meet criteria",
                prefix + "reasonTitle": "Does not meet criteria",
            },
            "userComment": "User Entered Free Text",
        }
    )
    assert client.post(URL, json={"feedback": [item]}).get_json() == {"stored": 1}
    (row,) = store_of(app).all()
    assert (row["override_reason_code"], row["override_reason_display"]) == (
        "45",
        "Does not meet criteria",
    )
    assert row["override_reason_system"] == "urn:com.epic.cdshooks.feedback.overrideReason"


def test_the_specs_override_reason_wins_over_a_plural_beside_it(client, app):
    item = _epic_item({"reason": {"code": "plural"}})
    item["overrideReason"] = {"reason": {"code": "singular"}}
    assert client.post(URL, json={"feedback": [item]}).status_code == 200
    assert store_of(app).all()[0]["override_reason_code"] == "singular"


def test_a_malformed_plural_reason_is_a_400_naming_it(client, app):
    response = client.post(URL, json={"feedback": [_epic_item({"reason": {"code": ""}})]})
    assert response.status_code == 400 and "overrideReason" in str(response.get_json())
    assert store_of(app).all() == []
