"""Settings of one resource service (a device, edge or cloud node): pydantic-settings, passed to the factory.

Nothing reads the environment at import time; ``ResourceSettings()`` reads ``SCISSION_RESOURCE_*`` variables
when called (lists and objects as JSON, e.g. ``SCISSION_RESOURCE_MODELS='["mobilenetv2:alpha=0.35"]'``).
A model is given as an object (:class:`ModelSpec`) or as the short string ``[NAME=]SOURCE[:key=value…]``
where SOURCE is a ``keras.applications`` name or a path ending in ``.keras`` and the keys are ``alpha``,
``input_shape`` (``96x96x3`` or ``96,96,3``) and ``seed``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fhs.store import check_store_url
from scission_service.benchmark_data import Tier
from scission_service.tensor_wire import ALLOWED_DTYPES

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)


class ModelSpec(BaseModel):
    """One model the node serves: a ``keras.applications`` name (fixed-seed weights) or a ``.keras`` file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("", description="URL name of the model; defaults to the application name or file stem")
    application: str | None = None
    path: Path | None = None
    alpha: float | None = Field(None, gt=0, le=4)
    input_shape: tuple[int, int, int] | None = None
    seed: int = Field(0, ge=0, lt=2**32)

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if (self.application is None) == (self.path is None):
            raise ValueError("a model needs exactly one of 'application' (keras.applications name) or 'path'")
        if self.path is not None:
            if self.path.suffix != ".keras":
                raise ValueError(f"model file {self.path.name!r} must be a Keras 3 '.keras' file")
            if self.alpha is not None or self.input_shape is not None:
                raise ValueError("alpha and input_shape apply to keras.applications models, not .keras files")
        if self.input_shape is not None and any(d <= 0 for d in self.input_shape):
            raise ValueError(f"input_shape must be positive, got {list(self.input_shape)}")
        if not self.name:
            default = self.path.stem if self.path is not None else str(self.application)
            object.__setattr__(self, "name", re.sub(r"[^A-Za-z0-9_.-]", "-", default.lower())[:64] or "model")
        if not _MODEL_NAME.match(self.name):
            raise ValueError(
                f"model name {self.name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with "
                "a letter or digit"
            )
        return self

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """Parse ``[NAME=]SOURCE[:alpha=0.35][:input_shape=96x96x3][:seed=0]`` (ValueError: what is wrong)."""
        head, *options = text.strip().split(":")
        name, _, source = head.rpartition("=")
        if not source:
            raise ValueError(f"model spec {text!r} names no model")
        fields: dict[str, Any] = {"name": name}
        if source.endswith(".keras"):
            fields["path"] = Path(source)
        else:
            fields["application"] = source
        for option in options:
            key, sep, value = option.partition("=")
            key = key.strip()
            if not sep or key not in ("alpha", "input_shape", "seed"):
                raise ValueError(f"model spec option {option!r} is not one of alpha=…, input_shape=…, seed=…")
            try:
                if key == "input_shape":
                    fields[key] = [int(d) for d in re.split(r"[x,]", value.strip()) if d]
                elif key == "alpha":
                    fields[key] = float(value)
                else:
                    fields[key] = int(value)
            except ValueError:
                expected = {"input_shape": "HxWxC integers", "alpha": "a number", "seed": "an integer"}[key]
                raise ValueError(f"model spec option {option!r}: {key} must be {expected}") from None
        return cls.model_validate(fields)


class LinkProfile(BaseModel):
    """An emulated network link: fixed latency plus bytes / bandwidth, per direction (see docs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_s: float = Field(ge=0, le=10)
    bandwidth_bytes_per_s: float = Field(gt=0)
    direction: Literal["send", "receive", "both"] = "send"
    """``send``: the node's uplink (its output tensors); ``receive``: its downlink (input tensors)."""


#: Scission's network profiles (UCC 2020, §IV): device uplinks and the edge→cloud link.
NAMED_LINK_PROFILES: dict[str, LinkProfile] = {
    "3g": LinkProfile(latency_s=0.067, bandwidth_bytes_per_s=1.6e6 / 8),
    "4g": LinkProfile(latency_s=0.055, bandwidth_bytes_per_s=12.4e6 / 8),
    "wired": LinkProfile(latency_s=0.020, bandwidth_bytes_per_s=20e6 / 8),
    "edge-cloud": LinkProfile(latency_s=0.025, bandwidth_bytes_per_s=50e6 / 8),
}


def parse_link_profile(value: object) -> object:
    """Accept a profile name (``3g``, ``4g``, ``wired``, ``edge-cloud``, optionally ``NAME/receive``)."""
    if not isinstance(value, str):
        return value
    name, _, direction = value.strip().lower().partition("/")
    if name in ("", "none", "off"):
        return None
    profile = NAMED_LINK_PROFILES.get(name)
    if profile is None:
        known = ", ".join(NAMED_LINK_PROFILES)
        raise ValueError(f"unknown link profile {value!r}; known: {known} (or an object with latency_s, …)")
    return profile.model_copy(update={"direction": direction}) if direction else profile


class ResourceSettings(BaseSettings):
    """Configuration of one resource service process."""

    model_config = SettingsConfigDict(env_prefix="SCISSION_RESOURCE_", env_nested_delimiter="__")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    tier: Tier
    models: list[ModelSpec] = Field(min_length=1)

    fhs_issuer: str = Field(min_length=1, description="the FHS public URL: the 'iss' of invocation tokens")
    fhs_jwks: dict[str, Any] | None = None
    """The FHS's JWKS pinned inline; when omitted it is fetched from ``fhs_jwks_url``."""
    fhs_jwks_url: str = ""
    """Defaults to ``{fhs_issuer}/.well-known/jwks.json``."""
    service_ids: list[str] = Field(default_factory=list)
    """The service ids this node is registered under (token audiences); register first, then start."""
    jwks_refresh_cooldown_s: float = Field(30.0, ge=0)
    jwks_max_age_s: float = Field(3600.0, gt=0)
    jwks_fetch_timeout_s: float = Field(5.0, gt=0)
    token_leeway_s: float = Field(30.0, ge=0, le=60)
    max_token_lifetime_s: int = Field(600, gt=0)
    metrics_token: str = ""
    """When set, ``/metrics`` answers only ``Authorization: Bearer <this>``; empty: open (private network)."""
    replay_store_url: str = ""
    """Where used token ids are kept: empty = this process's memory (a restart forgets them, so a token
    captured within its lifetime could be replayed once after it); ``sqlite:///path`` survives restarts and is
    shared by processes on one machine; ``redis://host:port/db?prefix=name`` is shared by replicas."""

    max_tensor_bytes: int = Field(64 * 1024**2, gt=0, le=1024**3)
    allowed_dtypes: list[str] = Field(default_factory=lambda: sorted(ALLOWED_DTYPES), min_length=1)
    max_concurrent_segments: int = Field(4, ge=1, le=64)
    """Segment requests whose bodies may be in memory at once; more wait."""
    segment_workers: int = Field(1, ge=1, le=16)
    benchmark_default_repeats: int = Field(10, ge=1, le=10_000)
    benchmark_max_repeats: int = Field(200, ge=1, le=10_000)
    jobs_kept: int = Field(100, ge=1)
    cache_dir: Path | None = None
    """Where BenchmarkData is persisted; reloaded at start when the model digest and hardware still match."""
    link: LinkProfile | None = None
    compute_slowdown: float = Field(1.0, ge=1.0, le=100.0, allow_inf_nan=False)
    """Emulated slower hardware (demo/tests on one machine): every block takes this many times longer,
    in benchmarks and in segment execution alike (the extra time is slept, off the event loop)."""

    host: str = "127.0.0.1"
    port: int = Field(8090, ge=0, le=65535)

    @field_validator("replay_store_url")
    @classmethod
    def _store_url(cls, value: str) -> str:
        return check_store_url(value) if value else value

    @field_validator("models", mode="before")
    @classmethod
    def _parse_model_strings(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple):
            return [ModelSpec.parse(item) if isinstance(item, str) else item for item in value]
        return value

    @field_validator("models")
    @classmethod
    def _unique_names(cls, value: list[ModelSpec]) -> list[ModelSpec]:
        names = [spec.name for spec in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique; give 'NAME=' to tell apart: {duplicates}")
        return value

    @field_validator("allowed_dtypes")
    @classmethod
    def _known_dtypes(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - ALLOWED_DTYPES)
        if unknown:
            raise ValueError(f"dtypes {unknown} cannot be sent; choose from {sorted(ALLOWED_DTYPES)}")
        return sorted(set(value))

    @field_validator("link", mode="before")
    @classmethod
    def _named_link(cls, value: object) -> object:
        return parse_link_profile(value)

    @field_validator("fhs_issuer", "fhs_jwks_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value  # never rewritten: the issuer must equal the tokens' 'iss' exactly

    @model_validator(mode="after")
    def _defaults(self) -> ResourceSettings:
        if not self.service_ids or not all(self.service_ids):
            raise ValueError(
                "no service id: register the node first (scission resource register …) and start it with "
                "--service-id <the printed id>; it is the audience of the FHS invocation tokens"
            )
        if self.fhs_jwks is None and not self.fhs_jwks_url:
            self.fhs_jwks_url = self.fhs_issuer.rstrip("/") + "/.well-known/jwks.json"
        if self.fhs_jwks is not None and not isinstance(self.fhs_jwks.get("keys"), list):
            raise ValueError("fhs_jwks must be a JWK Set: an object with a 'keys' list")
        if self.benchmark_default_repeats > self.benchmark_max_repeats:
            raise ValueError("benchmark_default_repeats exceeds benchmark_max_repeats")
        return self
