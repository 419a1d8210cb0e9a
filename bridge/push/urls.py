"""Webhook URLs a user may register, and addresses the bridge may deliver to (SSRF).

At registration (``check_url``): ``https://`` only, or ``http://`` to a loopback IP literal
(tests, a local relay); no user info or fragment; the host must be one of
``push.allowed_hosts``, compared exactly (after lower-casing, IDNA as given). At delivery
(``address_allowed``) the name is resolved again and every address it resolves to is checked:
an address outside the public ranges (private, loopback, link-local, unique-local, shared,
multicast, reserved) is refused unless the URL's host is that very IP literal, listed in
``allowed_hosts``: a listed *name* that resolves into a private network (DNS rebinding) is
never delivered to. Loopback is possible only that way, i.e. for http-to-loopback test hosts.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL = 2048


class InvalidUrl(ValueError):
    """Not a URL the bridge could deliver to (400 "Invalid webhook URL")."""


class HostNotAllowed(ValueError):
    """A well-formed URL whose host is not in ``push.allowed_hosts`` (403)."""


@dataclass(frozen=True)
class WebhookUrl:
    url: str
    scheme: str
    host: str  # lower-case; an IPv6 literal without brackets
    port: int


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def parse_url(url: object) -> WebhookUrl:
    """``url`` split and checked for form; ``InvalidUrl`` otherwise."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL or not url.isascii() or not url.isprintable():
        raise InvalidUrl(url)
    if any(c.isspace() for c in url):
        raise InvalidUrl(url)
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise InvalidUrl(url) from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not host or parts.username is not None or parts.password is not None:
        raise InvalidUrl(url)
    if parts.fragment or "#" in url:
        raise InvalidUrl(url)
    address = ip_literal(host)
    if scheme == "http" and (address is None or not address.is_loopback):
        raise InvalidUrl(url)
    if port == 0:
        raise InvalidUrl(url)
    return WebhookUrl(url, scheme, host.lower(), port or (443 if scheme == "https" else 80))


def check_url(url: object, allowed_hosts: list[str]) -> WebhookUrl:
    """The URL a user registers: ``InvalidUrl`` for its form, ``HostNotAllowed`` for its host."""
    parsed = parse_url(url)
    if parsed.host not in allowed_hosts:
        raise HostNotAllowed(parsed.host)
    return parsed


def address_allowed(host: str, address: str, allowed_hosts: list[str]) -> bool:
    """Whether a delivery to ``host`` may connect to ``address`` (one it resolved to)."""
    if host not in allowed_hosts:
        return False
    resolved = ip_literal(address)
    if resolved is None:
        return False
    if isinstance(resolved, ipaddress.IPv6Address) and resolved.ipv4_mapped is not None:
        resolved = resolved.ipv4_mapped
    if resolved.is_global and not resolved.is_multicast:
        return True
    # Outside the public ranges: only when the admin listed that very address.
    literal = ip_literal(host)
    return literal is not None and literal == resolved and not resolved.is_unspecified and not resolved.is_multicast
