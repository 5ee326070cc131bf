"""Where outbound events may go: http(s) URLs whose host resolves only to public addresses, unless private
targets are allowed (outside prod by default, or by events.allow_private_targets).

Checked when a subscription is made and again before every delivery (DNS may have changed). httpx does not
follow redirects here, so a subscriber cannot bounce a delivery to an internal address either.
"""

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


class TargetRefused(Exception):
    """The URL may not receive events; the message says why (safe to show the caller)."""


async def check_target(url: str, *, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise TargetRefused("must not carry credentials")
    if allow_private:
        return
    for address in await _resolve(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)):
        if not address.is_global or address.is_multicast:
            raise TargetRefused(f"resolves to {address}, a private, loopback or reserved address")


async def _resolve(host: str, port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetRefused(f"its host does not resolve ({exc.strerror})") from None
    addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
    # An IPv4 address written as IPv6 (::ffff:127.0.0.1) is judged as the IPv4 address it is.
    return {a.ipv4_mapped if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped else a for a in addresses}
