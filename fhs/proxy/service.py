"""Forward one member invocation to a service's upstream endpoint (DESIGN §4).

Choices made here (the router relies on them):

* **Credentials and hop-by-hop headers** of the caller are dropped (see ``CREDENTIAL_HEADERS`` and
  ``HOP_BY_HOP_HEADERS``), as are any ``X-Forwarded-*``/``Forwarded``/``X-Real-IP`` the caller sent. The
  proxy adds **no** ``X-Forwarded-For``/``-Proto``: the member's identity travels in the invocation token, and
  the member's network address is not the service owner's business.
* **Request bodies** are read into memory up to ``max_body_bytes`` (never more: the count stops the read) and
  sent with a ``Content-Length``; over the limit ⇒ :class:`PayloadTooLarge` before any upstream contact.
* **Response bodies** are read raw (still compressed: no decompression bombs) up to ``max_body_bytes``;
  over ⇒ :class:`UpstreamError`. ``Content-Encoding`` passes through with the raw bytes.
* **Redirects are never followed.** A 3xx is returned with its status and body, but ``Location``,
  ``Content-Location`` and ``Refresh`` are removed: they would reveal the internal endpoint URL and point
  the member's client at an address the FHS does not vouch for. ``Set-Cookie`` is removed too.
* **DNS rebinding**: the host is resolved once, every address checked (:mod:`fhs.proxy.ssrf`), and the
  connection goes to a checked address; ``Host`` carries the name and, for https, the TLS SNI and
  certificate check use the name (``sni_hostname``). https requests carry ``Connection: close`` so a pooled
  connection verified for one name is never reused for another name on the same address.
* **Timeouts**: ``timeout_s`` bounds the whole upstream exchange (resolve, connect, send, full response),
  not just each read ⇒ :class:`UpstreamTimeout`.
* Error messages never contain the endpoint URL or host name.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import re
import ssl
from collections.abc import AsyncIterable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes

import httpx

from fhs.errors import FHSError, InvalidInput, PayloadTooLarge, UpstreamError, UpstreamTimeout
from fhs.proxy import ssrf

HeaderPairs = Iterable[tuple[str | bytes, str | bytes]]
Headers = Mapping[str, str] | HeaderPairs

HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "http2-settings",
    }
)
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "cookie2",
        "x-forwarded-access-token",
        "x-forwarded-id-token",
        "x-forwarded-user",
        "x-forwarded-email",
        "x-api-key",
        "api-key",
        "x-auth-token",
        "x-access-token",
        "x-amz-security-token",
        "x-csrf-token",
        "x-xsrf-token",
        "x-remote-user",
        "remote-user",
        "x-client-cert",
        "ssl-client-cert",
    }
)
# Headers the caller must not choose: the proxy sets them, or upstream frameworks trust them for routing.
CONTROLLED_REQUEST_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "expect",
        "forwarded",
        "x-real-ip",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    }
)
STRIPPED_RESPONSE_HEADERS = frozenset(
    {"set-cookie", "set-cookie2", "location", "content-location", "refresh", "alt-svc", "x-fhs-error"}
)
REFUSED_METHODS = frozenset({"CONNECT", "TRACE", "TRACK"})
MAX_TARGET_LENGTH = 8192

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SCHEME_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_PERCENT_ESCAPE = re.compile(rb"%[0-9A-Fa-f]{2}")
_SEGMENT_SAFE = "!$&'()*+,;=:@-._~"
_QUERY_SAFE = "!$&'()*+,;=:@-._~/?%"


@dataclass(frozen=True)
class ProxiedResponse:
    """What the upstream answered, filtered: status, headers (name, value) in order, and the raw body."""

    status_code: int
    headers: list[tuple[str, str]]
    body: bytes


def new_proxy_client(*, verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """An httpx client fit for the proxy: no env proxies, no redirects, no cookie jar, HTTP/1.1 only.

    ``verify`` is an SSL context trusting a private CA, or True for the system trust store.
    """
    refuse_all = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return httpx.AsyncClient(
        trust_env=False, follow_redirects=False, cookies=refuse_all, http2=False, verify=verify
    )


async def forward(
    *,
    client: httpx.AsyncClient,
    method: str,
    endpoint: str,
    sub_path: str,
    query: str,
    headers: Headers,
    body: AsyncIterable[bytes] | bytes,
    extra_headers: Mapping[str, str],
    allowlist: Iterable[str] | ssrf.Allowlist,
    timeout_s: float,
    max_body_bytes: int,
) -> ProxiedResponse:
    """Forward one invocation to ``endpoint`` + ``sub_path`` and return the upstream's filtered answer."""
    method = _check_method(method)
    try:
        target = ssrf.parse_endpoint(endpoint)
    except InvalidInput:
        raise UpstreamError(
            "the service's registered endpoint is not valid; its owner must update it"
        ) from None
    path = join_sub_path(target.path, sub_path)
    query = _check_query(query)
    if len(path) + len(query) > MAX_TARGET_LENGTH:
        raise InvalidInput(f"invocation path and query are longer than {MAX_TARGET_LENGTH} characters")
    allowed = ssrf.parse_allowlist(allowlist)
    caller_headers = header_pairs(headers)
    _refuse_declared_oversize(caller_headers, max_body_bytes)
    out_headers = _request_headers(caller_headers, extra_headers, target)
    content = await read_body(body, max_body_bytes)

    try:
        async with asyncio.timeout(timeout_s):
            addresses = await ssrf.resolve_allowed(target.host, target.port, allowlist=allowed)
            return await _exchange(
                client=client,
                method=method,
                target=target,
                addresses=addresses,
                raw_target=path + (f"?{query}" if query else ""),
                headers=out_headers,
                content=content,
                timeout_s=timeout_s,
                max_body_bytes=max_body_bytes,
            )
    except TimeoutError:
        raise UpstreamTimeout(f"the upstream service did not answer within {timeout_s:g} s") from None


def join_sub_path(base_path: str, sub_path: str) -> str:
    """Join a caller's sub-path under the endpoint's path; InvalidInput on traversal or absolute URLs."""
    if "\\" in sub_path:
        raise InvalidInput("invocation path must not contain backslashes")
    if sub_path.startswith("//") or _SCHEME_PREFIX.match(sub_path):
        raise InvalidInput("invocation path must be a relative path, not an absolute URL")
    if not sub_path:
        return base_path
    encoded: list[str] = []
    for segment in sub_path.removeprefix("/").split("/"):
        raw = unquote_to_bytes(segment)
        if raw in (b".", b".."):
            raise InvalidInput("invocation path must not contain '.' or '..' segments (also percent-encoded)")
        if b"/" in raw or b"\\" in raw:
            raise InvalidInput("invocation path must not contain encoded slashes or backslashes")
        if _PERCENT_ESCAPE.search(raw):
            raise InvalidInput("invocation path must not be percent-encoded twice")
        if any(b < 0x20 or b == 0x7F for b in raw):
            raise InvalidInput("invocation path must not contain control characters")
        encoded.append(quote_from_bytes(raw, safe=_SEGMENT_SAFE))
    base = base_path.rstrip("/")
    return f"{base}/{'/'.join(encoded)}"


def _check_method(method: str) -> str:
    if not _TOKEN.match(method or "") or len(method) > 32:
        raise InvalidInput("HTTP method is not a valid token")
    if method.upper() in REFUSED_METHODS:
        raise InvalidInput(f"HTTP method {method.upper()} is not forwarded by the proxy")
    return method


def _check_query(query: str) -> str:
    query = query.removeprefix("?")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in query):
        raise InvalidInput("query string must not contain control characters")
    # Existing %XX escapes are kept; spaces, '#', quotes and non-ASCII characters are percent-encoded.
    return quote(query, safe=_QUERY_SAFE)


def header_pairs(headers: Headers) -> list[tuple[str, str]]:
    """Validated (name, value) pairs from a mapping or a list of raw header pairs."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    pairs: list[tuple[str, str]] = []
    for name, value in items:
        n = name.decode("latin-1") if isinstance(name, bytes) else name
        v = value.decode("latin-1") if isinstance(value, bytes) else value
        if not _TOKEN.match(n) or any(ch in v for ch in "\r\n\0"):
            raise InvalidInput("a request header has an invalid name or value")
        pairs.append((n, v.strip()))
    return pairs


def _connection_listed(pairs: list[tuple[str, str]]) -> set[str]:
    return {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
        if token.strip()
    }


def _stripped(name: str, listed: set[str]) -> bool:
    lower = name.lower()
    return (
        lower in HOP_BY_HOP_HEADERS
        or lower in listed
        or lower.startswith("proxy-")
        or lower.startswith("x-forwarded-")
    )


def strip_caller_headers(caller: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The caller's headers without credentials, hop-by-hop and proxy-controlled headers."""
    listed = _connection_listed(caller)
    return [
        (name, value)
        for name, value in caller
        if not _stripped(name, listed)
        and name.lower() not in CREDENTIAL_HEADERS
        and name.lower() not in CONTROLLED_REQUEST_HEADERS
    ]


def _request_headers(
    caller: list[tuple[str, str]], extra: Mapping[str, str], target: ssrf.Endpoint
) -> list[tuple[str, str]]:
    extra_pairs = header_pairs(extra)
    overridden = {name.lower() for name, _ in extra_pairs}
    kept = [(name, value) for name, value in strip_caller_headers(caller) if name.lower() not in overridden]
    names = {name.lower() for name, _ in kept} | overridden
    out = [("Host", target.host_header), *kept, *extra_pairs]
    if "accept-encoding" not in names:
        # the raw body is passed through, so ask only for what the caller can read
        out.append(("Accept-Encoding", "identity"))
    if target.scheme == "https":
        out.append(("Connection", "close"))
    return out


def _refuse_declared_oversize(caller: list[tuple[str, str]], max_body_bytes: int) -> None:
    for name, value in caller:
        if name.lower() == "content-length" and value.isdigit() and int(value) > max_body_bytes:
            raise PayloadTooLarge(
                f"request body of {int(value)} bytes exceeds the proxy limit of {max_body_bytes} bytes",
                limit=max_body_bytes,
            )


async def read_body(body: AsyncIterable[bytes] | bytes, max_body_bytes: int) -> bytes:
    """The whole request body, refusing (413) as soon as it exceeds ``max_body_bytes``."""
    too_large = PayloadTooLarge(
        f"request body exceeds the proxy limit of {max_body_bytes} bytes", limit=max_body_bytes
    )
    if isinstance(body, bytes | bytearray | memoryview):
        if len(body) > max_body_bytes:
            raise too_large
        return bytes(body)
    chunks: list[bytes] = []
    size = 0
    async for chunk in body:
        size += len(chunk)
        if size > max_body_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _exchange(
    *,
    client: httpx.AsyncClient,
    method: str,
    target: ssrf.Endpoint,
    addresses: list[ssrf.IPAddress],
    raw_target: str,
    headers: list[tuple[str, str]],
    content: bytes,
    timeout_s: float,
    max_body_bytes: int,
) -> ProxiedResponse:
    extensions: dict[str, object] = {"timeout": httpx.Timeout(timeout_s).as_dict()}
    if target.scheme == "https" and target.ip_literal is None:
        extensions["sni_hostname"] = target.host
    last_error: FHSError = UpstreamError("the upstream service could not be reached")
    for address in addresses:
        url = httpx.URL(
            scheme=target.scheme, host=str(address), port=target.port, raw_path=raw_target.encode()
        )
        # Built directly, not with client.build_request: no client default headers, cookies or auth.
        request = httpx.Request(
            method,
            url,
            headers=headers,
            content=content
            if content or method.upper() not in ("GET", "HEAD", "OPTIONS", "DELETE")
            else None,
            extensions=extensions,
        )
        try:
            response = await client.send(request, stream=True, follow_redirects=False, auth=None)
        except httpx.ConnectError as exc:
            last_error = _connect_error(exc)
            continue  # nothing was sent yet: the next checked address is safe to try
        except httpx.TimeoutException:
            raise UpstreamTimeout(f"the upstream service did not answer within {timeout_s:g} s") from None
        except httpx.TransportError:
            raise UpstreamError(
                "the upstream service closed the connection or answered malformed HTTP"
            ) from None
        try:
            return await _read_response(response, method=method, max_body_bytes=max_body_bytes)
        except httpx.TimeoutException:
            raise UpstreamTimeout(f"the upstream service did not answer within {timeout_s:g} s") from None
        except httpx.TransportError:
            raise UpstreamError(
                "the upstream service closed the connection or answered malformed HTTP"
            ) from None
        finally:
            await response.aclose()
    raise last_error


def _connect_error(exc: httpx.ConnectError) -> UpstreamError:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate" in text.lower():
        return UpstreamError("the upstream service's TLS certificate could not be verified")
    if "SSL" in text or "TLS" in text:
        return UpstreamError("the TLS handshake with the upstream service failed")
    return UpstreamError("the upstream service could not be reached (connection refused or failed)")


async def _read_response(response: httpx.Response, *, method: str, max_body_bytes: int) -> ProxiedResponse:
    too_large = UpstreamError(
        f"upstream response exceeds the proxy limit of {max_body_bytes} bytes", limit=max_body_bytes
    )
    declared = response.headers.get("content-length", "")
    if method.upper() != "HEAD" and declared.isdigit() and int(declared) > max_body_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > max_body_bytes:
            raise too_large
        chunks.append(chunk)
    raw_headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in response.headers.raw]
    listed = _connection_listed(raw_headers)
    kept = [
        (name, value)
        for name, value in raw_headers
        if not _stripped(name, listed) and name.lower() not in STRIPPED_RESPONSE_HEADERS
    ]
    return ProxiedResponse(status_code=response.status_code, headers=kept, body=b"".join(chunks))
