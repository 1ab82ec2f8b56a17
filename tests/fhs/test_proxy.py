"""The invoke proxy against real upstreams on loopback (DESIGN §4): credentials, SSRF, limits, redirects."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fhs.errors import Forbidden, InvalidInput, PayloadTooLarge, UpstreamError, UpstreamTimeout
from fhs.proxy import ssrf
from fhs.proxy.service import ProxiedResponse, forward, new_proxy_client
from fhs.proxy.ssrf import Allowlist, parse_allowlist, resolve_allowed, validate_endpoint_url

LOOPBACK = ["127.0.0.1/32"]


@dataclass
class Upstream:
    """A real HTTP server on loopback that records every request it receives."""

    server: ThreadingHTTPServer
    hits: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    redirect_to: str = ""

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"


def _handler(upstream_ref: list[Upstream]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            up = upstream_ref[0]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            up.hits.append(
                {
                    "method": self.command,
                    "target": self.path,
                    "headers": list(self.headers.items()),
                    "body": body,
                }
            )
            path = urlsplit(self.path).path
            if path.endswith("/redirect"):
                self._send(302, b"moved", [("Location", up.redirect_to)])
            elif path.endswith("/big"):
                size = int(parse_qs(urlsplit(self.path).query)["n"][0])
                self._send(200, b"x" * size, [])
            elif path.endswith("/slow"):
                up.release.wait(10)
                self._send(200, b"late", [])
            elif path.endswith("/gzip"):
                self._send(200, gzip.compress(b"z" * 10_000), [("Content-Encoding", "gzip")])
            else:
                echo = json.dumps({"method": self.command, "target": self.path}).encode()
                self._send(
                    200,
                    echo,
                    [
                        ("Content-Type", "application/json"),
                        ("Set-Cookie", "upstream-session=secret"),
                        ("Connection", "X-Upstream-Hop"),
                        ("X-Upstream-Hop", "internal"),
                        ("X-Upstream-Kept", "yes"),
                    ],
                )

        def _send(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    return Handler


@pytest.fixture
def make_upstream() -> Iterator[Any]:
    started: list[Upstream] = []

    def start(tls: ssl.SSLContext | None = None) -> Upstream:
        ref: list[Upstream] = []
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ref))
        server.daemon_threads = True
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        up = Upstream(server=server)
        ref.append(up)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        started.append(up)
        return up

    yield start
    for up in started:
        up.release.set()
        up.server.shutdown()
        up.server.server_close()


@pytest.fixture
def upstream(make_upstream: Any) -> Upstream:
    return make_upstream()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with new_proxy_client() as c:
        yield c


async def call(client: httpx.AsyncClient, endpoint: str, **overrides: Any) -> ProxiedResponse:
    args: dict[str, Any] = {
        "client": client,
        "method": "GET",
        "endpoint": endpoint,
        "sub_path": "",
        "query": "",
        "headers": [],
        "body": b"",
        "extra_headers": {"Authorization": "Bearer fhs-invocation-token", "X-Request-Id": "req-1"},
        "allowlist": LOOPBACK,
        "timeout_s": 5.0,
        "max_body_bytes": 1024,
    }
    args.update(overrides)
    return await forward(**args)


def seen(hit: dict[str, Any], name: str) -> list[str]:
    return [v for n, v in hit["headers"] if n.lower() == name.lower()]


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


# --- forwarding -------------------------------------------------------------------------------------------


async def test_forwards_request_with_invocation_token_and_without_caller_credentials(
    client: httpx.AsyncClient, upstream: Upstream
) -> None:
    response = await call(
        client,
        upstream.base,
        method="POST",
        sub_path="v1/items/a b",
        query="x=1&y=two",
        headers=[
            (b"authorization", b"Bearer member-token"),
            (b"cookie", b"fhs-session=member"),
            (b"x-api-key", b"member-key"),
            (b"proxy-authorization", b"Basic bWU6cHc="),
            (b"x-forwarded-access-token", b"member-access"),
            (b"connection", b"keep-alive, X-Caller-Hop"),
            (b"x-caller-hop", b"hop"),
            (b"x-forwarded-for", b"6.6.6.6"),
            (b"host", b"fhs.example"),
            (b"content-type", b"application/octet-stream"),
            (b"x-custom", b"kept"),
        ],
        body=chunks(b"hello ", b"upstream"),
    )
    assert response.status_code == 200
    [hit] = upstream.hits
    assert hit["method"] == "POST"
    assert hit["target"] == "/api/v1/items/a%20b?x=1&y=two"
    assert hit["body"] == b"hello upstream"
    assert seen(hit, "Authorization") == ["Bearer fhs-invocation-token"]
    assert seen(hit, "X-Request-Id") == ["req-1"]
    for gone in (
        "Cookie",
        "X-Api-Key",
        "Proxy-Authorization",
        "X-Forwarded-Access-Token",
        "X-Caller-Hop",
        "X-Forwarded-For",
    ):
        assert seen(hit, gone) == [], gone
    assert seen(hit, "Host") == [f"127.0.0.1:{upstream.port}"]
    assert seen(hit, "X-Custom") == ["kept"]
    assert seen(hit, "Accept-Encoding") == ["identity"]
    assert json.loads(response.body) == {"method": "POST", "target": "/api/v1/items/a%20b?x=1&y=two"}
    names = {name.lower() for name, _ in response.headers}
    assert "set-cookie" not in names and "x-upstream-hop" not in names and "connection" not in names
    assert ("X-Upstream-Kept", "yes") in response.headers


async def test_compressed_response_is_passed_through_raw(
    client: httpx.AsyncClient, upstream: Upstream
) -> None:
    response = await call(client, upstream.base, sub_path="gzip", headers={"Accept-Encoding": "gzip"})
    assert ("Content-Encoding", "gzip") in response.headers
    assert gzip.decompress(response.body) == b"z" * 10_000
    assert seen(upstream.hits[0], "Accept-Encoding") == ["gzip"]


async def test_connects_to_the_checked_address_not_a_second_resolution(
    client: httpx.AsyncClient, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the first answer is checked; a later answer (10.0.0.5) must never be used."""
    answers = iter(["127.0.0.1", "10.0.0.5", "10.0.0.5"])
    calls: list[str] = []

    async def rebinding_getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", rebinding_getaddrinfo)
    response = await call(client, f"http://rebind.example:{upstream.port}/api", sub_path="x")
    assert response.status_code == 200
    assert calls == ["rebind.example"]
    assert seen(upstream.hits[0], "Host") == [f"rebind.example:{upstream.port}"]


async def test_allow_listed_host_name_is_reached(client: httpx.AsyncClient, upstream: Upstream) -> None:
    response = await call(client, f"http://localhost:{upstream.port}/api", allowlist=["localhost"])
    assert response.status_code == 200
    assert seen(upstream.hits[0], "Host") == [f"localhost:{upstream.port}"]


async def test_empty_sub_path_is_the_endpoint_path_and_query_is_encoded(
    client: httpx.AsyncClient, upstream: Upstream
) -> None:
    await call(client, upstream.base, query="name=café&q=a b")
    assert upstream.hits[0]["target"] == "/api?name=caf%C3%A9&q=a%20b"


def _self_signed(tmp_path: Any, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for ``name`` only, and a client context trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return server, ssl.create_default_context(cadata=cert_pem.decode())


async def test_https_connects_to_the_address_but_verifies_the_name(tmp_path: Any, make_upstream: Any) -> None:
    """The URL is rewritten to the checked IP; SNI and the certificate check still use the host name."""
    server_tls, trust = _self_signed(tmp_path, "localhost")
    upstream = make_upstream(server_tls)
    async with new_proxy_client(verify=trust) as tls_client:
        response = await call(
            tls_client, f"https://localhost:{upstream.port}/api", sub_path="x", allowlist=["localhost"]
        )
        assert response.status_code == 200
        assert seen(upstream.hits[0], "Host") == [f"localhost:{upstream.port}"]
        assert seen(upstream.hits[0], "Connection") == ["close"]


async def test_https_certificate_for_another_name_is_refused(tmp_path: Any, make_upstream: Any) -> None:
    server_tls, trust = _self_signed(tmp_path, "other.example")
    upstream = make_upstream(server_tls)
    async with new_proxy_client(verify=trust) as tls_client:
        with pytest.raises(UpstreamError, match="certificate could not be verified"):
            await call(tls_client, f"https://localhost:{upstream.port}/api", allowlist=["localhost"])
    assert upstream.hits == []


# --- traversal and bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sub_path",
    [
        "../admin",
        "a/../../etc/passwd",
        "%2e%2e/admin",
        "%2E%2e/admin",
        ".%2e/admin",
        "..%2fadmin",
        "a/%2F/b",
        "%252e%252e/admin",
        "a\\..\\b",
        "http://evil.example/x",
        "//evil.example/x",
        "a/%00/b",
    ],
)
async def test_traversal_and_absolute_sub_paths_are_refused(
    client: httpx.AsyncClient, upstream: Upstream, sub_path: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await call(client, upstream.base, sub_path=sub_path)
    assert caught.value.status_code == 422
    assert upstream.hits == []


async def test_trace_is_not_forwarded(client: httpx.AsyncClient, upstream: Upstream) -> None:
    with pytest.raises(InvalidInput, match="TRACE"):
        await call(client, upstream.base, method="TRACE")
    assert upstream.hits == []


# --- SSRF -------------------------------------------------------------------------------------------------


async def test_ssrf_targets_refused_without_allow_list(client: httpx.AsyncClient, upstream: Upstream) -> None:
    port = upstream.port
    for endpoint in (
        f"http://127.0.0.1:{port}/api",
        f"http://localhost:{port}/api",
        f"http://[::1]:{port}/api",
        f"http://[::ffff:127.0.0.1]:{port}/api",
        "http://10.0.0.5/api",
        "http://169.254.169.254/latest/meta-data/",
    ):
        with pytest.raises(Forbidden, match="is not allowed .*an operator can allow-list it") as caught:
            await call(client, endpoint, allowlist=[])
        assert caught.value.status_code == 403
    assert upstream.hits == []


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.5", "private range"),
        ("192.168.1.10", "private range"),
        ("172.16.0.1", "private range"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.10.10", "link-local"),
        ("100.64.0.1", "shared address space"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private range"),
        ("fd00:ec2::254", "cloud metadata"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("2002:a00:5::", "private range"),  # 6to4 of 10.0.0.5
        ("64:ff9b::a00:5", "private range"),  # NAT64 of 10.0.0.5
        ("168.63.129.16", "cloud metadata"),
    ],
)
async def test_refused_addresses(address: str, reason: str) -> None:
    with pytest.raises(Forbidden) as caught:
        await resolve_allowed(address, 80, allowlist=[])
    assert caught.value.message.startswith(f"upstream address {ipaddress.ip_address(address)} is not allowed")
    assert reason in caught.value.message


async def test_public_address_is_allowed_and_allow_list_opens_private_ones() -> None:
    assert await resolve_allowed("8.8.8.8", 443, allowlist=[]) == [ipaddress.ip_address("8.8.8.8")]
    assert await resolve_allowed("[::ffff:127.0.0.1]", 80, allowlist=["127.0.0.0/8"]) == [
        ipaddress.ip_address("::ffff:127.0.0.1")
    ]
    assert await resolve_allowed("10.1.2.3", 80, allowlist=["10.0.0.0/8"]) == [
        ipaddress.ip_address("10.1.2.3")
    ]
    assert await resolve_allowed("localhost", 80, allowlist=["LOCALHOST."]) == [
        ipaddress.ip_address("127.0.0.1")
    ]
    with pytest.raises(Forbidden):
        await resolve_allowed("10.1.2.3", 80, allowlist=["10.0.0.0/24"])


def test_host_name_entry_never_unlocks_metadata_but_a_cidr_does() -> None:
    metadata = ipaddress.ip_address("169.254.169.254")
    by_name = parse_allowlist(["metadata.internal"])
    assert not by_name.covers("metadata.internal", metadata, metadata=True)
    assert parse_allowlist(["169.254.169.254/32"]).covers("x", metadata, metadata=True)


async def test_unresolvable_host_is_an_upstream_error_without_the_name(client: httpx.AsyncClient) -> None:
    with pytest.raises(UpstreamError) as caught:
        await call(client, "http://no-such-host.invalid/api")
    assert "no-such-host" not in caught.value.message


def test_bad_allow_list_entry_is_reported() -> None:
    with pytest.raises(InvalidInput, match="FHS_PROXY_ALLOWLIST"):
        parse_allowlist(["10.0.0.0/33"])
    assert parse_allowlist(["::1", "Resource.Internal"]) == Allowlist(
        networks=(ipaddress.ip_network("::1/128"),), hostnames=frozenset({"resource.internal"})
    )


# --- redirects, limits, timeouts, failures ------------------------------------------------------------------


async def test_redirect_is_returned_not_followed(client: httpx.AsyncClient, make_upstream: Any) -> None:
    first, target = make_upstream(), make_upstream()
    first.redirect_to = f"http://127.0.0.1:{target.port}/api/secret"
    response = await call(client, first.base, sub_path="redirect")
    assert response.status_code == 302
    assert response.body == b"moved"
    assert "location" not in {name.lower() for name, _ in response.headers}
    assert len(first.hits) == 1
    assert target.hits == []


async def test_request_body_over_limit_is_413(client: httpx.AsyncClient, upstream: Upstream) -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        await call(client, upstream.base, method="POST", body=b"x" * 1025)
    assert caught.value.status_code == 413

    produced: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for i in range(1000):
            produced.append(i)
            yield b"y" * 100

    with pytest.raises(PayloadTooLarge):
        await call(client, upstream.base, method="POST", body=endless())
    assert len(produced) == 11  # stopped at the first chunk past 1024 bytes, not read to the end

    with pytest.raises(PayloadTooLarge, match="1000000 bytes"):
        await call(
            client, upstream.base, method="POST", headers={"Content-Length": "1000000"}, body=endless()
        )
    assert upstream.hits == []

    ok = await call(client, upstream.base, method="POST", body=b"x" * 1024)
    assert ok.status_code == 200


async def test_response_over_limit_is_502(client: httpx.AsyncClient, upstream: Upstream) -> None:
    with pytest.raises(UpstreamError, match="upstream response exceeds") as caught:
        await call(client, upstream.base, sub_path="big", query="n=5000")
    assert caught.value.status_code == 502
    assert (await call(client, upstream.base, sub_path="big", query="n=1024")).body == b"x" * 1024


async def test_slow_upstream_is_504(client: httpx.AsyncClient, upstream: Upstream) -> None:
    with pytest.raises(UpstreamTimeout, match="did not answer within 0.3 s") as caught:
        await call(client, upstream.base, sub_path="slow", timeout_s=0.3)
    assert caught.value.status_code == 504


async def test_connection_refused_is_502_without_the_endpoint(client: httpx.AsyncClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(UpstreamError) as caught:
        await call(client, f"http://127.0.0.1:{closed_port}/internal-path")
    assert caught.value.status_code == 502
    text = json.dumps(caught.value.to_body())
    assert "127.0.0.1" not in text and str(closed_port) not in text and "internal-path" not in text


# --- endpoint URL validation at registration ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("HTTP://Example.COM:80/api", "http://example.com/api"),
        ("https://example.com:8443", "https://example.com:8443/"),
        ("https://resource.example./v1/", "https://resource.example/v1/"),
        ("http://[2001:4860:4860::8888]:8080/x", "http://[2001:4860:4860::8888]:8080/x"),
        ("http://bücher.example/", "http://xn--bcher-kva.example/"),
    ],
)
def test_valid_endpoint_urls_are_normalized(url: str, normalized: str) -> None:
    assert validate_endpoint_url(url, allowlist=[]) == normalized


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/", "scheme must be http or https"),
        ("javascript:alert(1)", "scheme must be http or https"),
        ("http://user:pw@example.com/", "must not contain credentials"),
        ("http:///path", "no host"),
        ("http://example.com:99999/", "port must be a number"),
        ("http://example.com:0/", "port must be a number"),
        ("http://example.com:http/", "port must be a number"),
        ("http://exa mple.com/", "spaces or control characters"),
        ("http://example.com/\r\nX: y", "spaces or control characters"),
        ("http://example.com/?q=1", "query string or fragment"),
        ("http://example.com/#frag", "query string or fragment"),
        ("http://127.1/", "not a valid DNS name"),
        ("http://2130706433/", "not a valid DNS name"),
        ("http://ex_ample..com/", "not a valid DNS name"),
        ("http://[fe80::1%25eth0]/", "IPv6"),
        ("http://example.com/a/../b", "'..' segments"),
        ("http://example.com/%2e%2e/b", "'..' segments"),
        ("http://example.com\\@evil/", "backslashes"),
        ("http://" + "a" * 3000 + ".com/", "longer than"),
        ("http://127.0.0.1/", "endpoint address 127.0.0.1 is not allowed (loopback)"),
        ("http://10.0.0.5:8080/", "private range"),
        ("http://169.254.169.254/latest", "cloud metadata"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:10.0.0.5]/", "private range"),
    ],
)
def test_invalid_endpoint_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_endpoint_url(url, allowlist=[])
    assert message in caught.value.message
    assert caught.value.status_code == 422


def test_allow_listed_literal_endpoint_is_accepted() -> None:
    assert (
        validate_endpoint_url("http://127.0.0.1:9000/api", allowlist=LOOPBACK) == "http://127.0.0.1:9000/api"
    )
    assert ssrf.parse_endpoint("http://127.0.0.1:9000/api").host_header == "127.0.0.1:9000"
