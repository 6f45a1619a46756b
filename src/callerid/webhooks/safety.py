"""Outbound safety for webhook URLs: syntax rules and the address check against SSRF.

A webhook URL must not lead the server to loopback, private, link-local, multicast, reserved or cloud
metadata addresses unless the operator allows it (``webhook_allow_private``). The check runs when a
config is saved, and inside the HTTP client (aiohttp) for every connection it opens: host names are resolved
and checked by :class:`GuardedResolver`, whose checked answers are the only addresses the connector
connects to, so that a DNS answer that changes between check and connect (DNS rebinding) cannot slip
through; and :func:`guarded_socket` checks the very address of each connection attempt (IP literals too).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# What aiohttp's socket_factory receives: one getaddrinfo() answer (family, type, proto, canonname, sockaddr).
AddrInfo = tuple[int, int, int, str, tuple[str, int] | tuple[str, int, int, int]]

MAX_URL_LENGTH = 2048
# Cloud instance metadata endpoints (AWS/GCP/Azure/OpenStack, AWS IPv6, Alibaba).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))


# Prefix of the connection error raised when the guard refuses a destination.
REFUSED = "refused: "


class UnsafeUrl(Exception):
    """The URL is malformed or leads somewhere webhooks may not go; the message says why."""


def check_url_syntax(url: str, *, require_https: bool = False) -> str:
    """The URL, stripped, if it is an absolute http(s) URL with a host; raises UnsafeUrl otherwise."""
    url = url.strip()
    if url == "":
        raise UnsafeUrl("url is required")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"url must be at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() for c in url):
        raise UnsafeUrl("url must not contain spaces")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise UnsafeUrl(f"url is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not url.lower().startswith(("http://", "https://")):
        raise UnsafeUrl("url must be an absolute http or https URL")
    if require_https and parsed.scheme != "https":
        raise UnsafeUrl("url must use https")
    if not parsed.host:
        raise UnsafeUrl("url must name a host")
    return url


def forbidden_reason(address: IPAddress) -> str | None:
    """Why webhooks may not be sent to ``address``, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal IP resolves to itself)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"host {host} does not resolve: {exc}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def refuse_forbidden(host: str, addresses: Iterable[IPAddress]) -> None:
    for address in addresses:
        reason = forbidden_reason(address)
        if reason is not None:
            shown = host if host.strip("[]") == str(address) else f"{host} ({address})"
            raise UnsafeUrl(f"url host {shown} is {reason}; webhooks may only call public addresses")


async def check_destination(url: str, *, allow_private: bool) -> list[IPAddress]:
    """Resolve the URL's host and refuse it if any address is not public (unless allowed)."""
    if allow_private:
        return []
    parsed = httpx.URL(url)
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = await resolve(host, port)
    refuse_forbidden(host, addresses)
    return addresses


class RefusedDestination(OSError):
    """The guard refused to connect; ``str()`` is the reason, starting with :data:`REFUSED`."""


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver for webhooks: resolves a host name and refuses it when any answer is not public.

    The connector connects only to the addresses returned here, so the addresses connected to are the ones
    checked (no second lookup that a rebinding DNS server could answer differently). Host names only: aiohttp
    does not ask a resolver about IP literals, which :func:`guarded_socket` checks.
    """

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        try:
            addresses = await resolve(host, port)
            refuse_forbidden(host, addresses)
        except UnsafeUrl as exc:
            raise RefusedDestination(f"{REFUSED}{exc}") from None
        found: list[ResolveResult] = []
        for address in addresses:
            address_family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            if family in (socket.AF_UNSPEC, address_family):
                found.append(
                    {
                        "hostname": host,
                        "host": str(address),
                        "port": port,
                        "family": address_family,
                        "proto": 0,
                        "flags": socket.AI_NUMERICHOST,
                    }
                )
        if not found:
            raise RefusedDestination(f"{REFUSED}host {host} does not resolve")
        return found

    async def close(self) -> None:
        pass


def guarded_socket(addr_info: AddrInfo) -> socket.socket:
    """The socket for one connection attempt, made only when the address it will connect to is public.

    aiohttp calls this (``socket_factory``) with the exact address of every connection it opens, IP
    literals and resolved names alike: the last word before ``connect()``.
    """
    family, type_, proto, _, sockaddr = addr_info
    host = str(sockaddr[0])
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
        refuse_forbidden(host, [address])
    except ValueError:
        raise RefusedDestination(f"{REFUSED}{host} is not an IP address") from None
    except UnsafeUrl as exc:
        raise RefusedDestination(f"{REFUSED}{exc}") from None
    return socket.socket(family=family, type=type_, proto=proto)


def guarded_connector(*, allow_private: bool, limit: int = 200) -> aiohttp.TCPConnector:
    """An aiohttp connector whose connections go only to public addresses (unless ``allow_private``).

    Host names go through :class:`GuardedResolver` for every new connection (no DNS cache, as each
    connection is checked afresh), and every socket through :func:`guarded_socket`. Environment proxies are
    never used (the session is made with ``trust_env=False``): the guard must see the real destination.
    """
    # The CA bundle the httpx client used (certifi's), not the system's: the same receivers are trusted as before.
    tls = httpx.create_ssl_context(trust_env=False)
    if allow_private:
        return aiohttp.TCPConnector(limit=limit, limit_per_host=0, ssl=tls)
    return aiohttp.TCPConnector(
        limit=limit,
        limit_per_host=0,
        ssl=tls,
        resolver=GuardedResolver(),
        use_dns_cache=False,
        socket_factory=guarded_socket,
    )
