"""A loopback echo service for the walkthrough: answers every call with what it received, as JSON.

Run it with ``python -m fhs.devtools.echo --port 9300 --fhs http://127.0.0.1:8080``. With ``--fhs`` it
checks the bearer token of each call the way a real service would: an invocation token signed by that
FHS (keys from its ``/.well-known/jwks.json``, issuer = the FHS URL). The audience (the service id) is
reported, not checked, because the echo learns its id only after it is registered.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx
import jwt

from fhs.errors import FHSError
from fhs.identity.invocation import verify_invocation_token

MAX_ECHO_BODY_BYTES = 64 * 1024
Scope = dict[str, Any]


def create_echo_app(*, fhs_url: str | None = None) -> Any:
    """An ASGI app echoing each request; verifies invocation tokens signed by ``fhs_url`` if given."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        token = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if token:
            headers["authorization"] = f"Bearer {token[:16]}... ({len(token)} chars)"
        record = {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode("latin-1"),
            "headers": headers,
            "body": body[:MAX_ECHO_BODY_BYTES].decode("utf-8", "replace"),
        }
        if fhs_url is not None:
            record["invocation"] = await _check_invocation_token(token, fhs_url)
        payload = json.dumps(record, indent=1).encode()
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})

    return app


async def _check_invocation_token(token: str, fhs_url: str) -> dict[str, Any]:
    if not token:
        return {"verified": False, "error": "no bearer token: this call did not come through an FHS"}
    try:
        audience = jwt.decode(token, options={"verify_signature": False}).get("aud")
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            jwks = (await client.get(fhs_url.rstrip("/") + "/.well-known/jwks.json")).json()
        claims = verify_invocation_token(token, jwks=jwks, issuer=fhs_url, audience=str(audience))
    except (FHSError, jwt.PyJWTError, httpx.HTTPError, ValueError) as exc:
        return {"verified": False, "error": str(exc)[:300]}
    keep = ("iss", "aud", "federation", "member", "attributes")
    return {"verified": True, **{name: claims[name] for name in keep if name in claims}}


def main(argv: list[str] | None = None) -> None:
    """Serve the echo on loopback."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m fhs.devtools.echo", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9300)
    parser.add_argument("--fhs", default=None, help="verify invocation tokens signed by the FHS at this URL")
    args = parser.parse_args(argv)
    app = create_echo_app(fhs_url=args.fhs)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
