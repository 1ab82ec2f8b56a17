"""The dev IdP: client-credentials tokens that the FHS's TokenValidator accepts, RFC 6749 errors."""

from __future__ import annotations

import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fhs.identity.schemas import TrustedIssuer
from fhs.identity.validation import TokenValidator
from fhs.idp import IdPConfig, create_idp_app, load_idp_config
from fhs.settings import Settings

ISSUER = "http://127.0.0.1:9100"
FHS_AUDIENCE = "http://127.0.0.1:8080"


@pytest.fixture
def config(tmp_path: Path) -> IdPConfig:
    return IdPConfig.model_validate(
        {
            "issuer": ISSUER,
            "key_dir": tmp_path / "idp-keys",
            "token_ttl_s": 120,
            "clients": {
                "alice-cli": {
                    "secret": "alice-secret",
                    "subject": "alice",
                    "audiences": [FHS_AUDIENCE, "fhs-b"],
                },
                "bob-cli": {"secret": "bob-secret-1", "subject": "bob", "audiences": ["fhs-b"]},
            },
        }
    )


@pytest.fixture
async def idp(config: IdPConfig) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_idp_app(config))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        yield client


async def test_client_credentials_token_is_accepted_by_the_fhs_validator(
    idp: httpx.AsyncClient, tmp_path: Path
) -> None:
    response = await idp.post(
        "/token", data={"grant_type": "client_credentials"}, auth=("alice-cli", "alice-secret")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 120
    assert response.headers["cache-control"] == "no-store"

    discovery = (await idp.get("/.well-known/openid-configuration")).json()
    assert discovery["issuer"] == ISSUER
    assert discovery["token_endpoint"] == f"{ISSUER}/token"
    # The FHS fetches the JWKS by URL through its injected client, here routed to the IdP app.
    issuers = {ISSUER: TrustedIssuer(issuer=ISSUER, jwks_uri=discovery["jwks_uri"])}
    settings = Settings(public_url=FHS_AUDIENCE, data_dir=tmp_path)
    principal = await TokenValidator(settings, idp).validate(body["access_token"], issuers=issuers)
    assert principal.key == f"{ISSUER}#alice"
    claims = principal.claims
    assert claims["aud"] == FHS_AUDIENCE
    assert claims["exp"] - claims["iat"] == 120
    assert {"nbf", "jti"} <= claims.keys()


async def test_client_secret_post_and_requested_audience(idp: httpx.AsyncClient, tmp_path: Path) -> None:
    response = await idp.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "alice-cli",
            "client_secret": "alice-secret",
            "audience": "fhs-b",
        },
    )
    assert response.status_code == 200, response.text
    jwks = (await idp.get("/.well-known/jwks.json")).json()
    assert all("d" not in key for key in jwks["keys"])
    issuers = {ISSUER: TrustedIssuer(issuer=ISSUER, audience="fhs-b", jwks=jwks)}
    async with httpx.AsyncClient() as client:
        validator = TokenValidator(Settings(public_url=FHS_AUDIENCE, data_dir=tmp_path), client)
        principal = await validator.validate(response.json()["access_token"], issuers=issuers)
    assert principal.subject == "alice"


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        (
            {"data": {"grant_type": "client_credentials"}, "auth": ("alice-cli", "wrong-secret")},
            401,
            "invalid_client",
        ),
        (
            {"data": {"grant_type": "client_credentials"}, "auth": ("nobody", "whatever-1")},
            401,
            "invalid_client",
        ),
        ({"data": {"grant_type": "client_credentials"}}, 401, "invalid_client"),
        (
            {"data": {"grant_type": "password"}, "auth": ("alice-cli", "alice-secret")},
            400,
            "unsupported_grant_type",
        ),
        (
            {
                "data": {"grant_type": "client_credentials", "audience": "fhs-c"},
                "auth": ("bob-cli", "bob-secret-1"),
            },
            400,
            "invalid_target",
        ),
        (
            {"json": {"grant_type": "client_credentials"}, "auth": ("alice-cli", "alice-secret")},
            400,
            "invalid_request",
        ),
        (
            {
                "content": "grant_type=client_credentials&grant_type=password",
                "auth": ("alice-cli", "alice-secret"),
            },
            400,
            "invalid_request",
        ),
    ],
)
async def test_token_errors_are_rfc6749_json(
    idp: httpx.AsyncClient, kwargs: dict[str, object], status: int, error: str
) -> None:
    if "content" in kwargs:
        kwargs["headers"] = {"Content-Type": "application/x-www-form-urlencoded"}
    response = await idp.post("/token", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert "access_token" not in response.json()


async def test_signing_key_persists_owner_only(config: IdPConfig) -> None:
    first = create_idp_app(config)
    second = create_idp_app(config)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url=ISSUER) as a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url=ISSUER) as b,
    ):
        assert (await a.get("/.well-known/jwks.json")).json() == (
            await b.get("/.well-known/jwks.json")
        ).json()
    assert stat.S_IMODE(config.key_dir.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in config.key_dir.iterdir())


def test_load_idp_config_from_json_and_toml(tmp_path: Path) -> None:
    (tmp_path / "idp.json").write_text(
        json.dumps(
            {
                "issuer": ISSUER,
                "key_dir": "keys",
                "clients": {"c": {"secret": "s3cret-s3cret", "subject": "carol", "audiences": ["x"]}},
            }
        )
    )
    (tmp_path / "idp.toml").write_text(
        f'issuer = "{ISSUER}"\nkey_dir = "keys"\n[clients.c]\nsecret = "s3cret-s3cret"\n'
        'subject = "carol"\naudiences = ["x"]\n'
    )
    for name in ("idp.json", "idp.toml"):
        config = load_idp_config(tmp_path / name)
        assert config.key_dir == tmp_path / "keys"
        assert config.token_ttl_s == 300
        assert config.clients["c"].subject == "carol"
    (tmp_path / "bad.json").write_text('{"issuer": "ftp://x", "key_dir": "k"}')
    with pytest.raises(ValueError, match="invalid dev IdP config"):
        load_idp_config(tmp_path / "bad.json")
