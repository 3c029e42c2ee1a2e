"""Every word the patient's summary page and card say, in one place, so that a translation
is one more table like ``EN`` (same keys) and nothing else.

The patient's text is for a lay reader: short sentences, no gene jargon left unexplained,
and always "talk to your doctor or pharmacist" rather than an instruction to change a
medicine. The clinician's section uses the guideline's own advice (the knowledge files).
"""

from __future__ import annotations

from typing import Final

#: The page's language (``<html lang>``) and its words.
LANGUAGE: Final = "en"

EN: Final[dict[str, str]] = {
    "title": "My pharmacogenomic (PGx) results for pain medicines",
    "intro": (
        "A genetic test showed how your body handles some medicines. These results do not "
        "change over your life. Keep this page and the wallet card, and show them to every "
        "doctor, dentist, nurse or pharmacist who gives you a pain medicine, especially when "
        "you move or see a new doctor."
    ),
    "never_stop": (
        "Do not stop or change a medicine on your own because of this page: talk to your "
        "doctor or pharmacist first."
    ),
    "patient": "Name",
    "born": "Born",
    "printed": "Made on",
    "results_heading": "My test results",
    "gene": "Gene",
    "result": "What the result means",
    "genotype": "Genotype",
    "date": "Test date",
    "lab": "Laboratory",
    "unknown": "not stated",
    "no_results": (
        "No usable pharmacogenomic result was found in your record for the genes that "
        "guide pain medicines."
    ),
    "drugs_heading": "Pain medicines to talk about with your doctor",
    "drugs_intro": (
        "Because of your results, the advice for these medicines is different from the usual "
        "advice:"
    ),
    "no_drug_changes": "Your results do not change the usual advice for any pain medicine.",
    "unchanged_heading": "No change for these pain medicines",
    "rules_heading": "Also important for you",
    "silent": (
        "Your clinic does not show advice for some medicines here: ask your doctor about them."
    ),
    "phenoconverted": "Because of another medicine you take ({drugs}), it now works like: {now}.",
    "disagree": (
        "Your test results for this gene do not agree with each other: your doctor will "
        "follow the more careful advice"
    ),
    "disagree_short": "results disagree",
    "clinician_heading": "For clinicians",
    "clinician_intro": (
        "The advice a prescribing card of this service gives when each drug is ordered "
        "(CPIC guidelines; FDA labels), from the results above. Knowledge version {version}."
    ),
    "drug": "Drug",
    "advice": "Guideline advice",
    "source": "Source",
    "strength": "strength",
    "card_heading": "Wallet card",
    "card_help": "Cut along the line and fold in the middle.",
    "card_title": "PGx card: pain medicines",
    "card_show": "Show to every prescriber and pharmacist.",
    "card_scan": (
        "The QR code is a SMART Health Card: a signed copy of these results that a clinic "
        "can check."
    ),
    "card_issuer": "Issued by {issuer}",
    "card_unsigned": "(No QR code: this service has no public address to sign for.)",
    "card_no_results": "(No QR code: there is no result to put in it.)",
    "print": "Print",
    "qr_alt": "SMART Health Card QR code of these results",
}

#: What a gene result means, for a lay reader (by the phenotype the service acts on).
PHENOTYPE_WORDS: Final[dict[str, str]] = {
    "Poor Metabolizer": "Your body breaks down some medicines much more slowly than most people.",
    "Intermediate Metabolizer": "Your body breaks down some medicines more slowly than most.",
    "Normal Metabolizer": "Your body breaks down these medicines as most people do.",
    "Rapid Metabolizer": "Your body breaks down some medicines faster than most people.",
    "Ultrarapid Metabolizer": "Your body breaks down some medicines much faster than most people.",
    "positive": "You carry this gene variant: some medicines can cause a severe skin reaction.",
    "negative": "You do not carry this gene variant.",
    "Malignant Hyperthermia Susceptibility": (
        "Some anaesthetic gases and the muscle relaxant succinylcholine can cause a "
        "life-threatening reaction (malignant hyperthermia) in you: tell every anaesthetist."
    ),
}
#: A result the service could not use (indeterminate, unreadable): said, never left out.
PHENOTYPE_UNCLEAR: Final = (
    "This result is unclear. Until a clearer test is done, your doctor will follow the "
    "careful advice for the medicines it concerns."
)
#: An unclear result of a gene whose results only ever add a warning (CPIC: "uncertain
#: susceptibility" carries no advice of its own, and does not rule the risk out).
PHENOTYPE_UNCLEAR_BY_GENE: Final[dict[str, str]] = {
    gene: (
        "A change was found in this gene whose meaning is not known yet. It neither shows "
        "nor rules out a risk of a dangerous reaction to some anaesthetics (malignant "
        "hyperthermia): tell every anaesthetist about it."
    )
    for gene in ("RYR1", "CACNA1S")
}
#: Above, when the phenotype has no entry (e.g. a low-function OPRM1 result).
PHENOTYPE_OTHER: Final = "Result: {phenotype}."
#: What the result is called on the wallet card (short).
PHENOTYPE_SHORT: Final[dict[str, str]] = {
    "Poor Metabolizer": "poor metabolizer",
    "Intermediate Metabolizer": "intermediate metabolizer",
    "Normal Metabolizer": "normal metabolizer",
    "Rapid Metabolizer": "rapid metabolizer",
    "Ultrarapid Metabolizer": "ultrarapid metabolizer",
    "positive": "carrier",
    "negative": "not a carrier",
    "Indeterminate": "unclear result",
}

#: A drug's changed advice for a lay reader, by the guideline row's action.
ACTION_WORDS: Final[dict[str, str]] = {
    "avoid": "Should usually be avoided: ask for a different medicine.",
    "alternative": "May not suit you: your doctor may choose a different medicine.",
    "adjust-dose": "May need a different dose: your doctor will decide the dose.",
    "caution": "May work less well or differently for you: your doctor may watch how it works.",
    "standard": "The usual advice applies.",
    "no-recommendation": "No advice based on your genes.",
}
#: When the results leave the row open (disagreeing results, an activity score the test
#: could not give): the careful advice applies.
ACTION_UNCLEAR: Final = "Your results leave this open: your doctor will follow the careful advice."
#: A label rule or pre-test card that applies (by the card's indicator).
NOTICE_WORDS: Final[dict[str, str]] = {
    "critical": "Should not be used for you.",
    "warning": "Needs extra care for you: ask your doctor before you take it.",
    "info": "Your doctor should know about this before you take it.",
}
#: A pre-test card: a test the label asks for before the medicine, not on file.
PRETEST_WORDS: Final = "A genetic test is advised before this medicine is started."
#: The wallet card's line for a drug, by indicator.
CARD_LEVEL: Final[dict[str, str]] = {
    "critical": "avoid",
    "warning": "ask first",
    "info": "note",
}


def text(key: str, **values: str) -> str:
    """The page's words for ``key`` (with ``values`` filled in)."""
    words = EN[key]
    return words.format(**values) if values else words


def phenotype_words(phenotype: str, usable: bool = True, gene: str | None = None) -> str:
    if not usable:
        return PHENOTYPE_UNCLEAR_BY_GENE.get(gene or "", PHENOTYPE_UNCLEAR)
    return PHENOTYPE_WORDS.get(phenotype) or PHENOTYPE_OTHER.format(phenotype=phenotype)


def phenotype_short(phenotype: str) -> str:
    return PHENOTYPE_SHORT.get(phenotype, phenotype.lower())
