"""The site's alerting policy (``PGX_CDS_SITE_CONFIG``): what is shown, what only logged.

A hospital's pharmacogenomics committee goes live in steps: everything silent first (cards are
evaluated and written to the card log, never returned), then drug by drug. The file says, as
JSON (see ``knowledge/site-config.example.json``)::

    {
     "silent": false,                 // true: every card silent, whatever else says
     "default": "silent",             // drugs not listed: on | silent | off
     "drugs": {
      "codeine": "on",
      "amitriptyline": {"mode": "on", "genes": {"CYP2C19": "silent"}}
     },
     "indicators": {"celecoxib-cyp2c9-as1": "info"},   // recommendation id (or drug) -> indicator
     "pretest": {"codeine": true, "oxcarbazepine": false},
     "hooks": {"order-select": "on", "order-sign": "on", "medication-prescribe": "off"},
     "codes": {"system|code": {"kind": "phenotype", "gene": "CYP2D6"}},
     "ehr": "epic",                   // the cards adapted to what the EHR supports (ehr.py)
     "guidelines": ["dpwg", "cpic"],  // wins over PGX_CDS_GUIDELINES
     "drug_codes": {"system|code": {"name": "...", "ingredients": ["codeine", "acetaminophen"]}}
    }

Modes: ``on`` shows the card; ``silent`` evaluates and logs it (``shown`` false) without
returning it; ``off`` drops it unlogged (an ``off`` drug is not even evaluated). A card naming
several genes takes the most restrictive mode of its genes (off, then silent, then on). A hook
that is ``off`` is left out of discovery and a call to it answers ``{"cards": []}`` without
evaluating anything; a ``silent`` hook evaluates and logs only.

The file is validated against the knowledge at start-up: an unknown drug, gene, recommendation
id, hook or mode stops the service with a message naming it. ``PGX_CDS_SITE_CODES`` and
``PGX_CDS_PRETEST_DRUGS`` keep working; the file's ``codes`` and ``pretest`` add to them.
``guidelines`` (the guideline sets, in order: ``cpic``, ``dpwg``) replaces
``PGX_CDS_GUIDELINES``; ``drug_codes`` are the site's own drug codes (``"system|code"`` ->
the product's name, ingredients as the knowledge spells them and, optionally, ``strengths``
in mg per tablet or capsule), read as the knowledge's ATC and SNOMED CT codes are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from ..core.files import TooLarge, read_config
from ..core.trace import Trace
from ..knowledge.loader import Knowledge, KnowledgeError
from ..knowledge.models import GUIDELINE_SETS, ResultKind
from ..settings import Settings
from ..store.card_log import IssuedCard

Mode = Literal["on", "silent", "off"]
Indicator = Literal["info", "warning", "critical"]
HOOKS = ("order-select", "order-sign", "medication-prescribe", "patient-view")
_RANK = {"on": 0, "silent": 1, "off": 2}
_INDICATOR_ORDER = {"critical": 0, "warning": 1, "info": 2}


class SiteConfigError(KnowledgeError):
    """The site configuration file is missing, unreadable or invalid."""


class DrugRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Mode = "on"
    genes: dict[str, Mode] = Field(default_factory=dict)


class SiteDrugCode(BaseModel):
    """A site's own drug code: what the product holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=200)
    ingredients: list[str] = Field(min_length=1)
    strengths: dict[str, float] = Field(default_factory=dict)


class SiteConfig(BaseModel):
    """The validated site file (all defaults: every card shown, every hook active)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str | None = None
    silent: bool = False
    default: Mode = "on"
    drugs: dict[str, Mode | DrugRule] = Field(default_factory=dict)
    indicators: dict[str, Indicator] = Field(default_factory=dict)
    pretest: dict[str, bool] = Field(default_factory=dict)
    hooks: dict[
        Literal["order-select", "order-sign", "medication-prescribe", "patient-view"], Mode
    ] = Field(default_factory=dict)
    codes: dict[str, ResultKind] = Field(default_factory=dict)
    #: the EHR the cards are shaped for: ``standard`` (CDS Hooks 2.0.1 as written) or
    #: ``epic`` (what Epic documents it supports: see ``governance/ehr.py``)
    ehr: Literal["standard", "epic"] = "standard"
    #: the guideline sets, in order (None: PGX_CDS_GUIDELINES)
    guidelines: list[Literal["cpic", "dpwg"]] | None = Field(default=None, min_length=1)
    drug_codes: dict[str, SiteDrugCode] = Field(default_factory=dict)
    #: the file it was read from and the SHA-256 of its bytes (None: no site file)
    _origin: tuple[str, str] | None = PrivateAttr(default=None)

    # -- what it is, for start-up and readiness ------------------------------------

    @property
    def mode(self) -> Literal["silent", "live", "staged"]:
        """``silent``: no card is shown (the whole file, or every hook, silent or off);
        ``live``: every card shown as the knowledge gives it; ``staged``: some drugs, genes
        or hooks silent or off."""
        hook_modes = [self.hook_mode(h) for h in HOOKS]
        if self.silent or all(m != "on" for m in hook_modes):
            return "silent"
        rules = [self.default, *(self.drug_mode(d) for d in self.drugs)]
        rules += [
            m for r in self.drugs.values() if isinstance(r, DrugRule) for m in r.genes.values()
        ]
        if all(m == "on" for m in [*rules, *hook_modes]):
            return "live"
        return "staged"

    def describe(self) -> dict[str, Any]:
        """The policy in force, as ``/readyz`` shows it and the start-up line logs it."""
        path, digest = self._origin or (None, None)
        return {
            "mode": self.mode,
            "silent": self.silent,
            "file": path,
            "sha256": digest,
            "ehr": self.ehr,
        }

    # -- the policy -----------------------------------------------------------------

    def hook_mode(self, hook: str) -> Mode:
        mode = self.hooks.get(hook, "on")  # type: ignore[call-overload]
        return "silent" if self.silent and mode == "on" else mode

    def active_hooks(self) -> frozenset[str]:
        """Hooks offered in discovery (those not ``off``)."""
        return frozenset(h for h in HOOKS if self.hooks.get(h, "on") != "off")  # type: ignore[call-overload]

    def drug_mode(self, drug: str) -> Mode:
        rule = self.drugs.get(drug, self.default)
        return rule.mode if isinstance(rule, DrugRule) else rule

    def card_mode(self, issued: IssuedCard, hook: str) -> Mode:
        """on, silent or off for one card on one hook: the most restrictive that applies."""
        rule = self.drugs.get(issued.drug, self.default)
        modes = [rule.mode if isinstance(rule, DrugRule) else rule, self.hook_mode(hook)]
        if isinstance(rule, DrugRule):
            modes += [rule.genes[g] for g in issued.genes.split("/") if g in rule.genes]
        mode = max(modes, key=_RANK.__getitem__)
        return "silent" if self.silent and mode == "on" else mode

    def indicator_for(self, issued: IssuedCard) -> str:
        return self.indicators.get(
            issued.recommendation_id, self.indicators.get(issued.drug, issued.indicator)
        )

    def pretest_drugs(self, knowledge: Knowledge, switched_on: frozenset[str]) -> frozenset[str]:
        """Drugs that get a pre-test card when untested: the knowledge's defaults and those
        ``switched_on`` (PGX_CDS_PRETEST_DRUGS) or on in the file, less those the file
        switches off."""
        return frozenset(
            d
            for d, p in knowledge.pretest.drugs.items()
            if (p.default or d in switched_on or self.pretest.get(d)) and self.pretest.get(d, True)
        )

    # -- validation against the knowledge ---------------------------------------------

    def problems(self, knowledge: Knowledge) -> list[str]:
        out = []
        if self.guidelines is not None and len(set(self.guidelines)) < len(self.guidelines):
            out.append(f"guidelines: each of {', '.join(GUIDELINE_SETS)} at most once")
        known = knowledge.drugs.keys() | knowledge.inhibitor_ingredients
        for key, code in self.drug_codes.items():
            system, bar, value = key.rpartition("|")
            if not bar or not system or not value:
                out.append(f"drug_codes: {key!r} is not 'system|code'")
            if not known & set(code.ingredients):
                out.append(
                    f"drug_codes.{key}: none of {code.ingredients} is a drug the knowledge knows"
                )
        covered = knowledge.covered_drugs
        for drug, rule in self.drugs.items():
            if drug not in covered:
                out.append(f"drugs: {drug!r} is not a drug the knowledge covers")
                continue
            if isinstance(rule, DrugRule):
                genes = {g for r in knowledge.recommendations_for(drug) for g in r.when}
                out += [
                    f"drugs.{drug}.genes: {g!r} is not a gene of {drug}'s recommendations "
                    f"(one of {', '.join(sorted(genes))})"
                    for g in rule.genes
                    if g not in genes
                ]
        ids = (
            {r.id for r in knowledge.recommendations}
            | {r.id for r in knowledge.label_rules}
            | {f"{d}-pretest-{p.test}" for d, p in knowledge.pretest.drugs.items()}
            | {r.id for r in knowledge.unclear_rules}
            | {f"{d}-unclear-{p.test}" for d, p in knowledge.pretest.drugs.items()}
        )
        out += [
            f"indicators: {key!r} is neither a recommendation id nor a covered drug"
            for key in self.indicators
            if key not in ids and key not in covered
        ]
        out += [
            f"pretest: {drug!r} has no pre-test card (one of "
            f"{', '.join(sorted(knowledge.pretest.drugs))})"
            for drug in self.pretest
            if drug not in knowledge.pretest.drugs
        ]
        return out


def read(path: Path) -> SiteConfig:
    """Parse and validate the file's shape (not yet against the knowledge)."""
    try:
        raw = read_config(path)
        data = json.loads(raw)
    except OSError as exc:
        raise SiteConfigError(f"site configuration {path}: cannot read: {exc.strerror}") from None
    except TooLarge as exc:
        raise SiteConfigError(f"site configuration: {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SiteConfigError(f"site configuration {path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SiteConfigError(f"site configuration {path}: expected a JSON object")
    try:
        site = SiteConfig.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        ]
        raise SiteConfigError(
            f"site configuration {path} is invalid:\n  " + "\n  ".join(lines)
        ) from None
    site._origin = (str(path), hashlib.sha256(raw.encode("utf-8")).hexdigest())
    return site


def load(settings: Settings) -> tuple[Knowledge, SiteConfig]:
    """The knowledge (with the site's codes) and the site policy, both validated, and the drugs
    of PGX_CDS_PRETEST_DRUGS known; raises ``KnowledgeError`` (``SiteConfigError`` for the
    site file) naming every problem."""
    site = read(settings.site_config) if settings.site_config else SiteConfig()
    codes = {key: kind.model_dump(exclude_none=True) for key, kind in site.codes.items()}
    knowledge = Knowledge(
        settings.knowledge_dir,
        settings.site_codes,
        extra_codes=codes,
        guidelines=tuple(site.guidelines or settings.guideline_list),
        drug_codes={key: code.model_dump() for key, code in site.drug_codes.items()},
    )
    unknown = sorted(settings.pretest_drug_set - knowledge.pretest.drugs.keys())
    if unknown:
        raise KnowledgeError(
            f"invalid setting: PGX_CDS_PRETEST_DRUGS: {', '.join(map(repr, unknown))}: no "
            f"pre-test card (drugs with one: {', '.join(sorted(knowledge.pretest.drugs))})"
        )
    problems = site.problems(knowledge)
    if problems:
        raise SiteConfigError(
            f"site configuration {settings.site_config} does not fit the knowledge:\n  "
            + "\n  ".join(problems)
        )
    return knowledge, site


def apply(
    built: list[dict[str, Any]], issued: list[IssuedCard], hook: str, site: SiteConfig, trace: Trace
) -> tuple[list[dict[str, Any]], list[IssuedCard], list[IssuedCard]]:
    """The site policy, in one place: (cards to return, their log records, silent records).

    ``off`` cards are dropped unlogged; ``silent`` ones are only logged; indicator overrides
    change the card and its record, and the cards are re-sorted by indicator."""
    by_uuid = {c["uuid"]: c for c in built}
    shown: list[IssuedCard] = []
    silent: list[IssuedCard] = []
    for record in issued:
        mode = site.card_mode(record, hook)
        if mode != "on":
            trace.add("site", f"{record.recommendation_id}: {mode} by site configuration")
            if mode == "silent":
                silent.append(record)
            continue
        level = site.indicator_for(record)
        if level != record.indicator:
            trace.add(
                "site", f"{record.recommendation_id}: indicator {level} by site configuration"
            )
            by_uuid[record.uuid]["indicator"] = level
            record = dataclasses.replace(record, indicator=level)
        shown.append(record)
    keep = {r.uuid for r in shown}
    cards = sorted(
        (c for c in built if c["uuid"] in keep), key=lambda c: _INDICATOR_ORDER[c["indicator"]]
    )
    return cards, shown, silent
