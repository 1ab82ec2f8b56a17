"""The FHS's own signing keys: created on first start, persisted with 0600, published as a JWKS, rotated.

Algorithm: **EdDSA with Ed25519**. Signatures are deterministic (no per-signature nonce whose reuse or bias
leaks the private key, unlike ECDSA/ES256), keys are 32 bytes, signing and verification are fast, and there
is exactly one curve and one hash, so there are no parameter choices to get wrong. PyJWT, joserfc and
authlib all verify it (RFC 8037).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fhs.errors import Conflict, InvalidInput

log = logging.getLogger(__name__)

KEY_ALGORITHM = "EdDSA"
KEYRING_FILE = "keyring.json"
_FORMAT_VERSION = 1

# RFC 7638 §3.2: the required members of each key type, in lexicographic order.
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JOSE uses it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK (used as its ``kid``)."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise ValueError(f"cannot compute a thumbprint for key type {jwk.get('kty')!r}")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if needed and make it accessible to the owner only (0700)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        os.chmod(path, 0o700)


def write_private_file(path: Path, data: bytes, *, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` atomically with mode 0600.

    The bytes go to a fresh temporary file in the same directory (created 0600, never readable by
    others), are fsynced and then moved into place. With ``exclusive`` an existing file is kept and
    ``False`` is returned: of two processes starting together exactly one creates the file.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def read_private_file(path: Path) -> bytes:
    """Read a secret file, tightening its mode to 0600 if it was readable by others."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s had mode %o; tightening to 0600", path, mode)
        os.chmod(path, 0o600)
    return path.read_bytes()


def ed25519_public_jwk(private_key: Ed25519PrivateKey) -> dict[str, str]:
    """The public JWK (RFC 8037) of an Ed25519 key, with ``kid`` = its RFC 7638 thumbprint."""
    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    return {**jwk, "kid": jwk_thumbprint(jwk), "use": "sig", "alg": KEY_ALGORITHM}


@dataclass
class _SigningKey:
    private_key: Ed25519PrivateKey
    kid: str
    created_at: float
    activates_at: float
    """From this time on the key signs (unless a later key has activated)."""
    expires_at: float | None = None
    """When set, the key leaves the JWKS at this time (superseded + overlap)."""

    def export(self) -> dict[str, Any]:
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return {
            "kid": self.kid,
            "private_key_pem": pem.decode("ascii"),
            "created_at": self.created_at,
            "activates_at": self.activates_at,
            "expires_at": self.expires_at,
        }

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> _SigningKey:
        try:
            private_key = serialization.load_pem_private_key(
                str(data["private_key_pem"]).encode("ascii"), password=None
            )
            if not isinstance(private_key, Ed25519PrivateKey):
                raise ValueError("not an Ed25519 key")
            kid = ed25519_public_jwk(private_key)["kid"]
            if data.get("kid") not in (None, kid):
                raise ValueError(f"stored kid {data.get('kid')!r} does not match the key ({kid})")
            expires_at = data.get("expires_at")
            return cls(
                private_key=private_key,
                kid=kid,
                created_at=float(data["created_at"]),
                activates_at=float(data["activates_at"]),
                expires_at=None if expires_at is None else float(expires_at),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"invalid keyring entry: {exc}") from None

    @classmethod
    def generate(cls, *, now: float, activates_at: float) -> _SigningKey:
        private_key = Ed25519PrivateKey.generate()
        return cls(private_key, ed25519_public_jwk(private_key)["kid"], now, activates_at)


class FHSKeyring:
    """The FHS's own Ed25519 signing keys.

    Lifecycle of a key, derived from timestamps so that every replica reading the same state agrees:

    * ``rotate(overlap_s=..., publish_delay_s=...)`` adds a new key as **next**: it is published in
      :meth:`jwks` at once but does not sign yet. Peers and resource services that refresh or re-pin the
      JWKS during the publish delay learn it before any token signed with it exists.
    * After ``publish_delay_s`` the new key becomes **current** and :meth:`sign` uses it.
    * The superseded key stays in the JWKS for ``overlap_s`` more seconds, so tokens it signed just before
      the switch still verify; choose ``overlap_s`` ≥ the longest lifetime of anything the FHS signs.
      After that it disappears from the JWKS and from the persisted state.

    Persistence: with a ``path`` (see :meth:`open`) the whole keyring is one JSON file written atomically
    with mode 0600 in a 0700 directory. Replicas of one FHS share a Store, not a directory: persist the
    keyring there with :meth:`export` / :meth:`load_from` (the file is the single-process default).
    """

    def __init__(
        self,
        keys: list[_SigningKey],
        *,
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            raise InvalidInput("a keyring needs at least one key")
        self._keys = sorted(keys, key=lambda k: k.activates_at)
        self._path = path
        self._clock = clock

    # --- construction and persistence -------------------------------------------------------------

    @classmethod
    def generate(cls, *, clock: Callable[[], float] = time.time) -> FHSKeyring:
        """A fresh in-memory keyring with one current key."""
        now = clock()
        return cls([_SigningKey.generate(now=now, activates_at=now)], clock=clock)

    @classmethod
    def open(cls, data_dir: Path, *, clock: Callable[[], float] = time.time) -> FHSKeyring:
        """Load the keyring from ``data_dir/keys``, creating it (0700 dir, 0600 file) on first start."""
        key_dir = Path(data_dir) / "keys"
        ensure_private_dir(key_dir)
        path = key_dir / KEYRING_FILE
        if not path.exists():
            fresh = cls.generate(clock=clock)
            if write_private_file(path, fresh._serialize(), exclusive=True):
                fresh._path = path
                log.info("created FHS signing key %s in %s", fresh.current_kid, path)
                return fresh
            # Another process created it first: use theirs.
        try:
            data = json.loads(read_private_file(path))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"cannot read keyring {path}: {exc}") from None
        keyring = cls.load_from(data, clock=clock)
        keyring._path = path
        return keyring

    @classmethod
    def load_from(cls, data: Mapping[str, Any], *, clock: Callable[[], float] = time.time) -> FHSKeyring:
        """Rebuild a keyring from :meth:`export` output (e.g. a document kept in the Store)."""
        if not isinstance(data, Mapping) or data.get("version") != _FORMAT_VERSION:
            raise InvalidInput(f"unsupported keyring format (expected version {_FORMAT_VERSION})")
        if data.get("algorithm") != KEY_ALGORITHM:
            raise InvalidInput(f"unsupported keyring algorithm {data.get('algorithm')!r}")
        entries = data.get("keys")
        if not isinstance(entries, list) or not entries:
            raise InvalidInput("keyring has no keys")
        return cls([_SigningKey.load(entry) for entry in entries], clock=clock)

    def export(self) -> dict[str, Any]:
        """The full keyring state, private keys included (store it only where secrets may live)."""
        return {
            "version": _FORMAT_VERSION,
            "algorithm": KEY_ALGORITHM,
            "keys": [key.export() for key in self._keys],
        }

    def _serialize(self) -> bytes:
        return json.dumps(self.export(), indent=2).encode("utf-8")

    def _save(self) -> None:
        if self._path is not None:
            write_private_file(self._path, self._serialize())

    # --- use -------------------------------------------------------------------------------------

    def _current(self, now: float) -> _SigningKey:
        active = [key for key in self._keys if key.activates_at <= now]
        # The first key always counts as active, even if the clock went backwards since its creation.
        return active[-1] if active else self._keys[0]

    @property
    def current_kid(self) -> str:
        """The kid of the key that signs now."""
        return self._current(self._clock()).kid

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set: every key that is next, current, or still inside its overlap."""
        now = self._clock()
        published = [k for k in self._keys if k.expires_at is None or k.expires_at > now]
        return {"keys": [ed25519_public_jwk(k.private_key) for k in published]}

    def sign(self, claims: Mapping[str, Any], *, typ: str) -> str:
        """A compact JWS over ``claims`` signed by the current key (header: alg, kid, typ)."""
        key = self._current(self._clock())
        return jwt.encode(
            dict(claims), key.private_key, algorithm=KEY_ALGORITHM, headers={"kid": key.kid, "typ": typ}
        )

    def sign_with_each(self, claims: Mapping[str, Any], *, typ: str) -> list[str]:
        """One compact JWS over ``claims`` per published key (whoever pinned any of them can check one)."""
        now = self._clock()
        published = [k for k in self._keys if k.expires_at is None or k.expires_at > now]
        return [
            jwt.encode(
                dict(claims), k.private_key, algorithm=KEY_ALGORITHM, headers={"kid": k.kid, "typ": typ}
            )
            for k in published
        ]

    def rotate(self, *, overlap_s: float, publish_delay_s: float = 60.0) -> str:
        """Add a new key that signs after ``publish_delay_s``; the old one stays published ``overlap_s`` more.

        Returns the new kid. Raises ``Conflict`` while an earlier rotation is still pending.
        """
        if overlap_s < 0 or publish_delay_s < 0:
            raise InvalidInput("overlap_s and publish_delay_s must not be negative")
        now = self._clock()
        if any(key.activates_at > now for key in self._keys):
            raise Conflict("a key rotation is already pending; wait until the next key is current")
        current = self._current(now)
        new_key = _SigningKey.generate(now=now, activates_at=now + publish_delay_s)
        current.expires_at = new_key.activates_at + overlap_s
        self._keys = [k for k in self._keys if k.expires_at is None or k.expires_at > now] + [new_key]
        self._save()
        log.info("rotating FHS signing key %s -> %s", current.kid, new_key.kid)
        return new_key.kid
