"""Where a webhook may be sent: public http(s) addresses only, unless a setting allows more.

A tenant chooses the URL and exportflow's servers call it, so an unchecked URL would let a
tenant reach the services next to exportflow (SSRF). Every address the host name resolves to
must be globally routable; the check runs when an endpoint is created and again before each
attempt (a name may resolve elsewhere later). Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from core.errors import InvalidRequest


def _refused(message: str, **details: object) -> InvalidRequest:
    return InvalidRequest(message, key="webhook_url_refused", details=details or None)


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _refused(f"webhook host {host!r} does not resolve: {exc}", host=host) from None
    found = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        found.append(address)
    return found


def check_url(url: str, *, allow_private: bool) -> None:
    """Raise ``InvalidRequest`` (key ``webhook_url_refused``) unless ``url`` may be called."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise _refused(f"webhook URL is not valid: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise _refused("webhook URL must be an absolute http:// or https:// URL", url=url)
    if parts.username or parts.password:
        raise _refused("webhook URL must not carry credentials; the signature authenticates")
    if allow_private:
        return
    for address in _addresses(parts.hostname, port):
        if not address.is_global or address.is_multicast:
            raise _refused(
                f"webhook host {parts.hostname!r} resolves to {address}, a loopback, link-local"
                " or private address; only public addresses are called"
                " (EXPORTFLOW_WEBHOOK_ALLOW_PRIVATE_URLS=true allows them)",
                host=parts.hostname,
                address=str(address),
            )
