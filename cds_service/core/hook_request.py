"""The CDS Hooks request: its model, and its checks (each problem a 400 that names the field)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from .errors import ClientError


class FhirAuthorization(BaseModel):
    model_config = ConfigDict(extra="allow")

    access_token: str = Field(min_length=1)
    token_type: str = "Bearer"
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None

    def __repr__(self) -> str:  # never let the token reach a log line
        return "FhirAuthorization(access_token=***)"

    __str__ = __repr__


class HookRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    hook: str = Field(min_length=1)
    hookInstance: str = Field(min_length=1)
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None
    #: the authenticated client (JWT ``iss``) that made the call: set by the edge, never
    #: read from the body
    _client: str | None = PrivateAttr(default=None)

    @property
    def client(self) -> str | None:
        return self._client

    def authenticated_as(self, client: str | None) -> HookRequest:
        self._client = client
        return self

    @field_validator("fhirServer")
    @classmethod
    def _server(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme, sep, rest = value.partition("://")
        if not sep or scheme.lower() not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        value = f"{scheme.lower()}://{rest}"  # schemes are case-insensitive (RFC 3986)
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError("must be an http(s) URL") from None
        if not parts.hostname or "@" in parts.netloc or parts.query or parts.fragment:
            raise ValueError("must be a FHIR base URL: a host, no user info, query or fragment")
        if "\\" in value or any(seg in (".", "..") for seg in unquote(parts.path).split("/")):
            raise ValueError("must be a FHIR base URL without '.' or '..' path segments")
        return value.rstrip("/")

    @property
    def patient_id(self) -> str:
        return str(self.context["patientId"])

    @property
    def access_token(self) -> str | None:
        return self.fhirAuthorization.access_token if self.fhirAuthorization else None


def parse_hook_request(body: Any, expected_hook: str) -> HookRequest:
    if not isinstance(body, dict):
        raise ClientError("the request body must be a JSON object")
    try:
        request = HookRequest.model_validate(body)
    except ValidationError as exc:
        raise ClientError("the hook request is invalid", details=validation_details(exc)) from None
    patient_id = request.context.get("patientId")
    if not isinstance(patient_id, str) or not patient_id.strip():
        raise ClientError(
            "the hook request is invalid",
            details=[{"field": "context.patientId", "problem": "required: the id of the patient"}],
        )
    if request.hook != expected_hook:
        raise ClientError(
            f"this service answers the '{expected_hook}' hook, but the request is for "
            f"'{request.hook}'",
            details=[{"field": "hook", "problem": f"expected '{expected_hook}'"}],
            logged=f"this service answers the '{expected_hook}' hook, the request is for another",
        )
    return request


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err["loc"])
        details.append({"field": field, "problem": err["msg"]})
    return details
