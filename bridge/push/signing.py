"""The webhook secret and the ``X-Bridge-Signature`` header (HMAC-SHA256 of the body).

A receiver checks ``hmac.compare_digest(header, "sha256=" + hex HMAC(secret, raw body))``
on the raw bytes it got, before parsing them. Secrets are shown once (the ``POST
/api/push`` answer) and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

HEADER = "X-Bridge-Signature"


def new_secret() -> str:
    """A fresh webhook secret: 32 random bytes, URL-safe base64."""
    return secrets.token_urlsafe(32)


def signature(body: bytes, secret: str) -> str:
    """The header value for ``body``: ``sha256=<hex HMAC-SHA256 with secret>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str) -> bool:
    """What a receiver does (and the tests' receiver): compare in constant time."""
    return hmac.compare_digest(signature(body, secret), header)
