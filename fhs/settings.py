"""FHS settings: one pydantic-settings class, built by the CLI or tests and passed to ``create_app``.

Nothing reads the environment at import time; ``Settings()`` reads ``FHS_*`` variables when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fhs.ratelimit import parse_budget

Algorithm = Literal["RS256", "ES256", "EdDSA"]


class Settings(BaseSettings):
    """Configuration of one FHS process (all replicas of one FHS share the same values)."""

    model_config = SettingsConfigDict(
        env_prefix="FHS_", env_nested_delimiter="__", use_attribute_docstrings=True
    )

    fhs_id: str = Field("fhs-local", pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    """This FHS's id as its peers know it (lower case letters, digits, ``.``, ``_``, ``-``)."""
    public_url: str = "http://127.0.0.1:8080"
    """The URL members and peers reach this FHS at (issuer of its invocation tokens)."""
    host: str = "127.0.0.1"
    """Address ``fhs serve`` listens on."""
    port: int = Field(8080, ge=0, le=65535)
    """Port ``fhs serve`` listens on (0: any free port)."""
    data_dir: Path = Path("data")
    """Holds the operator secret file and, by default, the SQLite store."""
    store_url: str = ""
    """``sqlite:///path`` or ``redis://host:port/db``; empty means SQLite at ``data_dir/fhs.sqlite3``."""

    audience: str = ""
    """Expected ``aud`` of member JWTs; empty means ``public_url``."""
    allowed_algorithms: list[Algorithm] = ["RS256", "ES256", "EdDSA"]
    """Signature algorithms accepted on member JWTs (never read from the token)."""
    max_token_lifetime_s: int = Field(3600, gt=0)
    """Longest accepted member JWT lifetime (``exp`` minus ``nbf``/``iat``)."""
    clock_skew_s: int = Field(30, ge=0, le=60)
    """Leeway on ``exp``, ``nbf`` and ``iat``."""
    jwks_refresh_cooldown_s: float = Field(30.0, ge=0)
    """Least time between two fetches of one issuer's JWKS (an unknown ``kid`` triggers a fetch)."""
    jwks_fetch_timeout_s: float = Field(5.0, gt=0)
    """Timeout of a JWKS fetch (and of the FHS's other own HTTP calls)."""

    invocation_token_ttl_s: int = Field(60, gt=0, le=600)
    """Lifetime of the token the FHS attaches to each call it forwards to a service."""
    proxy_allowlist: list[str] = []
    """CIDRs or host names the proxy may call although they are private/loopback/link-local."""
    proxy_timeout_s: float = Field(30.0, gt=0)
    """Timeout of a proxied call to a service."""
    proxy_max_body_bytes: int = Field(16 * 1024 * 1024, gt=0)
    """Largest request or response body the proxy passes (413 above)."""

    rate_limit_member: str = "3000/minute"
    """Every Member API call of one member (``limits`` syntax: ``<count>/<second|minute|hour|day>``)."""
    rate_limit_planning: str = "120/minute"
    """Partition queries and plan executions of one member, on top of ``rate_limit_member``."""
    rate_limit_peer: str = "60000/minute"
    """Every FHS-FHS call of one peer FHS (its members' forwarded calls included)."""

    metrics_token: str = ""
    """When set, ``/metrics`` answers only ``Authorization: Bearer <this>`` (give it to Prometheus); when
    empty, ``/metrics`` is open: keep the FHS's port on a private network then."""

    audit_keep_entries: int = Field(100_000, ge=1)
    """Newest entries kept per audit log (each federation's and the operator's); older ones are trimmed
    by the background loop every ``peer_key_refresh_s``. Export them first if you must keep them longer."""

    sync_interval_s: float = Field(2.0, gt=0)
    """How often the replication loop pushes and pulls federation events (it also runs after each write)."""
    peer_timeout_s: float = Field(15.0, gt=0)
    """Timeout of a call to a peer FHS."""
    peer_key_refresh_s: float = Field(30.0, gt=0)
    """How often peers' signed key sets are fetched (and the least time between refreshes on an unknown kid);
    keep it below the publish delay of key rotations."""

    @field_validator("allowed_algorithms")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one algorithm must be allowed")
        return value

    @field_validator("rate_limit_member", "rate_limit_planning", "rate_limit_peer")
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_budget(value)  # a bad budget stops start-up with the reason
        return value

    @property
    def expected_audience(self) -> str:
        """The audience member tokens must carry."""
        return self.audience or self.public_url

    @property
    def resolved_store_url(self) -> str:
        """The store URL with the embedded default filled in."""
        return self.store_url or f"sqlite:///{self.data_dir / 'fhs.sqlite3'}"
