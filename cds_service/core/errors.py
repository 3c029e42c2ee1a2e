"""Errors that become a clear JSON answer to the client, never a stack trace."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """A problem with what the client sent or with data we need from it.

    ``status`` is the HTTP status; ``message`` names the problem; ``details`` (optional)
    lists field-level problems. ``logged`` is what the log line says instead of ``message``
    when the message quotes what the caller sent: the answer may name the caller's value, a
    log line never does (it may be a token or a record number).
    """

    status = 400
    retry_after: int | None = None  # seconds, sent as Retry-After (503)

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        status: int | None = None,
        logged: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.logged = message if logged is None else logged
        self.details = details or []
        if status is not None:
            self.status = status

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message}
        if self.details:
            body["details"] = self.details
        return body


class PreconditionFailed(ClientError):
    """412: data the service needs was neither prefetched nor retrievable (CDS Hooks §412)."""

    status = 412

    def __init__(self, message: str, *, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "missingPrefetch": self.missing}


class ServiceUnavailable(ClientError):
    """503: a component the answer needs (the database) is down; try again later."""

    status = 503

    def __init__(self, message: str, *, retry_after: int = 30) -> None:
        super().__init__(message)
        self.retry_after = retry_after
