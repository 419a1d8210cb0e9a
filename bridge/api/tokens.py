"""Stream tokens: how a browser's ``EventSource``, which cannot send ``Authorization``,
opens ``GET /api/sse``.

A client with the user's Basic credentials asks ``POST /api/sse/token`` for a token and
passes it as ``?token=``. A token is ``<user>.<secret>``: the URL-safe base64 (no padding)
of the user's bare JID, so that a load balancer can route it like that user's Basic
requests (DESIGN.md, Live events), then 32 random bytes (``secrets.token_urlsafe``). It
opens event streams only, belongs to one user and lives ``sse.token_lifetime`` seconds. It carries no password,
so it is bound to the live XMPP session it was issued from: that session is held open for
the token's lifetime, and once it ends the token is worthless.

Only a SHA-256 digest of each token is kept. Lookups go by digest, so the time a lookup
takes says nothing about the secret itself, and the match is confirmed with
``hmac.compare_digest``. Tokens never appear in a log line; the access log names the path
without its query.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from bridge.xmpp.errors import ServerUnavailable
from bridge.xmpp.pool import SessionPool
from bridge.xmpp.session import Session

# Live tokens per user; issuing more retires the oldest, so tokens cannot pile up.
MAX_TOKENS_PER_USER = 16
# No token we issue is longer (the base64 of a 2,047-byte bare JID, a dot, 43 characters);
# longer input is not worth hashing.
MAX_TOKEN_LENGTH = 2800


def user_part(jid: str) -> str:
    """The token's first part: ``jid`` (a bare JID) as URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(jid.encode("utf-8")).rstrip(b"=").decode("ascii")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(eq=False)
class _Grant:
    digest: bytes
    user: str
    session: Session
    expires: float
    release: Callable[[], None]
    timer: IDelayedCall | None = field(default=None)


class StreamTokens(Service):
    """Issues, checks and retires stream tokens."""

    def __init__(self, clock: IReactorTime, pool: SessionPool, lifetime: int) -> None:
        self._clock = clock
        self._pool = pool
        self.lifetime = lifetime
        self._grants: dict[bytes, _Grant] = {}
        self._by_user: dict[str, list[_Grant]] = {}  # oldest first
        self._watched: set[Session] = set()

    def __len__(self) -> int:
        return len(self._grants)

    def issue(self, session: Session) -> str:
        """A new token for ``session``'s user, holding the session for its lifetime."""
        if not self.running:
            raise ServerUnavailable("the bridge is shutting down")
        token = f"{user_part(session.jid.userhost())}.{secrets.token_urlsafe(32)}"
        grant = _Grant(
            _digest(token),
            session.jid.userhost(),
            session,
            self._clock.seconds() + self.lifetime,
            self._pool.hold(session),
        )
        grant.timer = self._clock.callLater(self.lifetime, self._retire, grant)
        self._grants[grant.digest] = grant
        user_grants = self._by_user.setdefault(grant.user, [])
        user_grants.append(grant)
        for old in user_grants[:-MAX_TOKENS_PER_USER]:
            self._retire(old)
        if session not in self._watched:
            self._watched.add(session)
            session.ended.addCallback(lambda _: self._session_ended(session))
        return token

    def session_for(self, token: str) -> Session | None:
        """The live session ``token`` was issued from, or None (unknown, expired, ended)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        digest = _digest(token)
        grant = self._grants.get(digest)
        if grant is None or not hmac.compare_digest(grant.digest, digest):
            return None
        if self._clock.seconds() >= grant.expires or not grant.session.alive:
            return None
        return grant.session

    def _retire(self, grant: _Grant) -> None:
        if self._grants.pop(grant.digest, None) is None:
            return
        if grant.timer is not None and grant.timer.active():
            grant.timer.cancel()
        user_grants = self._by_user[grant.user]
        user_grants.remove(grant)
        if not user_grants:
            del self._by_user[grant.user]
        grant.release()

    def _session_ended(self, session: Session) -> None:
        self._watched.discard(session)
        for grant in list(self._by_user.get(session.jid.userhost(), [])):
            if grant.session is session:
                self._retire(grant)

    def stopService(self) -> None:
        super().stopService()
        for grant in list(self._grants.values()):
            self._retire(grant)
