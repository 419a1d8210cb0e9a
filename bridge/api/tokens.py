"""Stream tokens: how a browser's ``EventSource``, which cannot send ``Authorization``,
opens ``GET /api/sse``.

A client with the user's Basic credentials asks ``POST /api/sse/token`` for a token and
passes it as ``?token=``. It opens event streams only, belongs to one user and lives
``sse.token_lifetime`` seconds. A token is ``<user>.<expires>.<nonce>.<mac>``:

* ``user``: the URL-safe base64 (no padding) of the user's bare JID, so that a load
  balancer can route it like that user's Basic requests (DESIGN.md, Live events);
* ``expires``: Unix milliseconds, in decimal; ``nonce``: 16 random bytes;
* ``mac``: HMAC-SHA256, with a key every bridge process shares, over the three parts
  before it (URL-safe base64 without padding).

So any bridge process can validate any process's token (DESIGN.md, "Several processes"):
the key is created once in the store (``Store.stream_token_key``) and read at start.
Without a store (``muclight.component = false``) or while it cannot be read, the key is
random per process, and only the issuing process accepts its tokens. Checked: the length,
the shape of each part, the MAC (``hmac.compare_digest``), then the expiry; anything else
is refused the same way (401 "Invalid or expired token").

A token carries no password, so it can only be served by a process that holds a live XMPP
session of its user. The issuing process holds the session it was issued from for the
token's lifetime (up to ``MAX_TOKENS_PER_USER`` holds per user: issuing more releases the
oldest hold; the older tokens stay valid while the user has a live session). A valid token
that reaches a process without a session of its user (a load balancer without affinity)
is answered 421 "Stream token belongs to another bridge process": the client asks that
process for a new token with Basic credentials, or retries where the user's requests are
routed. Once the session a token was issued from ends, the issuing process refuses the
token (401, as when a single process served everything; it remembers that until the
token would have expired); other processes cannot know it and still serve it with their
own live session of the user until it expires. No other revocation.

Tokens never appear in a log line; the access log names the path without its query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from bridge.store import Store
from bridge.xmpp.errors import ServerUnavailable
from bridge.xmpp.pool import SessionPool
from bridge.xmpp.session import Session

log = Logger()

# Live holds per user; issuing more releases the oldest, so holds cannot pile up.
MAX_TOKENS_PER_USER = 16
# No token we issue is longer (the base64 of a 2,047-byte bare JID, then the expiry, the
# nonce and the MAC); longer input is not worth parsing.
MAX_TOKEN_LENGTH = 2900
KEY_BYTES = 32
NONCE_BYTES = 16
# Seconds the first token requests wait for the shared key before using this process's own.
KEY_WAIT = 5.0
# What the MAC covers is prefixed with this, so it can never be mistaken for another use of the key.
MAC_CONTEXT = b"bridge stream token v1\0"
_B64 = re.compile(r"[A-Za-z0-9_-]+")
_MAC_LENGTH = 43  # 32 bytes in base64 without padding


class InvalidToken(Exception):
    """Forged, expired, malformed or unknown: 401 "Invalid or expired token"."""


class MisdirectedToken(Exception):
    """Valid, but this process has no live session of its user: 421."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def user_part(jid: str) -> str:
    """The token's first part: ``jid`` (a bare JID) as URL-safe base64 without padding."""
    return _b64(jid.encode("utf-8"))


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, signed: str) -> str:
    return _b64(hmac.new(key, MAC_CONTEXT + signed.encode("ascii"), hashlib.sha256).digest())


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(eq=False)
class _Grant:
    """The issuing process's hold on the session a token was issued from."""

    digest: bytes
    user: str
    session: Session
    expires: float  # seconds, on the clock
    release: Callable[[], None]
    timer: IDelayedCall | None = field(default=None)


class StreamTokens(Service):
    """Issues and checks stream tokens, and holds the sessions they were issued from.

    ``store``: where the key shared by the bridge processes lives; None for a key of this
    process only.
    """

    def __init__(self, clock: IReactorTime, pool: SessionPool, lifetime: int, store: Store | None = None) -> None:
        self._clock = clock
        self._pool = pool
        self._store = store
        self.lifetime = lifetime
        # Signing key first; the others (this process's own key, used until the shared one
        # was read) are still accepted, so no token issued meanwhile stops working.
        self._keys: list[bytes] = [secrets.token_bytes(KEY_BYTES)]
        self.key_shared = False  # whether the signing key is the one in the store
        self._loading: defer.Deferred[None] | None = None
        self._grants: dict[bytes, _Grant] = {}
        self._by_user: dict[str, list[_Grant]] = {}  # oldest first
        self._watched: set[Session] = set()
        # Digests of tokens whose issuing session ended, until they would have expired.
        self._dead: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self._grants)

    # The key.

    def startService(self) -> None:
        super().startService()
        if self._store is not None and self._loading is None:
            self._loading = defer.Deferred.fromCoroutine(self._load_key(self._store))

    async def _load_key(self, store: Store) -> None:
        try:
            key = await store.stream_token_key(secrets.token_bytes(KEY_BYTES))
        except Exception:
            # Never the key itself in a log: only that it is not shared.
            log.error(
                "Stream tokens: cannot read the shared key from the store ({why}); "
                "tokens of this process are valid on it only",
                why=Failure().getErrorMessage(),
            )
            return
        if len(key) < KEY_BYTES:
            log.error("Stream tokens: the store's key is too short; tokens of this process are valid on it only")
            return
        self._keys.insert(0, key)
        self.key_shared = True

    async def ready(self) -> None:
        """Wait until the shared key is read (at most ``KEY_WAIT`` s after the first call)."""
        loading = self._loading
        if loading is None or loading.called:
            return
        waiter: defer.Deferred[None] = defer.Deferred()

        def fire(_: object = None) -> object:
            if not waiter.called:
                waiter.callback(None)
            return _

        timer = self._clock.callLater(KEY_WAIT, fire)
        loading.addBoth(fire)
        try:
            await waiter
        finally:
            if timer.active():
                timer.cancel()

    # Issuing and checking.

    def issue(self, session: Session) -> str:
        """A new token for ``session``'s user, holding the session for its lifetime."""
        if not self.running:
            raise ServerUnavailable("the bridge is shutting down")
        user = session.jid.userhost()
        expires = int((self._clock.seconds() + self.lifetime) * 1000)
        signed = f"{user_part(user)}.{expires}.{_b64(secrets.token_bytes(NONCE_BYTES))}"
        token = f"{signed}.{_mac(self._keys[0], signed)}"
        grant = _Grant(_digest(token), user, session, self._clock.seconds() + self.lifetime, self._pool.hold(session))
        grant.timer = self._clock.callLater(self.lifetime, self._retire, grant)
        self._grants[grant.digest] = grant
        user_grants = self._by_user.setdefault(user, [])
        user_grants.append(grant)
        for old in user_grants[:-MAX_TOKENS_PER_USER]:
            self._retire(old)
        if session not in self._watched:
            self._watched.add(session)
            session.ended.addCallback(lambda _: self._session_ended(session))
        return token

    def user_of(self, token: str) -> str:
        """The bare JID a valid ``token`` is for; ``InvalidToken`` for anything else."""
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise InvalidToken()
        parts = token.split(".")
        if len(parts) != 4:
            raise InvalidToken()
        user, expires, nonce, mac = parts
        if not (_B64.fullmatch(user) and _B64.fullmatch(nonce) and len(mac) == _MAC_LENGTH and _B64.fullmatch(mac)):
            raise InvalidToken()
        if not (expires.isdigit() and len(expires) <= 16):
            raise InvalidToken()
        signed = f"{user}.{expires}.{nonce}"
        if not any(hmac.compare_digest(_mac(key, signed), mac) for key in self._keys):
            raise InvalidToken()
        if self._clock.seconds() * 1000 >= int(expires):
            raise InvalidToken()
        try:
            return _unb64(user).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidToken() from None

    def serving_session(self, token: str) -> Session:
        """The live session that serves ``token``'s streams here.

        ``InvalidToken`` when it is not valid; ``MisdirectedToken`` when it is but this
        process has no live session of its user. The session it was issued from when this
        process issued it and it is alive, else the user's current live session here.
        """
        user = self.user_of(token)
        digest = _digest(token)
        if digest in self._dead:
            raise InvalidToken()
        grant = self._grants.get(digest)
        if grant is not None and grant.session.alive:
            return grant.session
        session = self._pool.live_session(user)
        if session is None:
            raise MisdirectedToken()
        return session

    def session_for(self, token: str) -> Session | None:
        """The session serving ``token`` here, or None (invalid, expired, or no session here)."""
        try:
            return self.serving_session(token)
        except (InvalidToken, MisdirectedToken):
            return None

    # Holds.

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
        now = self._clock.seconds()
        for digest, expires in list(self._dead.items()):
            if expires <= now:
                del self._dead[digest]
        for grant in list(self._by_user.get(session.jid.userhost(), [])):
            if grant.session is session:
                self._dead[grant.digest] = grant.expires
                self._retire(grant)

    def stopService(self) -> None:
        super().stopService()
        for grant in list(self._grants.values()):
            self._retire(grant)
