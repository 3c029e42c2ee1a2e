#!/usr/bin/env python3
"""Build ``knowledge/snomed_products.json``: SNOMED CT and UK dm+d product codes of the drugs
the service knows, with what each product contains (and its strength per tablet or capsule
where the product's name states it).

Sources (public code lists whose rows give each code with its SNOMED CT or dm+d term):

* ``--gm-sde``: a checkout of github.com/UoM-Data-Science-Platforms/gm-sde; its
  ``shared/clinical-code-sets/medications/<drug>/1/<drug>.snomed.txt`` lists (tab-separated
  code and term): SNOMED CT international concepts ("Product containing codeine (medicinal
  product)", "Product containing precisely codeine phosphate 30 milligram and paracetamol 500
  milligram/1 each conventional release oral tablet (clinical drug)") and dm+d products
  ("Amitriptyline 10mg tablets").
* ``--opensafely``: a checkout of github.com/opensafely/opioids-covid-research; its dm+d
  codelist of oral opioid-containing medicines (rows labelled VMP or AMP).

Only rows whose term has one of the shapes below are taken, so a list's other rows (a drug
level test, a brand whose name does not say its ingredients, a pack) are left out; a code is
kept only when every ingredient its term names maps to a name (covered drugs, CYP2D6
inhibitors and a few others by their ``drugs.json`` spelling: paracetamol is
'acetaminophen'). The service never reads the sources: it loads the committed output.

Usage: ``python scripts/build_drug_codes.py --gm-sde PATH --opensafely PATH``
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "knowledge" / "snomed_products.json"

#: gm-sde medication lists read (those that exist for the service's drugs)
GM_SDE_LISTS = (
    "codeine",
    "opioids",
    "amitriptyline",
    "nortriptyline",
    "clomipramine",
    "doxepin",
    "imipramine",
    "carbamazepine",
    "oxcarbazepine",
    "venlafaxine",
    "duloxetine",
    "nsaids",
)
OPENSAFELY_LIST = (
    "codelists/opensafely-opioid-containing-medicines-oral-excluding-drugs-for-substance-misuse-"
    "dmd.csv"
)
#: substance words -> the name the knowledge uses
SPELLING = {"paracetamol": "acetaminophen", "acetylsalicylic": "aspirin"}
#: BAN names of combinations in dm+d terms -> (ingredients in the order of their strengths)
COMBINATIONS = {
    "co-codamol": ("codeine", "acetaminophen"),
    "co-codaprin": ("codeine", "aspirin"),
    "co-dydramol": ("dihydrocodeine", "acetaminophen"),
}
_SOLID = (
    r"(?:modified-release |gastro-resistant |orodispersible |soluble |dispersible |"
    r"effervescent |chewable )?(?:tablets|capsules|caplets)(?: sugar free)?"
)
_MG = r"(\d+(?:\.\d+)?)mg"
SINGLE = re.compile(rf"^([A-Z][a-z]+) {_MG} ({_SOLID})$")
PAIR = re.compile(rf"^([A-Z][a-z]+) {_MG} / ([A-Z][a-z]+) {_MG} ({_SOLID})$")
BAN = re.compile(rf"^(Co-[a-z]+) {_MG}/{_MG} ({_SOLID})$")
PRECISELY = re.compile(
    r"^Product containing precisely (.+?)/1 each (?:conventional|prolonged)[- ]release "
    r"(?:effervescent |chewable |orodispersible )?oral (?:tablet|capsule) \(clinical drug\)$"
)
CONTAINING = re.compile(
    r"^Product containing (?:only )?(.+?)(?: in (?:oral|parenteral|rectal) dose form)? "
    r"\(medicinal product(?: form)?\)$"
)
_UNITS = {"milligram": 1.0, "gram": 1000.0, "microgram": 0.001}


def ingredient(words: str, known: set[str]) -> str | None:
    """'codeine phosphate' -> 'codeine'; 'venlafaxine (as venlafaxine hydrochloride)' ->
    'venlafaxine'; None for a substance the knowledge does not name."""
    first = words.strip().split(" ")[0].lower()
    name = SPELLING.get(first, first)
    return name if name in known else None


def read_term(term: str, known: set[str]) -> dict[str, Any] | None:
    """What a code's term says the product holds, or None (not a shape taken)."""
    term = re.sub(r"(?: \((?!as )[^()]*\))+$", "", term.strip()) if "(" in term else term
    term = term.strip()
    m = SINGLE.match(term)
    if m and (name := ingredient(m.group(1), known)):
        return {"ingredients": [name], "strengths": {name: float(m.group(2))}, "kind": "dm+d"}
    m = PAIR.match(term)
    if m:
        a, b = ingredient(m.group(1), known), ingredient(m.group(3), known)
        if a and b:
            strengths = {a: float(m.group(2)), b: float(m.group(4))}
            return {"ingredients": [a, b], "strengths": strengths, "kind": "dm+d"}
    m = BAN.match(term)
    if m and m.group(1).lower() in COMBINATIONS:
        a, b = COMBINATIONS[m.group(1).lower()]
        if a in known:
            strengths = {a: float(m.group(2)), b: float(m.group(3))}
            return {"ingredients": [a, b], "strengths": strengths, "kind": "dm+d"}
    return None


def read_snomed_term(term: str, known: set[str]) -> dict[str, Any] | None:
    """A SNOMED CT international concept's fully specified name: a clinical drug (with its
    strengths per tablet or capsule) or a medicinal product (ingredients only)."""
    m = PRECISELY.match(term)
    if m:
        ingredients, strengths = [], {}
        for part in m.group(1).split(" and "):
            found = re.match(r"^(.+?) (\d+(?:\.\d+)?) (milligram|gram|microgram)$", part.strip())
            if not found:
                return None
            name = ingredient(found.group(1), known)
            if name is None:
                return None
            ingredients.append(name)
            strengths[name] = float(found.group(2)) * _UNITS[found.group(3)]
        return {
            "ingredients": ingredients,
            "strengths": strengths,
            "kind": "SNOMED CT clinical drug",
        }
    m = CONTAINING.match(term)
    if m and "precisely" not in m.group(1):
        names = [ingredient(p, known) for p in m.group(1).split(" and ")]
        if names and all(names):
            return {"ingredients": names, "kind": "SNOMED CT medicinal product"}
    return None


def _git_show(repo: Path, path: str) -> tuple[str, str]:
    commit = subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%H", "--", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    text = subprocess.run(
        ["git", "-C", str(repo), "show", f"HEAD:{path}"], capture_output=True, text=True
    )
    return (text.stdout if text.returncode == 0 else ""), commit


def known_names() -> set[str]:
    drugs = json.loads((ROOT / "knowledge" / "drugs.json").read_text())["drugs"]
    inhibitors = json.loads(
        (ROOT / "knowledge" / "interactions" / "cyp2d6_inhibitors.json").read_text()
    )["inhibitors"]
    return set(drugs) | set(inhibitors) | {"dexketoprofen"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gm-sde", type=Path, required=True)
    parser.add_argument("--opensafely", type=Path, required=True)
    args = parser.parse_args()
    known = known_names()
    relevant = set(json.loads((ROOT / "knowledge" / "drugs.json").read_text())["drugs"]) | set(
        json.loads((ROOT / "knowledge" / "interactions" / "cyp2d6_inhibitors.json").read_text())[
            "inhibitors"
        ]
    )
    codes: dict[str, Any] = {}
    sources: dict[str, str] = {}
    text, commit = _git_show(args.opensafely, OPENSAFELY_LIST)
    key = "opensafely-oral-opioids"
    sources[key] = (
        f"opensafely/opioids-covid-research {OPENSAFELY_LIST} (commit {commit[:12]}; OpenCodelists"
        " dm+d list, rows labelled VMP or AMP)"
    )
    for row in csv.DictReader(io.StringIO(text)):
        found = read_term(row["term"], known)
        if found and relevant & set(found["ingredients"]):
            kind = f"dm+d {row['dmd_type']}"
            codes.setdefault(
                row["code"], {"name": row["term"], **found, "kind": kind, "source": key}
            )
    for name in GM_SDE_LISTS:
        path = f"shared/clinical-code-sets/medications/{name}/1/{name}.snomed.txt"
        text, commit = _git_show(args.gm_sde, path)
        if not text:
            continue
        key = f"gm-sde-{name}"
        sources[key] = f"UoM-Data-Science-Platforms/gm-sde {path} (commit {commit[:12]})"
        for line in text.splitlines():
            code, _, term = line.partition("\t")
            if not code.strip().isdigit():
                continue
            found = read_snomed_term(term.strip(), known) or read_term(term, known)
            if found and relevant & set(found["ingredients"]):
                codes.setdefault(code.strip(), {"name": _clean(term), **found, "source": key})
    out = {
        "description": "Written by scripts/build_drug_codes.py (do not edit): SNOMED CT "
        "international and UK dm+d product codes of the drugs the service knows, each with the "
        "term it was listed under, its ingredients and, where the term states it, the strength "
        "per tablet or capsule in mg. Taken from the public code lists in 'sources' (each "
        "code with its term; the kind says which concept a term is: 'dm+d' where the list does "
        "not label VMP or AMP). dm+d re-codes products now and then: a site whose EHR sends "
        "newer codes adds them in its site file ('drug_codes').",
        "sources": dict(sorted(sources.items())),
        "codes": {"snomed": dict(sorted(codes.items(), key=lambda kv: int(kv[0])))},
    }
    # one code a line: a reviewable diff, a file a fifth the size of an indented one
    lines = [
        f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}"
        for k, v in out["codes"]["snomed"].items()
    ]
    head = json.dumps({k: v for k, v in out.items() if k != "codes"}, indent=1, ensure_ascii=False)
    OUT.write_text(head[:-2] + ',\n "codes": {"snomed": {\n' + ",\n".join(lines) + "\n }}\n}\n")
    print(f"wrote {len(codes)} SNOMED CT / dm+d codes to {OUT}")


def _clean(term: str) -> str:
    return term.strip().removesuffix(" (product)")


if __name__ == "__main__":
    main()
