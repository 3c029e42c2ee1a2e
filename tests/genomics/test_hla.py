"""The HLA grammar: GL strings as the Genomics Reporting IG codes them, allele lists as labs
write them, and every ambiguity read as 'unknown', never as 'absent'."""

from __future__ import annotations

import pytest

from cds_service.genomics.hla import NEGATIVE, POSITIVE, marker_status, strip_gl_prefix

B1502 = "HLA-B*15:02"


@pytest.mark.parametrize(
    ("value", "status"),
    [
        # the IG's versioned GL string code, carrier and non-carrier
        ("hla#3.31.0#HLA-B*15:02:01:01+HLA-B*30:01:01", POSITIVE),
        ("hla#3.31.0#HLA-B*07:02:01+HLA-B*30:01:01", NEGATIVE),
        ("#hla#3.23.0#HLA-B*15:02:01G+HLA-B*57:01:01G", POSITIVE),  # leading '#' in one example
        ("hla#3.23.0#HLA-B*15:01:01G+HLA-B*57:01:01G", NEGATIVE),
        # GL operators
        ("HLA-B*15:02/HLA-B*15:13+HLA-B*07:02", None),  # / allele ambiguity on the marker
        ("HLA-B*15:02:01/HLA-B*15:02:02+HLA-B*07:02", POSITIVE),  # / within the marker
        ("HLA-B*15:02+HLA-B*07:02|HLA-B*15:02+HLA-B*07:05", POSITIVE),  # | all carry it
        ("HLA-B*15:02+HLA-B*07:02|HLA-B*15:13+HLA-B*07:02", None),  # | some do not
        ("HLA-A*01:01~HLA-B*15:02+HLA-A*02:01~HLA-B*07:02", POSITIVE),  # ~ phased haplotypes
        ("HLA-A*02:01+HLA-A*03:01^HLA-B*15:02:01+HLA-B*07:02", POSITIVE),  # ^ loci
        ("HLA-A*02:01+HLA-A*03:01^HLA-B*07:02+HLA-B*44:03", NEGATIVE),
        # what cannot be read about the marker's locus is unknown, never absent
        ("HLA-B*15:XX+HLA-B*07:02", None),  # NMDP code
        ("HLA-B*15+HLA-B*07:02", None),  # one field
        ("HLA-B*15:02:01N+HLA-B*07:02", None),  # null allele
        ("HLA-B:15:02+HLA-B*07:02", None),  # malformed name at the locus
        ("HLA-B*15:02 not detected", None),  # prose with a negation
        ("HLA-A*02:01+HLA-A*03:01", None),  # another locus only: says nothing about B
        # allele lists in text
        ("B*15:02, B*44:03", POSITIVE),
        ("HLA-B*1502/HLA-B*1502+HLA-B*0702", POSITIVE),
        ("HLA-B*15:02 / HLA-B*15:01 + HLA-B*07:02", None),  # spaces around '/'
    ],
)
def test_marker_status(value, status):
    assert marker_status(value, B1502)[0] == status


def test_prefix_stripped_only_when_versioned():
    assert strip_gl_prefix("hla#3.31.0#HLA-A*03:01+HLA-A*30:01") == "HLA-A*03:01+HLA-A*30:01"
    assert strip_gl_prefix("HLA-A*03:01+HLA-A*30:01") == "HLA-A*03:01+HLA-A*30:01"


def test_unclear_results_say_why():
    status, reason = marker_status("HLA-B*15:XX+HLA-B*07:02", B1502)
    assert status is None and "ambiguous" in reason


def test_a_typing_past_the_length_cap_is_unknown_and_says_why():
    """Issue 26, item 2: a GL string longer than any real one is unreadable (unknown, with
    the reason in the trace), and costs nothing to refuse."""
    from cds_service.genomics.hla import MAX_TEXT

    value = "HLA-B*15:02+HLA-B*07:02" + " " * MAX_TEXT
    status, reason = marker_status(value, "HLA-B*15:02")
    assert status is None and f"longer than {MAX_TEXT} characters" in reason
    assert marker_status("HLA-B*15:02 + HLA-B*07:02", "HLA-B*15:02") == (POSITIVE, "")
