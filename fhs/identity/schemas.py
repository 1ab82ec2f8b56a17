"""Identity data shapes: the issuers an operator trusts and the principal a validated token yields."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrustedIssuer(BaseModel):
    """An IdP whose JWTs this FHS accepts: exact ``issuer``, expected ``audience`` and its keys.

    Exactly one of ``jwks`` (an inline JWK Set) and ``jwks_uri`` (fetched and cached) is given.
    ``audience=None`` means the FHS's own expected audience (``Settings.expected_audience``).
    """

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(min_length=1, max_length=2048)
    audience: str | None = Field(default=None, min_length=1, max_length=2048)
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = Field(default=None, min_length=1, max_length=2048, pattern=r"^https?://")

    @model_validator(mode="after")
    def _exactly_one_key_source(self) -> TrustedIssuer:
        if (self.jwks is None) == (self.jwks_uri is None):
            raise ValueError("give exactly one of 'jwks' (inline JWK Set) and 'jwks_uri'")
        if self.jwks is not None and not isinstance(self.jwks.get("keys"), list):
            raise ValueError("'jwks' must be a JWK Set: an object with a 'keys' list")
        return self


class Principal(BaseModel):
    """An authenticated identity: (issuer, subject) plus the verified claims of its token."""

    model_config = ConfigDict(frozen=True)

    issuer: str
    subject: str
    claims: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """The stable identifier of this member: ``issuer#subject``."""
        return f"{self.issuer}#{self.subject}"
