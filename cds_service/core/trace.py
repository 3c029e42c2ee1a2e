"""The decision trace: what was found, used or ignored, and why.

Every stage adds lines; ``pgx-cds explain`` prints them and the service logs them at
DEBUG. Lines never hold patient identifiers or tokens: resources are named by type and id
only. In the log, free text quoted in a line (a medication's text) and the ids of the EHR's
records (``Observation/…``) are removed; what remains is the decision: the drugs ordered,
the patient's genomic results as read (phenotypes, diplotypes, HLA typing) and the
guideline rows that applied. That is health data: DEBUG is for troubleshooting with test
patients, not for production (docs/security.md; the service warns at start).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from .logsafe import clean

# Quoted text in a trace line is from the request or a result (a medication's free text can
# hold a patient's name): kept for ``pgx-cds explain``, never logged. Greedy: everything
# between the first and the last quote, whatever quotes the text itself holds.
_QUOTED = re.compile(r"'.*'")
#: A FHIR reference in a trace line ('Observation/pgx-123', 'Patient/p-1'): its id is a
#: record number at the EHR, kept for ``explain``, never logged.
_RECORD = re.compile(r"(?<![A-Za-z0-9])([A-Z][A-Za-z]{1,63})/[A-Za-z0-9\-.]{1,64}")


def for_log(message: str) -> str:
    """A trace line as it is logged: no quoted free text, no record ids, escaped and capped."""
    return clean(_RECORD.sub(r"\1/…", _QUOTED.sub("'…'", message)), 300)


@dataclass
class Trace:
    lines: list[tuple[str, str]] = field(default_factory=list)

    def add(self, stage: str, message: str) -> None:
        self.lines.append((stage, message))

    def render(self) -> str:
        return "\n".join(f"[{stage}] {message}" for stage, message in self.lines)

    def log(self, logger: logging.Logger, request_id: str | None = None) -> None:
        """At DEBUG, the lines without quoted free text or record ids, escaped and capped
        (with the ``request_id`` of the call they are about, when logged after it)."""
        if logger.isEnabledFor(logging.DEBUG):
            extra = {"request_id": request_id} if request_id else None
            for stage, message in self.lines:
                logger.debug("trace %s: %s", stage, for_log(message), extra=extra)
