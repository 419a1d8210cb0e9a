"""The real site on fake XMPP sessions: what the REST tier's tests drive with StubTreq.

``make_site`` wires the production resource tree (``build_site``, the groups, the
authenticator, the login throttle, the request limits, stream tokens) exactly as
``bridge.tap.build`` does, but in front of a ``FakePool`` whose sessions answer the
XMPP-side operations (send, archive, roster, MUC Light client) from memory. A test makes
an operation fail by setting ``FakeSession.failure`` to the error the XMPP side would
raise (``bridge.xmpp.errors``, a ``StanzaError``), and checks the HTTP answer it becomes.

This is the one module of ``tests/rest`` that imports production names, so that moving a
module of the bridge changes one file here. A mock of the XMPP server proves nothing about
the server: these tests cover the REST contract (parsing, statuses, error strings, JSON
shapes); tests/integration covers what the server does.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.api.tokens import StreamTokens
from bridge.config import Config, parse_config
from bridge.events import Event
from bridge.http.limits import EventStreams
from bridge.http.site import BridgeSite
from bridge.protocol.muclight import RoomInfo, RoomSummary
from bridge.protocol.roster import Contact
from bridge.push.registry import PushRegistry
from bridge.tap import build_http
from bridge.xmpp.archive import ArchiveClient, ArchivedMessage
from bridge.xmpp.errors import (
    AuthenticationFailed,
    FeatureUnavailable,
    NotRoomMember,
    RoomBadRequest,
    RoomExists,
    RoomNotAllowed,
    RoomNotFound,
    RoomServiceNotFound,
    ServerTimeout,
    ServerUnavailable,
)
from bridge.xmpp.muclight_client import MucLightClient
from bridge.xmpp.roster import RosterClient
from tests.unit.memory_site import site_treq

__all__ = [
    "ALICE",
    "BASE",
    "BOB",
    "AuthenticationFailed",
    "Contact",
    "FeatureUnavailable",
    "NotRoomMember",
    "RestBridge",
    "RestTestCase",
    "RoomBadRequest",
    "RoomExists",
    "RoomNotAllowed",
    "RoomNotFound",
    "RoomServiceNotFound",
    "ServerTimeout",
    "ServerUnavailable",
    "StanzaError",
    "archived",
    "basic",
    "make_site",
]

BASE = "http://bridge.example"
ALICE = "alice@localhost"
BOB = "bob@localhost"
ACCOUNTS = {ALICE: "secret", BOB: "secret"}


def basic(jid: str = ALICE, password: str = "secret") -> str:
    """An ``Authorization`` header value with HTTP Basic credentials."""
    return "Basic " + base64.b64encode(f"{jid}:{password}".encode()).decode()


def archived(sender: str, to: str, body: str, timestamp: int, archive_id: str = "") -> ArchivedMessage:
    """An archive entry as the XMPP side returns it: a message stanza with its MAM stamp."""
    message = domish.Element(("jabber:client", "message"))
    message["from"], message["to"] = sender, to
    message["type"] = "groupchat" if "/" in sender else "chat"
    message["id"] = archive_id or f"m{timestamp}"
    message.addElement("body", content=body)
    return ArchivedMessage(archive_id or f"a{timestamp}", timestamp, message)


class FakeArchive:
    """``ArchiveClient.query``: the user's archive is ``messages``, oldest first."""

    def __init__(self, session: FakeSession) -> None:
        self._session = session
        self.messages: list[ArchivedMessage] = []
        self.queries: list[tuple[str | None, int | None, int]] = []

    async def query(
        self, with_jid: JID | None, end: int | None, limit: int, archive: JID | None = None
    ) -> list[ArchivedMessage]:
        self._session.check()
        self.queries.append((with_jid.full() if with_jid else None, end, limit))
        return self.messages[-limit:] if limit else []


class FakeRoster:
    """``RosterClient``'s operations on a dict of contacts by bare JID."""

    def __init__(self, session: FakeSession) -> None:
        self._session = session
        self.items: dict[str, Contact] = {}
        self.requests: list[tuple[str, str]] = []  # (subscribe|subscribed, bare JID)
        self.unconfirmed: set[str] = set()

    async def contacts(self) -> list[Contact]:
        self._session.check()
        return list(self.items.values())

    async def find(self, jid: JID) -> Contact | None:
        self._session.check()
        return self.items.get(jid.userhost())

    async def set_item(self, jid: JID, name: str | None, groups: list[str] | None) -> None:
        self._session.check()
        self.items[jid.userhost()] = Contact(jid.userhost(), "none", "none", name, tuple(groups or ()))

    async def subscribe(self, jid: JID) -> None:
        self._session.check()
        self.requests.append(("subscribe", jid.userhost()))

    async def approve(self, jid: JID) -> bool:
        """True unless the test put the contact in ``unconfirmed`` (the server had no request)."""
        self._session.check()
        self.requests.append(("subscribed", jid.userhost()))
        return jid.userhost() not in self.unconfirmed

    async def remove(self, jid: JID, refreshed: bool = False) -> bool:
        self._session.check()
        return self.items.pop(jid.userhost(), None) is not None

    async def remove_all(self, jids: Iterable[JID]) -> set[str]:
        self._session.check()
        return {jid.userhost() for jid in jids if self.items.pop(jid.userhost(), None) is not None}


class FakeRooms:
    """``MucLightClient``'s operations on rooms by id; unknown rooms are ``RoomNotFound``."""

    def __init__(self, session: FakeSession) -> None:
        self._session = session
        self.known: dict[str, RoomInfo] = {}
        self.archives: dict[str, list[ArchivedMessage]] = {}
        self.calls: list[tuple[str, ...]] = []
        self._ids = itertools.count(1)

    def _room(self, room: JID) -> RoomInfo:
        self._session.check()
        info = self.known.get(room.user or "")
        if info is None:
            raise RoomNotFound("Room not found")
        return info

    async def rooms(self, service: JID) -> list[RoomSummary]:
        self._session.check()
        return [RoomSummary(room_id, info.name, info.subject) for room_id, info in self.known.items()]

    async def create(self, service: JID, room_id: str | None, name: str, subject: str) -> str:
        self._session.check()
        room_id = room_id or f"generated{next(self._ids)}"
        if room_id in self.known:
            raise RoomExists("Room already exists")
        self.known[room_id] = RoomInfo(name, subject, [(self._session.jid.userhost(), "owner")])
        return room_id

    async def info(self, room: JID) -> RoomInfo:
        return self._room(room)

    async def configure(self, room: JID, name: str, subject: str) -> None:
        info = self._room(room)
        self.known[room.user or ""] = RoomInfo(name, subject, info.participants)

    async def set_affiliation(self, room: JID, user: str, affiliation: str) -> None:
        self._room(room)
        self.calls.append(("affiliation", room.full(), user, affiliation))

    async def send(self, room: JID, message: domish.Element) -> None:
        self._room(room)
        self.calls.append(("send", room.full(), message.toXml()))

    async def archive(self, room: JID, end: int | None, limit: int) -> list[ArchivedMessage]:
        self._room(room)
        return self.archives.get(room.user or "", [])[-limit:] if limit else []


class FakeSession:
    """A logged-in user session: the pool, tokens and handlers see what they need of ``Session``."""

    def __init__(self, jid: JID) -> None:
        self.jid = JID(tuple=(jid.user, jid.host, "rest-fake"))
        self.alive = True
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.holds = 0
        self.last_used = 0.0
        # The error every XMPP-side operation raises while set (None: they succeed).
        self.failure: Exception | None = None
        self.sent: list[domish.Element] = []
        # Answers ``iq`` (the raw IQs of e.g. XEP-0363 discovery): (type, payload, to) -> the
        # result IQ; unset, every IQ is refused with service-unavailable.
        self.iq_answer: Callable[[str, domish.Element, JID | None], domish.Element] | None = None
        self.iqs: list[tuple[str, domish.Element, str | None]] = []
        self.archive = FakeArchive(self)
        self.roster = FakeRoster(self)
        self.rooms = FakeRooms(self)
        self._handlers: dict[type, Any] = {
            ArchiveClient: self.archive,
            RosterClient: self.roster,
            MucLightClient: self.rooms,
        }

    def get(self, cls: type) -> Any:
        return self._handlers[cls]

    def find(self, cls: type) -> Any:
        return self._handlers.get(cls)

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def send(self, stanza: domish.Element) -> None:
        self.check()
        self.sent.append(stanza)

    async def round_trip(self) -> None:
        self.check()

    async def send_acknowledged(self, stanza: domish.Element) -> None:
        self.send(stanza)
        await self.round_trip()

    async def iq(
        self, stanza_type: str, payload: domish.Element, to: JID | None = None, timeout: float | None = None
    ) -> domish.Element:
        self.check()
        self.iqs.append((stanza_type, payload, to.full() if to is not None else None))
        if self.iq_answer is None:
            raise StanzaError("service-unavailable")
        return self.iq_answer(stanza_type, payload, to)

    def end(self) -> None:
        """The stream ended (the server went away)."""
        self.alive = False
        self.ended.callback(None)


class FakePool:
    """``SessionPool`` over ``accounts`` (bare JID -> password); the right password logs in."""

    running = True

    def __init__(self, accounts: dict[str, str]) -> None:
        self.accounts = dict(accounts)
        self.sessions: dict[str, FakeSession] = {}
        # Raised by every login while set (ServerUnavailable, ServerTimeout, ...).
        self.login_failure: Exception | None = None
        self.logins = 0

    def __len__(self) -> int:
        return len(self.sessions)

    def has_session(self, bare: str) -> bool:
        session = self.sessions.get(bare)
        return session is not None and session.alive

    def live_session(self, bare: str) -> FakeSession | None:
        return self.sessions[bare] if self.has_session(bare) else None

    def existing(self, jid: JID, password: str) -> FakeSession | None:
        bare = jid.userhost()
        if self.has_session(bare) and self.accounts.get(bare) == password:
            return self.sessions[bare]
        return None

    async def session(self, jid: JID, password: str) -> FakeSession:
        self.logins += 1
        if self.login_failure is not None:
            raise self.login_failure
        bare = jid.userhost()
        if self.accounts.get(bare) != password:
            raise AuthenticationFailed("SASL failure: not-authorized")
        session = self.existing(jid, password) or FakeSession(jid)
        self.sessions[bare] = session
        return session

    def hold(self, session: FakeSession) -> Callable[[], None]:
        session.holds += 1
        return lambda: None


class FakeHub:
    """``EventHub.open``/``close``: starts the stream with a position event; tests deliver the rest."""

    running = True

    def __init__(self) -> None:
        self.streams: list[tuple[FakeSession, Any, int | None]] = []
        self.failure: Exception | None = None

    async def open(self, session: FakeSession, stream: Any, last_seen: int | None) -> None:
        if self.failure is not None:
            raise self.failure
        stream.start()
        self.streams.append((session, stream, last_seen))
        stream.deliver(Event(last_seen or 0, "", "", 0.0))

    def close(self, stream: Any) -> None:
        self.streams = [each for each in self.streams if each[1] is not stream]

    def deliver(self, event_id: int, name: str, data: dict[str, Any]) -> None:
        """Send one event to every open stream."""
        for _, stream, _ in self.streams:
            stream.deliver(Event(event_id, name, json.dumps(data), 0.0))


@dataclass
class FakeReadiness:
    """``Readiness.status`` with a fixed answer."""

    answer: tuple[int, dict[str, Any]] = (200, {"status": "ready", "checks": {"xmpp": "ok"}})

    async def status(self) -> tuple[int, dict[str, Any]]:
        return self.answer


@dataclass
class RestBridge:
    """The site under test, the fakes behind it, and an in-memory HTTP client for it."""

    http: StubTreq
    site: BridgeSite
    config: Config
    clock: MemoryReactorClock
    pool: FakePool
    hub: FakeHub
    tokens: StreamTokens
    readiness: FakeReadiness
    user_streams: EventStreams
    headers: dict[str, str] = field(default_factory=dict)

    def session(self, jid: str = ALICE) -> FakeSession:
        """``jid``'s session, logged in now if it has none (as a first request would)."""
        bare = JID(jid)
        found = self.pool.existing(bare, self.pool.accounts[jid])
        if found is not None:
            return found
        session = FakeSession(bare)
        self.pool.sessions[jid] = session
        return session

    async def request(
        self,
        method: str,
        path: str,
        body: object = None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        auth: str | None = "",
    ) -> tuple[Any, Any]:
        """(response, decoded JSON body or None) of one request; ``auth`` None sends no credentials.

        ``body`` is sent as JSON with ``Content-Type: application/json``; ``data`` as is.
        """
        sent = {"Authorization": basic()} if auth == "" else ({"Authorization": auth} if auth else {})
        if body is not None:
            sent["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        sent.update(headers or {})
        response = await self.http.request(
            method, BASE + path, headers={k: [v] for k, v in sent.items()}, data=data, allow_redirects=False
        )
        raw = await response.content()
        content_type = (response.headers.getRawHeaders("content-type") or [""])[0]
        return response, json.loads(raw) if raw and content_type.startswith("application/json") else raw or None


def make_site(config: str = "", store: Any = None) -> RestBridge:
    """The production site for ``config`` (TOML) in front of fake sessions for alice and bob;
    with ``[push] enabled``, webhooks go to ``store``."""
    settings = parse_config(config, {})
    clock = MemoryReactorClock()
    pool = FakePool(ACCOUNTS)
    hub = FakeHub()
    tokens = StreamTokens(clock, pool, settings.sse.token_lifetime)  # type: ignore[arg-type]
    tokens.startService()
    readiness = FakeReadiness()
    push = None
    if settings.push.enabled and store is not None:
        push = PushRegistry(store, settings.push, settings.push.service_for(settings.muclight))
    edge = build_http(settings, clock, pool, hub, tokens, readiness, push=push)  # type: ignore[arg-type]
    site, user_streams = edge.site, edge.streams
    http = site_treq(site)
    return RestBridge(http, site, settings, clock, pool, hub, tokens, readiness, user_streams)


class RestTestCase(unittest.TestCase):
    """A test against a fresh ``make_site(config)``; ``request`` is ``RestBridge.request``."""

    config = ""

    def setUp(self) -> None:
        self.bridge = make_site(self.config)
        self.request = self.bridge.request

    def assertAnswer(self, answer: tuple[Any, Any], status: int, body: object = None) -> None:
        """``answer`` (from ``request``) has ``status`` and, unless None, that decoded JSON body."""
        response, decoded = answer
        self.assertEqual(response.code, status, decoded)
        if body is not None:
            self.assertEqual(decoded, body)
