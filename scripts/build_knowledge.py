#!/usr/bin/env python3
"""Regenerate the derived files in ``knowledge/`` from the reference tables.

The service never reads the reference folder: this script turns it into small,
versioned JSON files that are committed with the code.

Inputs (default ``../shared/data`` beside the project root):

* ``cpic/<GENE>_allele_function.tsv``   allele -> CPIC function and activity value
* ``cpic/<GENE>_diplotype_phenotype.tsv`` every CPIC diplotype -> activity score -> phenotype
* ``rxnorm/*.tsv``                       RxNorm products and the ingredients they contain
* ``scripts/data/cpic_allele_updates.tsv`` (in this repository) CPIC allele rows released
  after the reference tables' date, each with the CPIC change-log entry it comes from
* ``scripts/data/rxnorm_order_set.tsv`` (in this repository, kept by hand) RxNorm products of
  the order-set drugs the reference lists lack (phenytoin, tricyclics, antiemetics), each with
  where its code was read

Outputs:

* ``knowledge/genes/<GENE>.json``     allele table and phenotype rules (derived, then
  checked against every diplotype in the CPIC table; the script fails on a mismatch)
* ``knowledge/rxnorm_products.json``  product RxCUI -> covered ingredients, for the drugs
  listed in the hand-written ``knowledge/drugs.json``; ``cough_cold: true`` on prescription
  opioid cough-and-cold products (an opioid and an ingredient of ``cough_cold`` in the
  hand-written ``knowledge/rules/label_rules.json``)
* ``knowledge/rxnorm_forms.json``  the same products -> route, dose form and every ingredient
  (covered or not) with its strength, read from the RxNorm name; products whose name does not
  say them (a brand name alone) are left out: a suggestion never guesses them
* ``tests/genomics/data/cpic_diplotypes/<GENE>.tsv``  the CPIC expectations, so the tests can check
  the phenotype engine against every diplotype without the reference folder

Usage: ``python scripts/build_knowledge.py [--shared PATH]``
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KNOWLEDGE = ROOT / "knowledge"

GENES = {
    # gene: (HGNC id, CPIC table version date)
    "CYP2D6": ("HGNC:2625", "2024-03-25, with CPIC's 2024-05-26 additions (release 1.56.0)"),
    "CYP2C9": ("HGNC:2623", "2025-11-05"),
    "CYP2C19": ("HGNC:2621", "2025-11-05"),
}

#: Genes whose copies a genotype may not count (the gene's ``copy_number`` entry): a later
#: result that finds a duplication overrules an older genotype stating no copy number.
COPY_NUMBER = {
    "CYP2D6": {
        "what": "CYP2D6 has deletions (*5), duplications and multiplications (xN) and hybrids: "
        "a genotyping test that does not measure copy number reports *1/*1 for a patient with "
        "*1/*1x2. A later result that finds more copies (an ultrarapid phenotype, or the same "
        "diplotype with copies) is believed over an older genotype that states no copy number.",
        "source": "CPIC CYP2D6 allele functionality and diplotype tables (duplications scored per "
        "copy: files.cpicpgx.org/data/report/current/); Gaedigk A, et al. Clin Pharmacol Ther. "
        "2019;105(1):29-32 (PMID 30094823, PharmVar CYP2D6 structural variants); Pratt VM, et al. "
        "J Mol Diagn. 2021;23(9):1047-1064 (PMID 34118403, AMP CYP2D6 testing recommendations: "
        "copy number detection)",
    },
}

ORDER_SET = ROOT / "scripts" / "data" / "rxnorm_order_set.tsv"

UPDATES = ROOT / "scripts" / "data" / "cpic_allele_updates.tsv"
CPIC_TABLE_URL = "https://files.cpicpgx.org/data/report/current/"


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def as_number(value: str) -> tuple[float, bool] | None:
    """'1.25' -> (1.25, False); '≥3.0' -> (3.0, True); 'n/a' or '' -> None."""
    value = value.strip()
    if not value or value.lower() == "n/a":
        return None
    at_least = value.startswith("≥")
    return float(value.lstrip("≥")), at_least


def build_gene(gene: str, shared: Path) -> tuple[dict, list[dict[str, str]]]:
    hgnc, version = GENES[gene]
    alleles_rows = read_tsv(shared / "cpic" / f"{gene}_allele_function.tsv")
    diplo_rows = read_tsv(shared / "cpic" / f"{gene}_diplotype_phenotype.tsv")

    alleles: dict[str, dict[str, object]] = {}
    updates = [r for r in read_tsv(UPDATES) if r["gene"] == gene]
    for row in alleles_rows + updates:
        entry: dict[str, object] = {"function": row["function"]}
        if row["activity_value"].strip():
            entry["activity_value"] = row["activity_value"].strip()
        alleles[row["allele"]] = entry
    uses_activity = any("activity_value" in a for a in alleles.values())

    doc: dict[str, object] = {
        "gene": gene,
        "hgnc": hgnc,
        "source": {
            "guideline": "CPIC allele functionality and diplotype-phenotype tables",
            "version": version,
            "url": CPIC_TABLE_URL,
            "license": "CC0 1.0 (CPIC); attribution: cpicpgx.org",
        },
        "alleles": alleles,
    }
    if gene in COPY_NUMBER:
        doc["copy_number"] = COPY_NUMBER[gene]

    if uses_activity:
        # Derive the activity-score bands per phenotype from the table itself.
        bands: dict[str, list[float]] = defaultdict(list)
        for row in diplo_rows:
            num = as_number(row["activity_score"])
            if num is None or num[1]:
                continue
            bands[row["phenotype"]].append(num[0])
        ordered = sorted(bands.items(), key=lambda kv: min(kv[1]))
        out = []
        for i, (phenotype, values) in enumerate(ordered):
            band: dict[str, object] = {"phenotype": phenotype, "min": min(values)}
            if i < len(ordered) - 1:
                band["max"] = max(values)
            out.append(band)
        doc["scoring"] = "activity_score"
        doc["phenotype_bands"] = out
    else:
        pairs: dict[str, str] = {}
        for row in diplo_rows:
            a, b = row["diplotype"].split("/")
            fa, fb = sorted((alleles[a]["function"], alleles[b]["function"]))  # type: ignore[type-var]
            key = f"{fa} / {fb}"
            if pairs.setdefault(key, row["phenotype"]) != row["phenotype"]:
                raise SystemExit(f"{gene}: function pair {key} maps to two phenotypes")
        doc["scoring"] = "function_pair"
        doc["function_pairs"] = dict(sorted(pairs.items()))

    expected = [{k: r[k] for k in ("diplotype", "activity_score", "phenotype")} for r in diplo_rows]
    return doc, expected


def names(text: str, words: list[str]) -> bool:
    """Does ``text`` name one of ``words`` as a whole word ('chlorpheniramine polistirex'
    names chlorpheniramine; 'dexchlorpheniramine' does not)?"""
    lowered = text.lower()
    return any(re.search(rf"\b{re.escape(w.lower())}\b", lowered) for w in words)


def build_products(
    shared: Path, drugs: dict, cough_cold: dict | None = None
) -> dict[str, dict[str, object]]:
    """Product RxCUI -> name and covered ingredients; with ``cough_cold`` (the section of
    label_rules.json), products that combine one of its opioids with one of its cough and
    cold ingredients are marked ``cough_cold`` (FDA's 2018 limit to adults)."""
    covered = {name.lower() for name in drugs}
    products: dict[str, dict[str, object]] = {}

    def add(rxcui: str, name: str, ingredients: list[str]) -> None:
        hits = sorted({i.strip().lower() for i in ingredients} & covered)
        if not hits:
            return
        entry = products.setdefault(rxcui, {"name": name, "ingredients": []})
        entry["ingredients"] = sorted(set(entry["ingredients"]) | set(hits))  # type: ignore[arg-type]
        if (
            cough_cold
            and set(entry["ingredients"]) & set(cough_cold["opioids"])  # type: ignore[arg-type]
            and names(name, cough_cold["ingredients"])
        ):
            entry["cough_cold"] = True

    rx = shared / "rxnorm"
    for row in read_tsv(rx / "opioid_products.tsv"):
        ingredients = [row["opioid_ingredient"]]
        # The opioid list names only the opioid; add the other covered ingredients the
        # product name states (e.g. acetaminophen in acetaminophen/codeine).
        # Whole words only: "dihydrocodeine" is not codeine.
        ingredients += [d for d in covered if re.search(rf"\b{d}\b", row["name"].lower())]
        add(row["rxcui"], row["name"], ingredients)
    for row in read_tsv(rx / "nsaid_products.tsv"):
        add(row["rxcui"], row["name"], [row["ingredient"]])
    for row in read_tsv(rx / "sandbox_medication_names_pain.tsv"):
        add(row["rxcui"], row["name"], row["ingredients_named"].split(","))
    for row in read_tsv(ORDER_SET):  # hand-kept, each code with where it was read
        add(row["rxcui"], row["name"], row["ingredients"].split(","))
    for name, drug in drugs.items():
        if drug["rxcui"]:
            add(drug["rxcui"], name, [name])
    return dict(sorted(products.items(), key=lambda kv: int(kv[0])))


#: RxNorm dose forms (and dose form groups) -> route. A form not listed gives no route.
ROUTES = {
    "oral": [
        "Oral Tablet",
        "Oral Capsule",
        "Extended Release Oral Tablet",
        "Extended Release Oral Capsule",
        "Delayed Release Oral Tablet",
        "Delayed Release Oral Capsule",
        "Chewable Tablet",
        "Disintegrating Oral Tablet",
        "Effervescent Oral Tablet",
        "Tablet for Oral Suspension",
        "Oral Solution",
        "Oral Suspension",
        "Extended Release Suspension",
        "Oral Powder",
        "Oral Granules",
        "Oral Product",
        "Oral Liquid Product",
        "Chewable Product",
        "Pill",
    ],
    "sublingual": ["Sublingual Tablet", "Sublingual Film", "Sublingual Product"],
    "buccal": ["Buccal Film", "Buccal Tablet", "Buccal Product"],
    "oromucosal": ["Oral Lozenge", "Mucosal Spray"],
    "injection": [
        "Injection",
        "Injectable Solution",
        "Injectable Suspension",
        "Prefilled Syringe",
        "Cartridge",
        "Auto-Injector",
        "Injectable Product",
    ],
    "rectal": ["Rectal Suppository", "Rectal Product"],
    "transdermal": ["Transdermal System", "Transdermal Product"],
    "nasal": ["Nasal Spray", "Metered Dose Nasal Spray", "Nasal Product"],
    "topical": ["Topical Gel", "Topical Cream", "Topical Spray", "Topical Foam", "Topical Product"],
    "ophthalmic": ["Ophthalmic Solution", "Ophthalmic Product"],
    "implant": ["Drug Implant"],
}
FORM_ROUTE = {form: route for route, forms in ROUTES.items() for form in forms}
#: Salt and ester words after an ingredient's name: "Codeine Phosphate" is codeine.
SALTS = frozenset(
    [
        "hydrochloride",
        "hcl",
        "bitartrate",
        "phosphate",
        "sulfate",
        "tartrate",
        "citrate",
        "maleate",
        "sodium",
        "potassium",
        "lysine",
        "besylate",
        "mesylate",
        "hydrobromide",
        "acetate",
        "succinate",
        "fumarate",
        "napsylate",
        "polistirex",
        "tannate",
        "calcium",
        "magnesium",
        "tromethamine",
        "meglumine",
        "anhydrous",
        "monohydrate",
        "dihydrate",
        "trihydrate",
        "terephthalate",
        "methylbromide",
        "mucate",
    ]
)
_STRENGTH = re.compile(
    r"^(?P<what>.+?) (?P<value>\d+(?:\.\d+)?) (?P<unit>MG|MCG|UNT|MEQ|ML|%)"
    r"(?:/(?P<per>ML|MG|HR|ACTUAT|SQCM))?$"
)
_PREFIX = re.compile(r"^(?P<prefix>\d+(?:\.\d+)? (?:HR|ML|DAY|MG|ACTUAT)) ")


def product_form(name: str, covered: set[str]) -> dict[str, object] | None:
    """Route, dose form and every ingredient with its strength, from an RxNorm name:
    'Acetaminophen 300 MG / Codeine Phosphate 30 MG Oral Tablet' (SCD), '... [Tylenol]' (SBD),
    'Hydrocodone / Ibuprofen Oral Tablet' (SCDF, no strengths), 'Ibuprofen 100 MG' (SCDC, no
    form), 'Hydrocodone / Ibuprofen' (MIN). None when the name does not say its ingredients
    (a brand name alone: 'Advil', 'Ibu Oral Product') or is a pack."""
    text = name.strip()
    brand = re.search(r"\s*\[[^\[\]]+\]$", text)
    if brand:
        text = text[: brand.start()]
    if "Pack" in text.split() or "{" in text or "(" in text:
        return None
    deterrent = text.lower().startswith("abuse-deterrent ")
    for qualifier in ("abuse-deterrent ", "matrix delivery "):  # how it releases: in the form
        if text.lower().startswith(qualifier):
            text = text[len(qualifier) :]
    prefix = None
    if found := _PREFIX.match(text):
        prefix, text = found.group("prefix"), text[found.end() :]
    form = None
    for candidate in sorted(FORM_ROUTE, key=len, reverse=True):
        if text.endswith(" " + candidate) or text == candidate:
            form, text = candidate, text[: -len(candidate)].strip()
            break
    parts = [p.strip() for p in text.split(" / ")]
    ingredients: list[dict[str, object]] = []
    for part in parts:
        strength = _STRENGTH.match(part)
        substance = (strength.group("what") if strength else part).strip()
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9 ,.'-]*", substance):
            return None
        words = substance.lower().split()
        salt = len(words) > 1 and all(w in SALTS for w in words[1:])
        base = words[0] if salt else " ".join(words)
        entry: dict[str, object] = {"name": base, "substance": " ".join(words)}
        if strength:
            entry["strength"] = float(strength.group("value"))
            entry["unit"] = strength.group("unit") + (
                f"/{strength.group('per')}" if strength.group("per") else ""
            )
        ingredients.append(entry)
    named = any("strength" in i for i in ingredients) or len(parts) > 1
    if not named and not all(i["name"] in covered for i in ingredients):
        return None  # a brand or other name ('Ibu Oral Product'), not an ingredient list
    out: dict[str, object] = {"ingredients": ingredients}
    if form:
        out["form"] = form
        out["route"] = FORM_ROUTE[form]
    if prefix:
        out["prefix"] = prefix
    if deterrent:
        out["abuse_deterrent"] = True
    if brand:
        out["brand"] = brand.group(0).strip()[1:-1]
    return out


def build_forms(products: dict[str, dict[str, object]], drugs: dict) -> dict[str, dict]:
    covered = {name.lower() for name in drugs}
    out = {}
    for rxcui, entry in products.items():
        form = product_form(str(entry["name"]), covered)
        if form is not None:
            out[rxcui] = form
    return out


INHIBITORS = {
    # ingredient: (FDA strength, ingredient RxCUI where confirmed)
    "bupropion": ("strong", "42347"),
    "fluoxetine": ("strong", "4493"),
    "paroxetine": ("strong", "32937"),
    "quinidine": ("strong", "9068"),
    "terbinafine": ("strong", "37801"),
    "abiraterone": ("moderate", None),
    "cinacalcet": ("moderate", None),
    "duloxetine": ("moderate", "72625"),
    "lorcaserin": ("moderate", None),
    "mirabegron": ("moderate", None),
}


#: How long an inhibitor keeps acting after the last dose, where its label says so (a
#: long-lived active metabolite). Without an entry, stopping the drug ends its effect.
LASTS_AFTER_STOPPING = {
    "fluoxetine": {
        "days": 35,
        "text": "about five weeks",
        "source": "FDA label for Prozac (fluoxetine), Eli Lilly: allow at least 5 weeks after "
        "stopping fluoxetine before starting an MAOI (Contraindications, 4.1) and before giving "
        "thioridazine (4.2), because fluoxetine (half-life 4-6 days with chronic use) and its "
        "active metabolite norfluoxetine (4-16 days) stay in the body for weeks after the last "
        "dose (Clinical Pharmacology, 12.3). Figures read in copies quoting the label "
        "(research notes, 2026); the label's CYP2D6 interaction paragraph (section 7) on "
        "patients who took fluoxetine in the previous weeks was not re-read.",
        "url": "https://dailymed.nlm.nih.gov/dailymed/drugInfo.cfm?"
        "setid=c88f33ed-6dfb-4c5e-bc01-d8e36dd97299",
    },
}


def build_inhibitors(shared: Path) -> dict[str, object]:
    """CYP2D6 inhibitors (FDA) with the product codes the public sandbox offers."""
    products: dict[str, str] = {}
    brands: dict[str, set[str]] = {}
    for row in read_tsv(shared / "rxnorm" / "sandbox_medication_names_cyp2d6_inhibitors.tsv"):
        name = row["inhibitor_named"].strip().lower()
        if name in INHIBITORS and row["fda_cyp2d6_inhibitor_strength"] == INHIBITORS[name][0]:
            products[row["rxcui"]] = name
            # a branded product's name ends in its brand: "... Oral Tablet [Paxil]"
            brand = re.search(r"\[([^\[\]]+)\]\s*$", row["name"])
            if brand:
                brands.setdefault(brand.group(1).strip().lower(), set()).add(name)
    return {
        "gene": "CYP2D6",
        "description": "Drugs that inhibit CYP2D6, by FDA strength. A patient taking one is "
        "treated as having a lower CYP2D6 activity score (phenoconversion): strong x0, "
        "moderate x0.5. Identified by RxNorm ingredient or product code, else by name.",
        "source": {
            "inhibitors": "FDA, Drug Development and Drug Interactions: Table of Substrates, "
            "Inhibitors and Inducers (CYP2D6 clinical index inhibitors)",
            "url": "https://www.fda.gov/drugs/drug-interactions-labeling/"
            "drug-development-and-drug-interactions-table-substrates-inhibitors-and-inducers",
            "method": "Borges S, et al. J Clin Pharmacol. 2010;50(4):450-458 (PMID 20081063): "
            "composite CYP2D6 activity score with co-medication; the x0 (strong) / x0.5 "
            "(moderate) convention as applied by clinical PGx programmes (UF Health). Not a "
            "CPIC recommendation.",
            "product_codes": "RxNorm via the public CDS Hooks sandbox medication list",
            "brands": "RxNorm branded products of that list (the brand in square brackets)",
            "lasts_after_stopping": "each inhibitor's own label (source and url beside the "
            "figure); an inhibitor without it stops acting when it is stopped",
        },
        "multipliers": {"strong": 0.0, "moderate": 0.5},
        "inhibitors": {
            name: {
                "strength": strength,
                "rxcui": rxcui,
                **(
                    {"lasts_after_stopping": LASTS_AFTER_STOPPING[name]}
                    if name in LASTS_AFTER_STOPPING
                    else {}
                ),
            }
            for name, (strength, rxcui) in INHIBITORS.items()
        },
        "products": dict(sorted(products.items(), key=lambda kv: int(kv[0]))),
        # brand names of the branded products above (one inhibitor each), for orders named
        # only by text ("Paxil 20 mg")
        "brands": {b: names.pop() for b, names in sorted(brands.items()) if len(names) == 1},
    }


def write_json(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def write_products(
    path: Path, source: dict[str, str], products: dict[str, dict], description: str = ""
) -> None:
    """One product per line: small diffs when the lists change."""
    lines = [
        f"  {json.dumps(rxcui)}: {json.dumps(entry, ensure_ascii=False)}"
        for rxcui, entry in products.items()
    ]
    head = ""
    if description:
        head = f' "description": {json.dumps(description, ensure_ascii=False)},\n'

    text = (
        "{\n" + head + f' "source": {json.dumps(source, ensure_ascii=False)},\n'
        ' "products": {\n' + ",\n".join(lines) + "\n }\n}\n"
    )
    json.loads(text)  # what we write must stay valid JSON
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()

    for gene in GENES:
        doc, expected = build_gene(gene, args.shared)
        write_json(KNOWLEDGE / "genes" / f"{gene}.json", doc)
        table = ROOT / "tests" / "genomics" / "data" / "cpic_diplotypes" / f"{gene}.tsv"
        table.parent.mkdir(parents=True, exist_ok=True)
        with table.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(
                fh, fieldnames=["diplotype", "activity_score", "phenotype"], delimiter="\t"
            )
            writer.writeheader()
            writer.writerows(expected)

    write_json(KNOWLEDGE / "interactions" / "cyp2d6_inhibitors.json", build_inhibitors(args.shared))
    drugs = json.loads((KNOWLEDGE / "drugs.json").read_text(encoding="utf-8"))["drugs"]
    rules = json.loads((KNOWLEDGE / "rules" / "label_rules.json").read_text(encoding="utf-8"))
    products = build_products(args.shared, drugs, rules["cough_cold"])
    write_products(
        KNOWLEDGE / "rxnorm_products.json",
        {
            "name": "RxNorm (NLM), via the opioid MME value sets (2020-10-20), the PDDI-CDS "
            "NSAID value sets (2018), the CDS Hooks sandbox medication list and, for the order-set "
            "drugs, scripts/data/rxnorm_order_set.tsv (each code with where it was read)",
            "license": "public domain; courtesy of the U.S. National Library of Medicine",
        },
        products,
    )
    forms = build_forms(products, drugs)
    write_products(
        KNOWLEDGE / "rxnorm_forms.json",
        {
            "name": "the RxNorm names of rxnorm_products.json, read by scripts/build_knowledge.py",
            "license": "public domain; courtesy of the U.S. National Library of Medicine",
        },
        forms,
        "Each product's ingredients (all of them, covered or not: 'name' is the ingredient, "
        "'substance' the salt RxNorm states the strength of), dose form and route, read from its "
        "RxNorm name. One-click suggestions use it to keep the order's route and every other "
        "ingredient. A product whose name does not list its ingredients (a brand name alone) is "
        "not here: no one-click replacement is offered for it.",
    )
    marked = sum(1 for p in products.values() if p.get("cough_cold"))
    print(
        f"wrote {len(GENES)} gene tables, {len(products)} RxNorm products "
        f"({marked} opioid cough-and-cold products; {len(forms)} with their ingredients and form)"
    )


if __name__ == "__main__":
    main()
