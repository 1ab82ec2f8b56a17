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

    model_config = SettingsConfigDict(env_prefix="FHS_", env_nested_delimiter="__")

    fhs_id: str = Field("fhs-local", pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    public_url: str = "http://127.0.0.1:8080"
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path("data")
    store_url: str = ""
    """``sqlite:///path`` or ``redis://host:port/db``; empty means SQLite at ``data_dir/fhs.sqlite3``."""

    audience: str = ""
    """Expected ``aud`` of member JWTs; empty means ``public_url``."""
    allowed_algorithms: list[Algorithm] = ["RS256", "ES256", "EdDSA"]
    max_token_lifetime_s: int = Field(3600, gt=0)
    clock_skew_s: int = Field(30, ge=0, le=60)
    jwks_refresh_cooldown_s: float = Field(30.0, ge=0)
    jwks_fetch_timeout_s: float = Field(5.0, gt=0)

    invocation_token_ttl_s: int = Field(60, gt=0, le=600)
    proxy_allowlist: list[str] = []
    """CIDRs or host names the proxy may call although they are private/loopback/link-local."""
    proxy_timeout_s: float = Field(30.0, gt=0)
    proxy_max_body_bytes: int = Field(16 * 1024 * 1024, gt=0)

    rate_limit_member: str = "3000/minute"
    """Every Member API call of one member (``limits`` syntax: ``<count>/<second|minute|hour|day>``)."""
    rate_limit_planning: str = "120/minute"
    """Partition queries and plan executions of one member, on top of ``rate_limit_member``."""
    rate_limit_peer: str = "60000/minute"
    """Every FHS-FHS call of one peer FHS (its members' forwarded calls included)."""

    audit_keep_entries: int = Field(100_000, ge=1)
    """Newest entries kept per audit log (each federation's and the operator's); older ones are trimmed
    by the background loop every ``peer_key_refresh_s``. Export them first if you must keep them longer."""

    sync_interval_s: float = Field(2.0, gt=0)
    """How often the replication loop pushes and pulls federation events (it also runs after each write)."""
    peer_timeout_s: float = Field(15.0, gt=0)
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
