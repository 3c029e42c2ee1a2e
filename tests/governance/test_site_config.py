"""The site configuration file: what a committee switches on, silences or off, per drug,
drug-gene pair and hook; silent cards are logged but never returned; the file is validated at
start with messages naming the problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from builders import (
    APAP_CODEINE,
    TRAMADOL,
    genotype_obs,
    hook_request,
    med_order,
    phenotype_obs,
    with_results,
)

from cds_service.cli import main
from cds_service.governance.site_config import SiteConfigError
from cds_service.settings import Settings, default_knowledge_dir
from cds_service.web.app import create_app

UM = phenotype_obs("Ultrarapid Metabolizer")
AMITRIPTYLINE = ("704", "amitriptyline")
CARBAMAZEPINE = ("308979", "Carbamazepine 200 MG Oral Tablet")
SERVICE = {
    "order-select": "pgx-order-select",
    "order-sign": "pgx-order-sign",
    "medication-prescribe": "pgx-medication-prescribe",
}


class Site:
    """An app configured with a site file, and what its card log holds."""

    def __init__(self, tmp_path: Path, settings: Settings, config: dict[str, Any] | None):
        update: dict[str, Any] = {}
        if config is not None:
            path = tmp_path / "site.json"
            path.write_text(json.dumps(config))
            update["site_config"] = path
        self.app = create_app(settings.model_copy(update=update))
        self.client = self.app.test_client()

    def call(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        response = self.client.post(f"/cds-services/{SERVICE[body['hook']]}", json=body)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["cards"]

    def log(self) -> list[tuple[str, bool]]:
        return [
            (r["recommendation_id"], r["shown"])
            for r in self.app.extensions["pgx"].store.card_log.all()
        ]


@pytest.fixture
def site(tmp_path, settings):
    def make(config: dict[str, Any] | None) -> Site:
        return Site(tmp_path, settings, config)

    return make


def opioids(hook: str = "order-select") -> dict[str, Any]:
    """Codeine and tramadol ordered together for a CYP2D6 ultrarapid metabolizer."""
    orders = [med_order(APAP_CODEINE, order_id="rx-1"), med_order(TRAMADOL, order_id="rx-2")]
    return hook_request(hook, orders, prefetch=with_results(UM))


def summaries(cards: list[dict[str, Any]]) -> list[str]:
    return sorted(c["source"]["topic"]["code"] for c in cards)


def test_without_a_site_file_every_card_is_shown(site):
    s = site(None)
    assert summaries(s.call(opioids())) == ["codeine-cyp2d6-um", "tramadol-cyp2d6-um"]
    assert sorted(s.log()) == [("codeine-cyp2d6-um", True), ("tramadol-cyp2d6-um", True)]


def test_silent_mode_returns_no_cards_while_the_card_log_grows(site):
    s = site({"silent": True, "drugs": {"codeine": "on"}})  # silent wins over "on"
    assert s.call(opioids()) == []
    assert s.call(opioids("order-sign")) == []
    assert sorted(s.log()) == [
        ("codeine-cyp2d6-um", False),
        ("codeine-cyp2d6-um", False),
        ("tramadol-cyp2d6-um", False),
        ("tramadol-cyp2d6-um", False),
    ]


def test_turning_codeine_on_shows_codeine_cards_and_nothing_else(site):
    silent = site({"default": "silent"})
    assert silent.call(opioids()) == []
    assert len(silent.log()) == 2  # logged, not shown
    on = site({"default": "silent", "drugs": {"codeine": "on"}})
    cards = on.call(opioids())
    assert summaries(cards) == ["codeine-cyp2d6-um"]
    assert "codeine" in cards[0]["summary"].lower()
    # one database: the silent call's two rows, then this call's
    assert sorted(on.log()[2:]) == [("codeine-cyp2d6-um", True), ("tramadol-cyp2d6-um", False)]


def test_a_drug_switched_off_is_neither_shown_nor_logged(site):
    s = site({"drugs": {"tramadol": "off"}})
    assert summaries(s.call(opioids())) == ["codeine-cyp2d6-um"]
    assert s.log() == [("codeine-cyp2d6-um", True)]


def test_a_two_gene_card_takes_the_most_restrictive_gene_mode(site):
    d6 = genotype_obs("*1/*1", obs_id="d6")
    c19 = genotype_obs("*2/*2", gene="CYP2C19", obs_id="c19")
    both = hook_request("order-select", [med_order(AMITRIPTYLINE)], prefetch=with_results(d6, c19))
    d6_only = hook_request(
        "order-select",
        [med_order(AMITRIPTYLINE)],
        prefetch=with_results(genotype_obs("*4/*4", obs_id="d6")),
    )
    s = site({"drugs": {"amitriptyline": {"mode": "on", "genes": {"CYP2C19": "silent"}}}})
    assert s.call(both) == []  # CYP2D6 + CYP2C19 card: CYP2C19 is silent
    [card] = s.call(d6_only)  # CYP2D6 alone: shown
    assert card["source"]["topic"]["code"].startswith("amitriptyline-cyp2d6")
    assert [shown for _, shown in s.log()] == [False, True]


def test_hooks_are_switched_one_by_one(site):
    s = site({"hooks": {"order-select": "off", "order-sign": "silent"}})
    services = [x["id"] for x in s.client.get("/cds-services").get_json()["services"]]
    assert services == ["pgx-order-sign", "pgx-medication-prescribe", "pgx-patient-view"]
    assert s.call(opioids("order-select")) == []  # off: not evaluated, nothing logged
    assert s.log() == []
    assert s.call(opioids("order-sign")) == []  # silent: evaluated and logged only
    assert sorted(s.log()) == [("codeine-cyp2d6-um", False), ("tramadol-cyp2d6-um", False)]
    prescribe = hook_request(
        "medication-prescribe", [med_order(APAP_CODEINE)], prefetch=with_results(UM)
    )
    assert summaries(s.call(prescribe)) == ["codeine-cyp2d6-um"]


def test_an_indicator_override_changes_the_card_and_its_log_row(site):
    s = site({"indicators": {"codeine-cyp2d6-um": "warning"}})
    cards = s.call(opioids())
    assert [(c["source"]["topic"]["code"], c["indicator"]) for c in cards] == [
        ("tramadol-cyp2d6-um", "critical"),  # re-sorted: critical first
        ("codeine-cyp2d6-um", "warning"),
    ]
    rows = s.app.extensions["pgx"].store.card_log.all()
    assert {r["recommendation_id"]: r["indicator"] for r in rows}["codeine-cyp2d6-um"] == "warning"


def test_pretest_cards_are_switched_in_the_site_file(site):
    untested_codeine = hook_request(
        "order-select", [med_order(APAP_CODEINE)], prefetch=with_results()
    )
    untested_cbz = hook_request("order-select", [med_order(CARBAMAZEPINE)], prefetch=with_results())
    assert site(None).call(untested_codeine) == []  # off by default
    s = site({"pretest": {"codeine": True, "carbamazepine": False}})
    [card] = s.call(untested_codeine)
    assert card["source"]["topic"]["code"] == "codeine-pretest-CYP2D6"
    assert s.call(untested_cbz) == []  # on by default, switched off by the site
    assert s.log() == [("codeine-pretest-CYP2D6", True)]


def test_pretest_drugs_setting_still_works(tmp_path, settings):
    s = Site(tmp_path, settings.model_copy(update={"pretest_drugs": "codeine"}), None)
    body = hook_request("order-select", [med_order(APAP_CODEINE)], prefetch=with_results())
    assert summaries(s.call(body)) == ["codeine-pretest-CYP2D6"]


def test_site_codes_in_the_site_file_join_the_prefetch_query(site):
    s = site({"codes": {"http://lab.example.org|D6-P": {"kind": "phenotype", "gene": "CYP2D6"}}})
    [service] = s.client.get("/cds-services").get_json()["services"][:1]
    assert "http://lab.example.org|D6-P" in service["prefetch"]["genomicResults"]
    local = phenotype_obs("Ultrarapid Metabolizer")
    local["code"] = {"coding": [{"system": "http://lab.example.org", "code": "D6-P"}]}
    local.pop("component", None)  # the gene comes from the mapping
    body = hook_request("order-select", [med_order(APAP_CODEINE)], prefetch=with_results(local))
    assert summaries(s.call(body)) == ["codeine-cyp2d6-um"]
    assert site(None).call(body) == []  # unmapped, the local code means nothing


def test_example_site_config_is_valid(tmp_path, settings):
    example = default_knowledge_dir() / "site-config.example.json"
    app = create_app(settings.model_copy(update={"site_config": example}))
    services = app.test_client().get("/cds-services").get_json()["services"]
    assert "pgx-medication-prescribe" not in [x["id"] for x in services]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["codeine"]', "expected a JSON object"),
        ('{"drugs": {"codeine": "loud"}}', "drugs.codeine"),
        ('{"silnet": true}', "silnet: Extra inputs are not permitted"),
        ('{"hooks": {"encounter-start": "on"}}', "hooks.encounter-start"),
        ('{"drugs": {"aspirin-x": "on"}}', "'aspirin-x' is not a drug the knowledge covers"),
        (
            '{"drugs": {"codeine": {"genes": {"CYP2C9": "off"}}}}',
            "'CYP2C9' is not a gene of codeine's recommendations (one of CYP2D6)",
        ),
        ('{"indicators": {"codeine-um": "info"}}', "'codeine-um' is neither a recommendation"),
        ('{"pretest": {"morphine": true}}', "'morphine' has no pre-test card"),
        ('{"codes": {"x|y": {"kind": "bogus"}}}', "site.json is invalid:\n  codes.x|y.kind"),
    ],
)
def test_a_bad_site_file_stops_start_up_naming_the_problem(tmp_path, settings, content, message):
    path = tmp_path / "site.json"
    path.write_text(content)
    with pytest.raises(Exception) as caught:
        create_app(settings.model_copy(update={"site_config": path}))
    assert message in str(caught.value)


def test_a_missing_site_file_is_an_error(tmp_path, settings):
    with pytest.raises(SiteConfigError, match="cannot read"):
        create_app(settings.model_copy(update={"site_config": tmp_path / "nope.json"}))


def test_knowledge_check_checks_the_site_file(tmp_path, monkeypatch, capsys):
    path = tmp_path / "site.json"
    path.write_text('{"drugs": {"kodeine": "on"}}')
    monkeypatch.setenv("PGX_CDS_SITE_CONFIG", str(path))
    assert main(["knowledge", "check"]) == 1
    assert "'kodeine' is not a drug the knowledge covers" in capsys.readouterr().err
    path.write_text('{"drugs": {"codeine": "on"}}')
    assert main(["knowledge", "check"]) == 0
    assert "site configuration" in capsys.readouterr().out


def test_patient_view_can_be_switched_off(site):
    s = site({"hooks": {"patient-view": "off"}})
    services = [x["id"] for x in s.client.get("/cds-services").get_json()["services"]]
    assert "pgx-patient-view" not in services


# -- issue 26, item 14: start-up reads the site file with a size cap -------------------------


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_named_as_the_site_file_stops_the_start_at_once(settings, device):
    """Read whole, /dev/zero ran a machine out of memory."""
    with pytest.raises(SiteConfigError, match="not a regular file"):
        create_app(settings.model_copy(update={"site_config": Path(device)}))


def test_a_named_pipe_does_not_block_the_start(tmp_path, settings):
    import os

    pipe = tmp_path / "site.json"
    os.mkfifo(pipe)
    with pytest.raises(SiteConfigError, match="not a regular file"):
        create_app(settings.model_copy(update={"site_config": pipe}))


def test_a_site_file_larger_than_a_megabyte_is_refused_unread(tmp_path, settings):
    huge = tmp_path / "site.json"
    with huge.open("w") as fh:  # valid JSON, padded past the cap
        fh.write('{"description": "' + "x" * (1024 * 1024) + '"}')
    with pytest.raises(SiteConfigError, match="larger than 1024 KB"):
        create_app(settings.model_copy(update={"site_config": huge}))


def test_site_codes_from_a_device_are_refused(monkeypatch, capsys):
    monkeypatch.setenv("PGX_CDS_SITE_CODES", "/dev/zero")
    assert main(["knowledge", "check"]) == 1
    assert "not a regular file" in capsys.readouterr().err
