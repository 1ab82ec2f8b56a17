"""One error hierarchy for the FHS core; the API layer maps it to one JSON body shape.

Domain code raises these, never ``HTTPException``. Subclasses only set ``code``, ``status_code`` and a
docstring. The body shape is ``{"error": {"code": ..., "message": ..., "details": {...}}}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class FHSError(Exception):
    """Base class of every error the FHS reports to a caller."""

    code = "fhs_error"
    status_code = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        """The JSON error body for this error."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class InvalidInput(FHSError):
    """The request is well-formed JSON but its content is not acceptable."""

    code = "invalid_input"
    status_code = 422


class BadRequest(FHSError):
    """The request is malformed or ambiguous (e.g. two different credentials)."""

    code = "bad_request"
    status_code = 400


class Unauthenticated(FHSError):
    """No valid credential was presented."""

    code = "unauthenticated"
    status_code = 401


class Forbidden(FHSError):
    """The caller is authenticated but lacks the right for this action."""

    code = "forbidden"
    status_code = 403


class NotFound(FHSError):
    """The thing does not exist, or the caller may not know that it exists."""

    code = "not_found"
    status_code = 404


class Conflict(FHSError):
    """The change conflicts with the current state (already exists, concurrent write, digest mismatch)."""

    code = "conflict"
    status_code = 409


class PayloadTooLarge(FHSError):
    """A request or response body exceeds the configured limit."""

    code = "payload_too_large"
    status_code = 413


class UpstreamError(FHSError):
    """The upstream service or peer FHS could not be reached or answered badly."""

    code = "upstream_error"
    status_code = 502


class RateLimited(FHSError):
    """The caller used up a request budget; ``details.retry_after_s`` says when to try again."""

    code = "rate_limited"
    status_code = 429


class IdPUnavailable(FHSError):
    """The keys of the token's (trusted) issuer cannot be fetched now: not the caller's fault; retry later."""

    code = "idp_unavailable"
    status_code = 503


class UpstreamTimeout(FHSError):
    """The upstream service or peer FHS did not answer in time."""

    code = "upstream_timeout"
    status_code = 504


def validation_problems(exc: ValidationError) -> str:
    """The errors of a pydantic validation on one line: ``field.path: message; …``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ())) or 'value'}: {err.get('msg', '')}"
        for err in exc.errors()
    )
