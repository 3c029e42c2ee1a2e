"""The page and its SMART Health Card together: what ``pgx-cds summary`` writes and the
service serves."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..knowledge.loader import Knowledge
from . import page, shc
from .build import Summary
from .bundle import bundle, carries
from .keys import Issuer
from .wording import text

log = logging.getLogger("cds_service.summary")


@dataclass(frozen=True)
class Document:
    html: str
    #: the ``shc:/`` card in the QR code (None: not signed, see ``problem``)
    card: str | None
    problem: str | None = None


def issuer_of(public_url: str | None) -> str | None:
    """The card's ``iss``: the service's public base URL (no trailing slash)."""
    return public_url.rstrip("/") if public_url else None


def document(
    summary: Summary,
    knowledge: Knowledge,
    keys: Issuer | None,
    public_url: str | None,
    now: float | None = None,
) -> Document:
    """The page for ``summary`` with its card signed by ``keys`` for ``public_url`` (no card
    without either, and none without a result: a signed card that holds no result could be
    read as "tested, nothing found"; the page says why)."""
    issuer = issuer_of(public_url)
    card, problem = None, None
    carried = carries(summary)
    if not carried:
        problem = "no pharmacogenomic result on file to carry: no card to sign"
    elif keys is None or issuer is None:
        problem = "no PGX_CDS_PUBLIC_URL: the card cannot name its issuer"
    else:
        try:
            card = shc.issue(bundle(summary, knowledge), issuer, keys.signing(), now)
        except shc.CardError as exc:
            problem = str(exc)
    if problem and carried:
        log.warning("patient summary without a SMART Health Card: %s", problem)
    svg = shc.qr_svg(card, title=text("qr_alt")) if card else None
    return Document(page.render(summary, qr_svg=svg, issuer=issuer), card, problem)
