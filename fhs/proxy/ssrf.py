"""SSRF guard for the proxy (DESIGN §4): endpoint URL checks at registration, address checks at call time.

Registration (:func:`validate_endpoint_url`) checks the URL's shape and refuses IP literals in denied ranges.
Every call (:func:`resolve_allowed`) resolves the host and refuses it if *any* resolved address is private,
loopback, link-local, multicast, reserved, unspecified, shared (CGNAT), an IPv6 form embedding such an IPv4
address, or a cloud metadata address — unless the operator's allow-list covers it. The caller then connects
to a checked address, never to a fresh resolution (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import SplitResult, urlsplit

from fhs.errors import Forbidden, InvalidInput, UpstreamError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}

# Metadata services answer credentials to whoever asks; a host-name allow-list entry never unlocks them,
# only a CIDR entry that contains them. 168.63.129.16 (Azure) is a public address, so list it explicitly.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16", "192.0.0.192")
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_PATH_CHARS = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class Allowlist:
    """The operator's proxy allow-list, parsed: CIDR networks and exact host names."""

    networks: tuple[IPNetwork, ...] = ()
    hostnames: frozenset[str] = frozenset()

    def covers(self, host: str, address: IPAddress, *, metadata: bool) -> bool:
        """Whether the allow-list permits connecting to ``address`` (resolved from ``host``)."""
        if not metadata and normalize_hostname_or_none(host) in self.hostnames:
            # a host-name entry trusts that name's addresses, but never a metadata address
            return True
        candidates = [address, *_embedded_ipv4(address)]
        return any(c in net for c in candidates for net in self.networks if c.version == net.version)


@dataclass(frozen=True)
class Endpoint:
    """A parsed, structurally valid service endpoint URL."""

    scheme: str
    host: str
    """Lower-case ASCII (IDNA) host name, or an IP address without brackets."""
    port: int
    explicit_port: bool
    path: str

    @property
    def ip_literal(self) -> IPAddress | None:
        """The host as an IP address when the URL names one."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def host_header(self) -> str:
        """The ``Host`` header value (and URL authority) for this endpoint."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.explicit_port else host

    @property
    def url(self) -> str:
        """The normalized URL."""
        return f"{self.scheme}://{self.host_header}{self.path}"


def parse_allowlist(entries: Iterable[str] | Allowlist) -> Allowlist:
    """Parse allow-list entries (``10.0.0.0/8``, ``::1``, ``resource.internal``); InvalidInput if bad."""
    if isinstance(entries, Allowlist):
        return entries
    return _parse_allowlist_cached(tuple(entries))


@lru_cache(maxsize=32)
def _parse_allowlist_cached(entries: tuple[str, ...]) -> Allowlist:
    networks: list[IPNetwork] = []
    hostnames: set[str] = set()
    for raw in entries:
        entry = raw.strip()
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        name = normalize_hostname_or_none(entry)
        if name is None or "/" in entry:
            raise InvalidInput(
                f"proxy allow-list entry {raw!r} is neither a CIDR (e.g. 127.0.0.0/8) nor a host name; "
                "fix FHS_PROXY_ALLOWLIST",
                entry=raw,
            )
        hostnames.add(name)
    return Allowlist(networks=tuple(networks), hostnames=frozenset(hostnames))


def normalize_hostname_or_none(host: str) -> str | None:
    """The lower-case ASCII form of a DNS host name, or None if ``host`` is not a valid one."""
    name = host.strip()
    name = name[:-1] if name.endswith(".") else name
    if not name or len(name) > 253:
        return None
    try:
        ascii_name = name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    labels = ascii_name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return None
    if _NUMERIC_LABEL.match(labels[-1]):
        return None  # "127.1", "0x7f.1", "2130706433": numeric IPv4 forms, not names
    return ascii_name


def parse_endpoint(url: str) -> Endpoint:
    """Check an endpoint URL's shape (scheme, host, port, path); InvalidInput naming what is wrong."""
    if not isinstance(url, str) or not url:
        raise InvalidInput("endpoint URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"endpoint URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        raise InvalidInput("endpoint URL must not contain spaces or control characters")
    if "\\" in url:
        raise InvalidInput("endpoint URL must not contain backslashes")
    try:
        parts: SplitResult = urlsplit(url)
    except ValueError as exc:
        raise InvalidInput(f"endpoint URL cannot be parsed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidInput(f"endpoint URL scheme must be http or https, not {parts.scheme or 'missing'!r}")
    if "@" in parts.netloc:
        raise InvalidInput("endpoint URL must not contain credentials (user:password@)")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise InvalidInput("endpoint URL must not contain a query string or fragment")
    host = _parse_host(parts.netloc)
    try:
        port = parts.port
    except ValueError:
        raise InvalidInput("endpoint URL port must be a number from 1 to 65535") from None
    if port == 0:
        raise InvalidInput("endpoint URL port must be a number from 1 to 65535")
    path = parts.path or "/"
    if not _PATH_CHARS.match(path) or _BAD_PERCENT.search(path):
        raise InvalidInput("endpoint URL path contains characters that must be percent-encoded")
    segments = path.split("/")
    if any(s.lower() in (".", "..", "%2e", "%2e%2e", ".%2e", "%2e.") for s in segments):
        raise InvalidInput("endpoint URL path must not contain '.' or '..' segments")
    if re.search(r"%(2f|5c|00)", path, re.IGNORECASE):
        raise InvalidInput("endpoint URL path must not contain encoded slashes, backslashes or NUL")
    explicit = port is not None and port != DEFAULT_PORTS[scheme]
    return Endpoint(
        scheme=scheme,
        host=host,
        port=port if port is not None else DEFAULT_PORTS[scheme],
        explicit_port=explicit,
        path=path,
    )


def _parse_host(netloc: str) -> str:
    if netloc.startswith("["):
        literal, sep, _rest = netloc[1:].partition("]")
        try:
            if not sep or "%" in literal:
                raise ValueError
            return str(ipaddress.IPv6Address(literal))
        except ValueError:
            raise InvalidInput("endpoint URL host is not a valid IPv6 address in brackets") from None
    host = netloc.rpartition(":")[0] if ":" in netloc else netloc
    if not host:
        raise InvalidInput("endpoint URL has no host")
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    name = normalize_hostname_or_none(host)
    if name is None:
        raise InvalidInput(f"endpoint URL host {host[:80]!r} is not a valid DNS name or IP address")
    return name


def validate_endpoint_url(url: str, *, allowlist: Iterable[str] | Allowlist) -> str:
    """Check a service endpoint URL at registration and return its normalized form (InvalidInput if bad)."""
    endpoint = parse_endpoint(url)
    address = endpoint.ip_literal
    if address is not None:
        reason = blocked_reason(address)
        allowed = parse_allowlist(allowlist)
        if reason and not allowed.covers(endpoint.host, address, metadata=is_metadata(address)):
            raise InvalidInput(
                f"endpoint address {address} is not allowed ({reason}); an operator can allow-list it",
                reason=reason,
            )
    return endpoint.url


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address routes to (mapped, 6to4, NAT64)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address in NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def is_metadata(address: IPAddress) -> bool:
    """Whether ``address`` is (or embeds) a cloud metadata service address."""
    return any(a in METADATA_ADDRESSES for a in (address, *_embedded_ipv4(address)))


def blocked_reason(address: IPAddress) -> str | None:
    """Why the proxy refuses ``address`` by default (e.g. ``"private range"``), or None if it is public."""
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    embedded = _embedded_ipv4(address)
    if embedded:
        for v4 in embedded:
            reason = blocked_reason(v4)
            if reason:
                return f"{reason}, embedded in IPv6"
        return None
    if isinstance(address, ipaddress.IPv6Address) and address in IPV4_COMPATIBLE:
        return (
            "unspecified"
            if address.is_unspecified
            else ("loopback" if address.is_loopback else "reserved range (IPv4-compatible IPv6)")
        )
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in CGNAT:
        return "shared address space 100.64.0.0/10"
    if address.is_reserved:
        return "reserved range"
    if address.is_private:
        return "private range"
    if not address.is_global:
        return "non-global range"
    return None


def check_address(host: str, address: IPAddress, *, allowlist: Allowlist) -> None:
    """Raise Forbidden unless the proxy may connect to ``address`` (resolved from ``host``)."""
    reason = blocked_reason(address)
    if reason and not allowlist.covers(host, address, metadata=is_metadata(address)):
        raise Forbidden(
            f"upstream address {address} is not allowed ({reason}); an operator can allow-list it",
            reason=reason,
        )


async def resolve_allowed(host: str, port: int, *, allowlist: Iterable[str] | Allowlist) -> list[IPAddress]:
    """Resolve ``host`` and return its addresses; Forbidden if any of them is refused by the SSRF guard."""
    allowed = parse_allowlist(allowlist)
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return [_check_literal(bare, allowed)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            bare, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError):
        raise UpstreamError("upstream host name could not be resolved") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UpstreamError("upstream host name could not be resolved")
    for address in addresses:
        check_address(bare, address, allowlist=allowed)
    return addresses


def _check_literal(host: str, allowlist: Allowlist) -> IPAddress:
    address = ipaddress.ip_address(host)  # ValueError: not a literal
    check_address(host, address, allowlist=allowlist)
    return address
