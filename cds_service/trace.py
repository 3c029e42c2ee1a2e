"""The decision trace: what was found, used or ignored, and why.

Every stage adds lines; ``pgx-cds explain`` prints them and the service logs them at
DEBUG. Lines never hold patient identifiers, names or tokens: resources are named by
type and id only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field


@dataclass
class Trace:
    lines: list[tuple[str, str]] = field(default_factory=list)

    def add(self, stage: str, message: str) -> None:
        self.lines.append((stage, message))

    def render(self) -> str:
        return "\n".join(f"[{stage}] {message}" for stage, message in self.lines)

    def log(self, logger: logging.Logger) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            for stage, message in self.lines:
                logger.debug("trace %s: %s", stage, message)
