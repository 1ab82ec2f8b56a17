"""Opaque identifiers: member ids (reversible, URL-safe) and encoded service ids.

A member is identified by (issuer, subject); its *key* is ``issuer#subject`` and its URL-safe *id* is the
base64url encoding of the key. An encoded service id carries the owning FHS id and a random part, so any
participating FHS can route it without learning the endpoint URL.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets

from fhs.errors import NotFound

_SERVICE_ID = re.compile(r"^svc_[A-Za-z0-9_-]{8,200}$")


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def member_key(issuer: str, subject: str) -> str:
    """The canonical key of a member: ``issuer#subject``."""
    return f"{issuer}#{subject}"


def member_id(key: str) -> str:
    """The URL-safe id of a member key."""
    return _b64encode(key.encode("utf-8"))


def member_key_from_id(value: str) -> str:
    """Decode a member id; unknown or malformed ids are reported as not found."""
    try:
        key = _b64decode(value).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise NotFound(f"no member with id {value[:80]!r}") from None
    if "#" not in key:
        raise NotFound(f"no member with id {value[:80]!r}")
    return key


def new_service_id(fhs_id: str) -> str:
    """A fresh encoded service id owned by ``fhs_id``."""
    return "svc_" + _b64encode(f"{fhs_id}/{secrets.token_hex(12)}".encode())


def service_home(service_id: str) -> str:
    """The FHS id that owns an encoded service id; malformed ids are reported as not found."""
    if not _SERVICE_ID.match(service_id):
        raise NotFound("no such service")
    try:
        home, _, _ = _b64decode(service_id[4:]).decode("utf-8").partition("/")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise NotFound("no such service") from None
    if not home:
        raise NotFound("no such service")
    return home


def new_federation_id() -> str:
    """A fresh federation id."""
    return "fed_" + secrets.token_hex(8)
