"""HTTP Basic authentication (RFC 7617) against the user's own XMPP server.

The bridge has no user database: the credentials go to the server in SASL when a session
is opened, so the server alone decides. Failed attempts are throttled per (JID, address)
pair, per JID and per client address (``bridge.throttle``), and the throttle is asked
before anything looks at the password: a throttled JID gets the same 429 whether the
password is right or wrong and whether or not it has a live session, so the throttle is
never a password oracle and a live session never a way around it. Logins whose outcome
is up to the server run one at a time per JID, each after a fresh look at the throttle,
so guesses sent in parallel are counted as if sent one after another. The password is
never logged and never stored.
"""

from __future__ import annotations

import math

from twisted.internet import defer
from twisted.web.server import Request
from twisted.words.protocols.jabber.jid import JID

from bridge.api.errors import ApiError, Unauthorized
from bridge.http.request import Credentials, bridge_request, client_address
from bridge.throttle import LoginThrottle
from bridge.xmpp.errors import AuthenticationFailed
from bridge.xmpp.pool import SessionPool
from bridge.xmpp.session import Session


class Authenticator:
    """Turns a request's credentials into the user's live session, or an error."""

    def __init__(
        self,
        pool: SessionPool,
        domains: list[str],
        realm: str,
        throttle: LoginThrottle,
    ) -> None:
        self._pool = pool
        self._domains = {JID(domain).host for domain in domains}
        self._realm = realm
        self._throttle = throttle
        # Bare JID -> the lock its unverified logins take turns on (dropped when unused).
        self._logins: dict[str, defer.DeferredLock] = {}

    def credentials(self, request: Request) -> Credentials:
        """The request's Basic credentials for a served domain, or 401."""
        parsed = bridge_request(request).credentials
        if parsed is None or parsed[0].host not in self._domains:
            raise Unauthorized(self._realm)
        return parsed

    async def session(self, request: Request) -> Session:
        """The authenticated user's session; 401 on bad credentials, 429 when throttled.

        The throttle comes first: it depends on the JID and the address alone, so neither
        the password nor a live session changes whether an attempt gets 429. Failures are
        counted only when the server said no (a wrong password against a live session
        logs in again, and the server decides).
        """
        edge = bridge_request(request)
        jid, password = self.credentials(edge)
        bare, address = jid.userhost(), client_address(edge)
        edge.user_jid = bare
        self._check_throttle(bare, address)
        # The request limits matched these credentials to a live session already: the
        # password's keyed hash is computed once per request, not once per layer.
        session = edge.live_session
        if session is None or not session.alive:
            session = self._pool.existing(jid, password)
        if session is None:
            session = await self._log_in(jid, password, address)
        self._throttle.succeeded(bare, address)
        return session

    def _check_throttle(self, bare: str, address: str) -> None:
        wait = self._throttle.retry_after(bare, address)
        if wait > 0:
            raise ApiError(429, "Too many failed login attempts", {"Retry-After": str(math.ceil(wait))})

    async def _log_in(self, jid: JID, password: str, address: str) -> Session:
        """Ask the server, after the JID's other logins in flight have been answered and counted."""
        bare = jid.userhost()
        lock = self._logins.get(bare)
        if lock is None:
            lock = self._logins[bare] = defer.DeferredLock()
        await lock.acquire()
        try:
            self._check_throttle(bare, address)
            session = self._pool.existing(jid, password)
            if session is not None:
                return session
            try:
                return await self._pool.session(jid, password)
            except AuthenticationFailed:
                self._throttle.failed(bare, address)
                raise Unauthorized(self._realm) from None
        finally:
            lock.release()  # may run the next waiter (and its own clean-up) right here
            if not lock.locked and not lock.waiting and self._logins.get(bare) is lock:
                del self._logins[bare]
