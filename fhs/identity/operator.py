"""The operator bootstrap secret: written once to ``data_dir/operator.secret`` (0600), held only as a hash.

The operator presents it as ``Authorization: Bearer fhsop_…``. The FHS keeps only its SHA-256 in memory
and compares in constant time. To replace it, stop the FHS, delete the file and start again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from pathlib import Path

from fhs.errors import InvalidInput
from fhs.identity.keys import read_private_file, write_private_file

log = logging.getLogger(__name__)

OPERATOR_SECRET_PREFIX = "fhsop_"
OPERATOR_SECRET_FILE = "operator.secret"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class OperatorSecret:
    """Checks operator credentials against the SHA-256 of the bootstrap secret."""

    def __init__(self, digest: bytes, *, path: Path | None = None) -> None:
        self._digest = digest
        self.path = path
        """Where the secret lives (tell the operator; never log the secret itself)."""

    @classmethod
    def open(cls, data_dir: Path) -> OperatorSecret:
        """Load ``data_dir/operator.secret``, creating it with a fresh random secret on first start."""
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / OPERATOR_SECRET_FILE
        if not path.exists():
            fresh = OPERATOR_SECRET_PREFIX + secrets.token_urlsafe(32)
            if write_private_file(path, (fresh + "\n").encode("ascii"), exclusive=True):
                log.info("created operator secret in %s", path)
        secret = read_private_file(path).decode("utf-8", "replace").strip()
        if not secret.startswith(OPERATOR_SECRET_PREFIX) or len(secret) < len(OPERATOR_SECRET_PREFIX) + 32:
            raise InvalidInput(
                f"{path} holds no operator secret ({OPERATOR_SECRET_PREFIX}…); delete it to create a new one"
            )
        return cls(_digest(secret), path=path)

    @property
    def digest_hex(self) -> str:
        """The SHA-256 of the secret, hex-encoded (shared through the store so replicas agree)."""
        return self._digest.hex()

    def check_operator_secret(self, token: str) -> bool:
        """True if ``token`` is the operator secret (constant-time comparison of SHA-256 digests)."""
        if not isinstance(token, str) or not token.startswith(OPERATOR_SECRET_PREFIX):
            return False
        return hmac.compare_digest(_digest(token), self._digest)


def is_operator_credential(token: str) -> bool:
    """Whether a bearer token has the operator-secret form (it is then never treated as a JWT)."""
    return token.startswith(OPERATOR_SECRET_PREFIX)
