"""The decision trace: what was found, used or ignored, and why.

Every stage adds lines; ``pgx-cds explain`` prints them and the service logs them at
DEBUG. Lines never hold patient identifiers or tokens: resources are named by type and id
only. Free text quoted in a line (a medication's text) is shown by ``explain`` but
redacted from logs.
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


@dataclass
class Trace:
    lines: list[tuple[str, str]] = field(default_factory=list)

    def add(self, stage: str, message: str) -> None:
        self.lines.append((stage, message))

    def render(self) -> str:
        return "\n".join(f"[{stage}] {message}" for stage, message in self.lines)

    def log(self, logger: logging.Logger, request_id: str | None = None) -> None:
        """At DEBUG, the lines without quoted free text, escaped and capped (with the
        ``request_id`` of the call they are about, when logged after it)."""
        if logger.isEnabledFor(logging.DEBUG):
            extra = {"request_id": request_id} if request_id else None
            for stage, message in self.lines:
                logger.debug(
                    "trace %s: %s", stage, clean(_QUOTED.sub("'…'", message), 300), extra=extra
                )
