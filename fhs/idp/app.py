"""The dev IdP: an OAuth2 client-credentials token endpoint issuing short-lived ES256 JWTs, plus its JWKS.

For local use, the demo and tests only (DESIGN §2). Grant handling and client authentication
(``client_secret_basic``, ``client_secret_post``) are authlib's RFC 6749 server components behind a thin
FastAPI adapter; errors are RFC 6749 §5.2 JSON bodies. A client may ask for one of its configured audiences
with the ``audience`` (or RFC 8707 ``resource``) parameter; the first one is the default.

authlib refuses plain ``http`` except on loopback; to serve the dev IdP over http on another host (e.g. in
a container network) set ``AUTHLIB_INSECURE_TRANSPORT=1``.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import jwt
from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fhs.identity.keys import (
    b64url,
    ensure_private_dir,
    jwk_thumbprint,
    read_private_file,
    write_private_file,
)

IDP_ALGORITHM = "ES256"
IDP_KEY_FILE = "idp-es256.pem"
MAX_TOKEN_REQUEST_BYTES = 16 * 1024
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


class IdPClient(BaseModel):
    """One OAuth2 client: its secret, the subject its tokens carry, and the audiences it may ask for."""

    model_config = ConfigDict(extra="forbid")

    secret: str = Field(min_length=8)
    subject: str = Field(min_length=1)
    audiences: list[str] = Field(min_length=1)


class IdPConfig(BaseModel):
    """Configuration of a dev IdP."""

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(pattern=r"^https?://[^/?#]+(/[^?#]*)?$")
    key_dir: Path
    token_ttl_s: int = Field(default=300, gt=0, le=3600)
    clients: dict[str, IdPClient] = Field(default_factory=dict)

    @property
    def token_endpoint(self) -> str:
        """Absolute URL of ``POST /token``."""
        return self.issuer.rstrip("/") + "/token"

    @property
    def jwks_uri(self) -> str:
        """Absolute URL of the JWKS."""
        return self.issuer.rstrip("/") + "/.well-known/jwks.json"


def load_idp_config(path: Path | str) -> IdPConfig:
    """Read an ``IdPConfig`` from a ``.json`` or ``.toml`` file; a relative ``key_dir`` is relative to it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ValueError("the file name must end in .json or .toml")
        config = IdPConfig.model_validate(data)
    except (OSError, ValueError, ValidationError) as exc:  # JSON/TOML/pydantic errors are ValueErrors
        raise ValueError(f"invalid dev IdP config {path}: {exc}") from None
    if not config.key_dir.is_absolute():
        config = config.model_copy(update={"key_dir": path.parent / config.key_dir})
    return config


class IdPSigner:
    """The IdP's ES256 key, created on first use in ``key_dir`` (0700) as a 0600 PEM file."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._private_key = private_key
        numbers = private_key.public_key().public_numbers()

        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }
        self.kid = jwk_thumbprint(jwk)
        self.public_jwk = {**jwk, "kid": self.kid, "use": "sig", "alg": IDP_ALGORITHM}

    @classmethod
    def open(cls, key_dir: Path) -> IdPSigner:
        """Load the key from ``key_dir``, generating it on first start."""
        ensure_private_dir(key_dir)
        path = key_dir / IDP_KEY_FILE
        if not path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            write_private_file(path, pem, exclusive=True)
        loaded = serialization.load_pem_private_key(read_private_file(path), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
            raise ValueError(f"{path} does not hold a P-256 private key; delete it to create a new one")
        return cls(loaded)

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set."""
        return {"keys": [self.public_jwk]}

    def sign(self, claims: dict[str, Any]) -> str:
        """An ES256 JWT (typ ``at+jwt``, RFC 9068) over ``claims``."""
        return jwt.encode(
            claims, self._private_key, algorithm=IDP_ALGORITHM, headers={"kid": self.kid, "typ": "at+jwt"}
        )


# --- authlib server components ---------------------------------------------------------------------


class InvalidTargetError(OAuth2Error):
    """The requested audience/resource is not one this client may ask for (RFC 8707 §2)."""

    error = "invalid_target"
    status_code = 400


class _Client(ClientMixin):
    def __init__(self, client_id: str, config: IdPClient) -> None:
        self.client_id = client_id
        self.config = config

    def get_client_id(self) -> str:
        return self.client_id

    def get_allowed_scope(self, scope: str | None) -> str:
        return ""

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.config.secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in ("client_secret_basic", "client_secret_post")

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


class _FormPayload(OAuth2Payload):
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in pairs:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class _FormRequest(OAuth2Request):
    def __init__(self, request: Request, pairs: list[tuple[str, str]]) -> None:
        super().__init__(method=request.method, uri=str(request.url), headers=request.headers)
        self.payload = _FormPayload(pairs)
        self._query = dict(request.query_params)

    @property
    def args(self) -> dict[str, str]:
        return self._query

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data


class _ClientCredentialsGrant(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def validate_token_request(self) -> None:
        super().validate_token_request()
        client: _Client = self.request.client
        data = self.request.payload.data
        requested = data.get("audience") or data.get("resource")
        if requested is None:
            self.audience = client.config.audiences[0]
        elif requested in client.config.audiences:
            self.audience = requested
        else:
            raise InvalidTargetError(description=f"audience {requested[:100]!r} not allowed for this client")

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token = self.server.issue_access_token(self.request.client, self.audience)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class _DevAuthorizationServer(AuthorizationServer):
    def __init__(self, config: IdPConfig, signer: IdPSigner) -> None:
        super().__init__()
        self.config = config
        self.signer = signer
        self.register_grant(_ClientCredentialsGrant)

    def query_client(self, client_id: str) -> _Client | None:
        client = self.config.clients.get(client_id)
        return _Client(client_id, client) if client is not None else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Tokens are self-contained JWTs; nothing is stored."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signals in the dev IdP."""

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        return JSONResponse(body, status_code=status, headers=dict(headers))

    def issue_access_token(self, client: _Client, audience: str) -> dict[str, Any]:
        now = int(time.time())
        ttl = self.config.token_ttl_s
        claims = {
            "iss": self.config.issuer,
            "sub": client.config.subject,
            "aud": audience,
            "client_id": client.client_id,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": secrets.token_urlsafe(16),
        }
        return {"access_token": self.signer.sign(claims), "token_type": "Bearer", "expires_in": ttl}


def _oauth_error(server: _DevAuthorizationServer, error: OAuth2Error) -> Response:
    return server.handle_response(*error())


def create_idp_app(config: IdPConfig) -> FastAPI:
    """The dev IdP app: ``POST /token``, ``/.well-known/jwks.json``, ``/.well-known/openid-configuration``."""
    signer = IdPSigner.open(config.key_dir)
    server = _DevAuthorizationServer(config, signer)
    app = FastAPI(title="FedScission dev IdP", version="1", docs_url=None, redoc_url=None)

    @app.post("/token")
    async def token(request: Request) -> Response:
        """OAuth2 token endpoint (client credentials grant only)."""
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != FORM_MEDIA_TYPE:
            return _oauth_error(server, InvalidRequestError(f"use Content-Type {FORM_MEDIA_TYPE}"))
        body = await request.body()
        if len(body) > MAX_TOKEN_REQUEST_BYTES:
            return _oauth_error(server, InvalidRequestError("request body too large"))
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError):
            return _oauth_error(server, InvalidRequestError("malformed form body"))
        names = [name for name, _ in pairs]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            return _oauth_error(server, InvalidRequestError(f"parameter repeated: {repeated[0][:40]}"))
        if "client_secret" in names and request.headers.get("authorization"):
            return _oauth_error(server, InvalidRequestError("use exactly one client authentication method"))
        try:
            oauth_request = _FormRequest(request, pairs)
        except OAuth2Error as error:  # insecure transport
            return _oauth_error(server, error)
        return server.create_token_response(oauth_request)

    @app.get("/.well-known/jwks.json")
    async def jwks() -> dict[str, Any]:
        """The IdP's public keys."""
        return signer.jwks()

    @app.get("/.well-known/openid-configuration")
    async def openid_configuration() -> dict[str, Any]:
        """Discovery metadata (the subset a client-credentials IdP has)."""
        return {
            "issuer": config.issuer,
            "token_endpoint": config.token_endpoint,
            "jwks_uri": config.jwks_uri,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "token_endpoint_auth_signing_alg_values_supported": [IDP_ALGORITHM],
            "response_types_supported": ["token"],
        }

    return app
