"""The base of the MUC Light handlers, wokkel style (``wokkel.subprotocols.IQHandlerMixin``):
IQ dispatch through a table, and the one place that turns failures into stanza errors.

Each handler declares ``iq_handlers``: (addressee, IQ type, payload namespace, payload
name) -> method name, where the addressee is ``SERVICE`` (the service JID) or ``ROOM`` (a
room JID) and the payload is the IQ's first child element. The tables of the handlers on
one stream are disjoint; ``UnhandledIqHandler`` answers what no table claims with the
error the protocol gives (RFC 6120 8.3, MongooseIM's MUC Light).

A method gets a ``Request`` and returns the result's payload (or None, or ``Answer`` to
set the result's ``from``); it refuses by raising ``StanzaError``. Room IQs run under
the room's lock (``ServiceState.in_room``).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.protocols.jabber.xmlstream import toResponse
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from bridge.muclight.handlers.state import ServiceState
from bridge.muclight.presence import AvailableResources
from bridge.protocol.jid import parse
from bridge.protocol.namespaces import NS_MUCLIGHT
from bridge.store import Room, Store, StoreError

log = Logger()

SERVICE = "service"
ROOM = "room"
IQ_TYPES = ("get", "set")

# (addressee, IQ type, payload namespace, payload name)
IqKey = tuple[str, str, str | None, str]


@dataclass(frozen=True)
class Answer:
    """An IQ result with a payload and, when it is not the IQ's ``to``, its ``from``."""

    payload: domish.Element | None = None
    origin: str | None = None


Reply = domish.Element | Answer | None


@dataclass(frozen=True)
class Request:
    """An IQ get or set, addressed to the service (``room_id`` None) or one of its rooms."""

    iq: domish.Element
    payload: domish.Element
    sender: JID
    room_id: str | None
    # The IQ's id, which the notices it causes carry (a fresh one if it has none).
    stanza_id: str

    @property
    def key(self) -> IqKey:
        addressee = SERVICE if self.room_id is None else ROOM
        return (addressee, self.iq["type"], self.payload.uri, self.payload.name)

    @property
    def room(self) -> str:
        """The addressed room's id (a ``ROOM`` request, as the tables route them)."""
        if self.room_id is None:
            raise StanzaError("bad-request")
        return self.room_id

    @property
    def user(self) -> str:
        """The sender's bare JID."""
        return self.sender.userhost()

    def require_user(self) -> str:
        """The sender's bare JID; not-allowed for a server or component (no user part)."""
        if not self.sender.user:
            raise StanzaError("not-allowed", text="MUC Light serves users")
        return self.user


def parse_request(iq: domish.Element, service: str) -> Request:
    """``iq`` as a request to ``service``: bad-request without a payload or a valid ``to``
    and ``from``, or to a full JID; service-unavailable for another domain."""
    to, sender = parse(iq.getAttribute("to")), parse(iq.getAttribute("from"))
    payload = next(iter(iq.elements()), None)
    if to is None or sender is None or payload is None or to.resource:
        raise StanzaError("bad-request")
    if to.host != service:
        raise StanzaError("service-unavailable")
    return Request(iq, payload, sender, to.user, iq.getAttribute("id") or uuid.uuid4().hex)


def error_response(stanza: domish.Element, error: StanzaError) -> domish.Element:
    """The error answer to ``stanza``. Unlike ``StanzaError.toResponse`` the request's
    payload is not echoed: an occupant list or an archive query can be long."""
    response = toResponse(stanza, "error")
    response.addChild(error.getElement())
    return response


class MucLightHandler(XMPPHandler):
    """One feature of the MUC Light service on the component stream."""

    iq_handlers: ClassVar[Mapping[IqKey, str]] = {}

    def __init__(self, state: ServiceState) -> None:
        super().__init__()
        self.state = state

    @property
    def store(self) -> Store:
        return self.state.store

    @property
    def available(self) -> AvailableResources:
        return self.state.available

    async def occupied(self, request: Request) -> Room:
        """The room ``request`` is for, if its sender occupies it (else item-not-found)."""
        return await self.state.occupied(request.room, request.user)

    def connectionInitialized(self) -> None:
        if self.iq_handlers:
            for kind in IQ_TYPES:
                self.xmlstream.addObserver(f"/iq[@type='{kind}']", self._on_iq)

    # -- dispatch

    def _on_iq(self, iq: domish.Element) -> None:
        try:
            request = parse_request(iq, self.state.service)
        except StanzaError:
            return  # UnhandledIqHandler answers it
        name = self.iq_handlers.get(request.key)
        if name is None:
            return
        iq.handled = True  # type: ignore[attr-defined]
        self.handle(iq, self._answer(request, getattr(self, name)))

    async def _answer(self, request: Request, method: Callable[[Request], Awaitable[Reply]]) -> None:
        if request.room_id is None:
            self.reply(request.iq, await method(request))
            return

        async def work() -> None:
            self.reply(request.iq, await method(request))

        await self.state.in_room(request.room_id, work)

    def handle(self, stanza: domish.Element, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work``, the handling of ``stanza``; if it fails, answer with an error."""
        self.state.track(defer.Deferred.fromCoroutine(self._guarded(stanza, work)))

    async def _guarded(self, stanza: domish.Element, work: Coroutine[Any, Any, None]) -> None:
        # The one place failures become stanza errors: refusals as raised, anything else
        # internal-server-error (logged; the client learns nothing about it).
        try:
            await work
        except StanzaError as e:
            self.send_error(stanza, e)
        except StoreError as e:
            log.error("Store failure handling a {name}: {why}", name=stanza.name, why=str(e))
            self.send_error(stanza, StanzaError("internal-server-error"))
        except Exception:
            log.failure("Unexpected failure handling a {name}", name=stanza.name)
            self.send_error(stanza, StanzaError("internal-server-error"))

    # -- sending

    def send_stanza(self, stanza: domish.Element) -> None:
        if self.xmlstream is None:
            log.warn("Component stream down: a {name} for {to} is lost", name=stanza.name, to=stanza.getAttribute("to"))
            return
        self.send(stanza)

    def send_error(self, stanza: domish.Element, error: StanzaError) -> None:
        """Answer ``stanza`` with ``error``; never an error, a result, or what has no sender."""
        if stanza.getAttribute("type") in ("error", "result") or not stanza.getAttribute("from"):
            return
        self.send_stanza(error_response(stanza, error))

    def reply(self, iq: domish.Element, reply: Reply) -> None:
        answer = reply if isinstance(reply, Answer) else Answer(reply)
        response = toResponse(iq, "result")
        if answer.origin is not None:
            response["from"] = answer.origin
        if answer.payload is not None:
            response.addChild(answer.payload)
        self.send_stanza(response)

    def deliver(self, user: str, stanza: domish.Element) -> None:
        """Send ``stanza`` to every available full JID of ``user`` (none: the archive waits)."""
        for full in self.available.resources(user):
            stanza["to"] = full
            self.send_stanza(stanza)


class UnhandledIqHandler(MucLightHandler):
    """Answers the IQ gets and sets no handler's table claims (wokkel's ``FallbackHandler``,
    with MUC Light's errors): a malformed or misaddressed IQ as ``parse_request`` says;
    to the service, not-allowed for servers and feature-not-implemented for users; to a
    room, item-not-found for strangers, then bad-request for MUC Light namespaces and
    feature-not-implemented for the rest."""

    def connectionInitialized(self) -> None:
        for kind in IQ_TYPES:
            self.xmlstream.addObserver(f"/iq[@type='{kind}']", self._on_unhandled, priority=-1)

    def _on_unhandled(self, iq: domish.Element) -> None:
        if getattr(iq, "handled", False):
            return
        iq.handled = True  # type: ignore[attr-defined]
        self.handle(iq, self._refuse(iq))

    async def _refuse(self, iq: domish.Element) -> None:
        request = parse_request(iq, self.state.service)
        if request.room_id is None:
            request.require_user()
            raise StanzaError("feature-not-implemented")

        async def work() -> None:
            await self.occupied(request)
            uri = request.payload.uri
            if uri is not None and uri.startswith(NS_MUCLIGHT):
                raise StanzaError("bad-request")
            raise StanzaError("feature-not-implemented")

        await self.state.in_room(request.room_id, work)
