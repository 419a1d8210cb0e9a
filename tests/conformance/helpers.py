"""What the conformance scenarios share: a bridge whose MUC Light component is up, REST
shortcuts, live-event streams, and MUC Light stanzas for plain XMPP clients."""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import quote

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.xish import domish

from tests.integration.base import BridgeTestCase, Reply, basic
from tests.integration.test_sse import SseReader
from tests.servers.xmpp_client import PlainClient

NS_MUCLIGHT = "urn:xmpp:muclight:0"
NS_CREATE = NS_MUCLIGHT + "#create"
NS_CONFIGURATION = NS_MUCLIGHT + "#configuration"
NS_AFFILIATIONS = NS_MUCLIGHT + "#affiliations"
NS_INFO = NS_MUCLIGHT + "#info"
NS_BLOCKING = NS_MUCLIGHT + "#blocking"
NS_DESTROY = NS_MUCLIGHT + "#destroy"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_ROSTER = "jabber:iq:roster"
NS_MAM_1 = "urn:xmpp:mam:1"
NS_MAM_2 = "urn:xmpp:mam:2"

User = tuple[str, str]
Affiliations = list[tuple[str, str]]


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds)


def now_ms() -> int:
    return int(time.time() * 1000)


def fresh_id(prefix: str = "room") -> str:
    """A room id no other test (or earlier run against the same store) uses."""
    return f"{prefix}-{secrets.token_hex(5)}"


async def round_trip(client: PlainClient) -> None:
    """Once the server answers a ping, it has routed everything the client sent before."""
    await client.iq("get", domish.Element(("urn:xmpp:ping", "ping")), to=client.jid.host)


async def next_groupchat(client: PlainClient, timeout: float = 10.0) -> domish.Element:
    while True:
        message = await client.inbox.get().addTimeout(timeout, reactor)
        if message.getAttribute("type") in ("groupchat", "error"):
            return message


async def next_chat(client: PlainClient, timeout: float = 10.0) -> domish.Element:
    while True:
        message = await client.inbox.get().addTimeout(timeout, reactor)
        if message.getAttribute("type") != "groupchat" and message.body is not None:
            return message


async def next_roster_push(client: PlainClient, timeout: float = 10.0) -> domish.Element:
    """The next roster push (an IQ set with a jabber:iq:roster query) the client received."""
    while True:
        iq = await client.iqs.get().addTimeout(timeout, reactor)
        if iq.query is not None and iq.query.uri == NS_ROSTER:
            return iq


async def next_presence(client: PlainClient, presence_type: str, timeout: float = 10.0) -> domish.Element:
    while True:
        presence = await client.presences.get().addTimeout(timeout, reactor)
        if presence.getAttribute("type") == presence_type:
            return presence


def x_of(message: domish.Element, ns: str) -> domish.Element | None:
    return next(message.elements(ns, "x"), None)


def notice_users(message: domish.Element) -> dict[str, str]:
    """The affiliation changes an affiliation notice announces, by bare JID."""
    x = x_of(message, NS_AFFILIATIONS)
    assert x is not None, message.toXml()
    return {str(user): user["affiliation"] for user in x.elements(NS_AFFILIATIONS, "user")}


def child_text(parent: domish.Element, ns: str, name: str) -> str | None:
    element = next(parent.elements(ns, name), None)
    return None if element is None else str(element)


def query(ns: str, *children: domish.Element) -> domish.Element:
    element = domish.Element((ns, "query"))
    for child in children:
        element.addChild(child)
    return element


def text_element(ns: str | None, name: str, text: str, **attributes: str) -> domish.Element:
    element = domish.Element((ns, name))
    element.addContent(text)
    for key, value in attributes.items():
        element[key] = value
    return element


def version(ns: str, value: str) -> domish.Element:
    return text_element(ns, "version", value)


def create_query(config: dict[str, str], occupants: Affiliations) -> domish.Element:
    create = domish.Element((NS_CREATE, "query"))
    configuration = create.addElement("configuration")
    for key, value in config.items():
        configuration.addElement(key, content=value)
    users = create.addElement("occupants")
    for jid, affiliation in occupants:
        users.addElement("user", content=jid)["affiliation"] = affiliation
    return create


def affiliations_query(changes: Affiliations) -> domish.Element:
    return query(
        NS_AFFILIATIONS, *(text_element(NS_AFFILIATIONS, "user", jid, affiliation=aff) for jid, aff in changes)
    )


def config_query(changes: list[tuple[str, str]]) -> domish.Element:
    return query(NS_CONFIGURATION, *(text_element(NS_CONFIGURATION, key, value) for key, value in changes))


def blocking_query(items: list[tuple[str, str, str]]) -> domish.Element:
    """Blocking list items as (what: user|room, action: deny|allow, who)."""
    return query(NS_BLOCKING, *(text_element(NS_BLOCKING, what, who, action=action) for what, action, who in items))


def groupchat(to: str, body: str, stanza_id: str | None = None) -> domish.Element:
    message = domish.Element((None, "message"))
    message["to"], message["type"] = to, "groupchat"
    message["id"] = stanza_id or secrets.token_hex(6)
    message.addElement("body", content=body)
    return message


async def stanza_error(deferred: Any) -> tuple[str, str]:
    """The (type, condition) of the error an IQ was answered with."""
    try:
        await deferred
    except StanzaError as e:
        return str(e.type), str(e.condition)
    raise AssertionError("expected a stanza error")


class ConformanceCase(BridgeTestCase):
    """A fresh bridge per scenario, its MUC Light component connected before the scenario runs."""

    timeout = 60

    async def _start(self) -> None:
        await super()._start()
        self._clients_by_jid: dict[str, PlainClient] = {}
        component = self.bridge.parts.component
        if component is not None:
            await component.connected.addTimeout(20, reactor)

    @property
    def service(self) -> str:
        return str(self.server.component)

    def room_jid(self, room_id: str) -> str:
        return f"{room_id}@{self.service}"

    def users(self, *names: str) -> list[User]:
        return [self.new_user(name) for name in names]

    # -- REST

    async def expect(
        self,
        method: str,
        path: str,
        user: User | None,
        body: Any = None,
        code: int = 200,
        text: Any = None,
        raw: bytes | None = None,
    ) -> Reply:
        headers = {"Content-Type": "application/json"} if raw is not None else None
        reply = await self.call(method, path, user, body, raw=raw, headers=headers)
        self.assertEqual(reply.code, code, (method, path, reply))
        if text is not None:
            self.assertEqual(reply.json, text, (method, path))
        return reply

    async def rest_room(self, owner: User, *members: User, name: str = "new_room_name") -> str:
        """A room created over REST, with members added by the owner."""
        reply = await self.expect("POST", "/api/rooms", owner, {"name": name, "subject": "This room subject"}, 201)
        room_id: str = reply.json["id"]
        for member in members:
            await self.expect("POST", f"/api/rooms/{room_id}/users", owner, {"user": member[0]}, 204)
        return room_id

    async def room_info(self, user: User, room: str) -> dict[str, Any]:
        reply = await self.expect("GET", f"/api/rooms/{room}", user, None, 200)
        info: dict[str, Any] = reply.json
        return info

    async def room_messages(self, user: User, room: str, query_string: str = "") -> list[dict[str, Any]]:
        reply = await self.expect("GET", f"/api/rooms/{room}/messages{query_string}", user, None, 200)
        messages: list[dict[str, Any]] = reply.json
        return messages

    async def send_room_message(self, user: User, room: str, body: Any) -> Reply:
        return await self.call("POST", f"/api/rooms/{room}/messages", user, body)

    async def send_chat(self, sender: User, to: User, body: str | None = None) -> dict[str, str]:
        """A chat message POSTed by ``sender``; returns what the archive should show."""
        text = body if body is not None else f"hello, {to[0]} it's me"
        reply = await self.expect("POST", "/api/messages", sender, {"to": to[0], "body": text}, 200)
        return {"id": reply.json["id"], "from": sender[0], "to": to[0], "body": text}

    # -- XMPP clients

    async def online(self, user: User, resource: str = "phone") -> PlainClient:
        """A plain client, available, whose presence the server has routed."""
        client = await self.client(user, resource)
        client.available()
        await round_trip(client)
        self._clients_by_jid[client.jid.userhost()] = client
        return client

    async def no_stanzas(self, *clients: PlainClient, wait: float = 0.3) -> None:
        """Fail if any client receives a message from the MUC Light service within ``wait`` seconds.

        Only the service's messages count: Prosody's mod_privilege also sends new sessions an
        empty ``<privilege/>`` message from the server's own domain, which no scenario is about.
        """
        await sleep(wait)
        for client in clients:
            from_service = [
                m.toXml()
                for m in client.inbox.pending
                if m.getAttribute("from", "").split("/")[0].endswith(self.service)
            ]
            self.assertEqual(from_service, [], client.jid.full())

    async def create_xmpp_room(
        self,
        owner: PlainClient,
        members: list[PlainClient],
        room_id: str | None = None,
        name: str = "Test room",
    ) -> str:
        """A room created over XMPP; every occupant's creation notice is taken from its inbox."""
        to = self.room_jid(room_id) if room_id else self.service
        occupants = [(member.jid.userhost(), "member") for member in members]
        result = await owner.iq("set", create_query({"roomname": name}, occupants), to=to)
        for client in [owner, *members]:
            notice = await next_groupchat(client)
            self.assertIsNotNone(x_of(notice, NS_AFFILIATIONS), notice.toXml())
        return str(result["from"])

    async def room_version(self, client: PlainClient, room_jid: str) -> str:
        info = await client.iq("get", query(NS_INFO, version(NS_INFO, "")), to=room_jid)
        return child_text(info.query, NS_INFO, "version") or ""

    def assert_aff_notice(self, notice: domish.Element, room_jid: str, changes: dict[str, str]) -> None:
        """A notice to an occupant announces ``changes``; a user who has just joined may be shown
        only their own affiliation (both forms are what MongooseIM's own suite accepts)."""
        self.assertEqual(notice["from"], room_jid, notice.toXml())
        x = x_of(notice, NS_AFFILIATIONS)
        assert x is not None, notice.toXml()
        new_version = child_text(x, NS_AFFILIATIONS, "version")
        self.assertIsNotNone(new_version, notice.toXml())
        self.assertNotEqual(new_version, child_text(x, NS_AFFILIATIONS, "prev-version"))
        announced = notice_users(notice)
        recipient = notice["to"].split("/")[0]
        if list(announced) == [recipient]:
            self.assertEqual(announced[recipient], changes.get(recipient), notice.toXml())
        else:
            self.assertIsNotNone(child_text(x, NS_AFFILIATIONS, "prev-version"), notice.toXml())
            self.assertEqual(announced, changes, notice.toXml())

    async def expect_aff_bcast(
        self, occupants: list[PlainClient], changes: dict[str, str], room_jid: str, *extra_ns: str
    ) -> None:
        """Every remaining occupant is told ``changes``; every removed user is told only their own
        removal (in a notice that may also carry the ``extra_ns`` elements, e.g. a destroy)."""
        for client in occupants:
            self.assert_aff_notice(await next_groupchat(client), room_jid, changes)
        for jid, affiliation in changes.items():
            if affiliation != "none" or jid not in self._clients_by_jid:
                continue
            notice = await next_groupchat(self._clients_by_jid[jid])
            self.assertEqual(notice["from"], room_jid, notice.toXml())
            self.assertEqual(notice_users(notice), {jid: "none"}, notice.toXml())
            for ns in extra_ns:
                self.assertIsNotNone(x_of(notice, ns), notice.toXml())

    # -- live events

    async def open_stream(self, user: User) -> SseReader:
        """An event stream of ``user`` that has started, with the user's session available."""
        response = await self.bridge.http.get(
            self.bridge.url("/api/sse"),
            headers={"Authorization": [basic(*user)], "Accept": ["text/event-stream"]},
            unbuffered=True,
        )
        self.assertEqual(response.code, 200)
        reader = SseReader()
        response.deliverBody(reader)
        self.addCleanup(reader.close)
        await reader.started.addTimeout(10, reactor)
        # The session's presence must have reached the component before room broadcasts count on it.
        await sleep(0.3)
        return reader


def contact_path(jid: str) -> str:
    return "/api/contacts/" + quote(jid, safe="@")
