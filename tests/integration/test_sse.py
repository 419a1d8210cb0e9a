"""Live events over Server-Sent Events through the bridge and a real Prosody."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.words.protocols.jabber import component, xmlstream
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from zope.interface import implementer

from tests.integration.base import BridgeTestCase, basic
from tests.servers.browser import HeadlessChromium, chromium_paths
from tests.servers.fixture import RunningBridge, bridge_config
from tests.servers.xmpp_client import PlainClient, smack_message

NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds)


@dataclass
class SseEvent:
    name: str
    data: str
    id: str | None

    @property
    def json(self) -> Any:
        return json.loads(self.data)


class SseReader(protocol.Protocol):
    """Reads an event stream the way EventSource does, keeping events in a queue."""

    def __init__(self) -> None:
        self.events: defer.DeferredQueue[SseEvent] = defer.DeferredQueue()
        self.comments = 0
        self.last_id: str | None = None
        self.started: defer.Deferred[None] = defer.Deferred()
        self.closed: defer.Deferred[None] = defer.Deferred()
        self._buffer = b""
        self._fields: dict[str, str] = {}

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\n")
            self._line(line.rstrip(b"\r").decode("utf-8"))

    def _line(self, line: str) -> None:
        if line.startswith(":"):
            self.comments += 1
            return
        if line:
            name, _, value = line.partition(":")
            self._fields[name] = self._fields.get(name, "") + (value[1:] if value.startswith(" ") else value)
            return
        fields, self._fields = self._fields, {}
        if "id" in fields:
            self.last_id = fields["id"]
        if not self.started.called:
            self.started.callback(None)
        if "data" in fields:
            self.events.put(SseEvent(fields.get("event", "message"), fields["data"], fields.get("id")))

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if not self.closed.called:
            self.closed.callback(None)

    async def next(self, timeout: float = 10.0) -> SseEvent:
        return await self.events.get().addTimeout(timeout, reactor)

    async def nothing_within(self, seconds: float) -> None:
        """Fail if an event arrives within ``seconds``."""
        await sleep(seconds)
        if self.events.pending:
            raise AssertionError(f"unexpected event {self.events.pending[0]!r}")

    def close(self) -> defer.Deferred[None]:
        if self.transport is not None and not self.closed.called:
            self.transport.stopProducing()
        return self.closed


class SseTestCase(BridgeTestCase):
    timeout = 90

    async def open_stream(
        self,
        user: tuple[str, str] | None,
        query: str = "",
        headers: dict[str, str] | None = None,
        running: RunningBridge | None = None,
    ) -> SseReader:
        """A stream that has started (its first position or event was read)."""
        response, reader = await self.request_stream(user, query, headers, running)
        self.assertEqual(response.code, 200)
        await reader.started.addTimeout(10, reactor)
        return reader

    async def request_stream(
        self,
        user: tuple[str, str] | None,
        query: str = "",
        headers: dict[str, str] | None = None,
        running: RunningBridge | None = None,
    ) -> tuple[Any, SseReader]:
        running = running or self.bridge
        all_headers = {k: [v] for k, v in (headers or {}).items()}
        if user is not None:
            all_headers["Authorization"] = [basic(*user)]
        response = await running.http.get(running.url("/api/sse" + query), headers=all_headers, unbuffered=True)
        reader = SseReader()
        if response.code == 200:
            response.deliverBody(reader)
            self.addCleanup(reader.close)
        else:
            reader.body = await response.content()  # type: ignore[attr-defined]
        return response, reader

    async def send_chat(self, client: PlainClient, to: str, body: str, **attributes: str) -> domish.Element:
        message = domish.Element((None, "message"))
        message["to"], message["type"] = to, "chat"
        for name, value in attributes.items():
            message[name] = value
        message.addElement("body", content=body)
        client.send(message)
        return message


class MessageEventTests(SseTestCase):
    async def test_headers_and_first_position(self) -> None:
        """The stream answers text/event-stream, unbuffered and uncached, and starts with an id."""
        alice = self.new_user("alice")
        response, reader = await self.request_stream(alice)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/event-stream"])
        self.assertEqual(response.headers.getRawHeaders("cache-control"), ["no-cache"])
        self.assertEqual(response.headers.getRawHeaders("x-accel-buffering"), ["no"])
        await reader.started.addTimeout(10, reactor)
        assert reader.last_id is not None
        self.assertTrue(reader.last_id.isdigit())
        head = await self.call("HEAD", "/api/sse", alice)
        self.assertEqual((head.code, head.raw), (200, b""))
        self.assertEqual(head.header("content-type"), "text/event-stream")

    async def test_message_from_xmpp_client_arrives_as_design_json(self) -> None:
        """A Smack-style chat message from another user's client arrives as a `message` event."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        reader = await self.open_stream(alice)
        phone = await self.client(bob)
        phone.send(smack_message(alice[0], 'Hi <&> "alice"\nline two'))
        event = await reader.next()
        self.assertEqual(event.name, "message")
        assert event.id is not None and reader.last_id is not None
        self.assertEqual(event.id, reader.last_id)
        data = event.json
        self.assertIsInstance(data.pop("timestamp"), int)
        self.assertEqual(
            data,
            {
                "id": "smack-1",
                "from": bob[0],
                "to": alice[0],
                "body": 'Hi <&> "alice"\nline two',
                "thread": "e0ff",
                "parent": "7edac",
                "properties": {"some_number": "123", "some_string": "abc"},
                "property_types": {"some_number": "integer", "some_string": "string"},
            },
        )

    async def test_message_posted_by_another_rest_user_arrives(self) -> None:
        """A message another REST user POSTs arrives as a `message` event with its id."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        reader = await self.open_stream(alice)
        reply = await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "hello", "thread": "t1"})
        self.assertEqual(reply.code, 200, reply)
        event = await reader.next()
        self.assertEqual(event.name, "message")
        self.assertEqual(
            {k: event.json[k] for k in ("id", "from", "to", "body", "thread")},
            {"id": reply.json["id"], "from": bob[0], "to": alice[0], "body": "hello", "thread": "t1"},
        )
        self.assertNotIn("carbon", event.json)

    async def test_event_ids_increase(self) -> None:
        """Each event has a larger id than the one before."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        reader = await self.open_stream(alice)
        assert reader.last_id is not None
        ids = [int(reader.last_id)]
        for n in range(3):
            await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": f"m{n}"})
            event = await reader.next()
            self.assertEqual(event.json["body"], f"m{n}")
            assert event.id is not None
            ids.append(int(event.id))
        self.assertEqual(ids, sorted(set(ids)))

    async def test_chat_state_alone_is_a_chat_state_event(self) -> None:
        """A chat state alone is a `chat_state` event; a body with a state is one `message` event with it."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        reader = await self.open_stream(alice)
        phone = await self.client(bob)
        state = domish.Element((None, "message"))
        state["to"], state["type"] = alice[0], "chat"
        state.addElement((NS_CHATSTATES, "composing"))
        phone.send(state)
        event = await reader.next()
        self.assertEqual(
            (event.name, event.json), ("chat_state", {"from": bob[0], "to": alice[0], "state": "composing"})
        )
        real = domish.Element((None, "message"))
        real["to"], real["type"], real["id"] = alice[0], "chat", "with-state"
        real.addElement("body", content="real")
        real.addElement((NS_CHATSTATES, "active"))
        phone.send(real)
        event = await reader.next()
        self.assertEqual((event.name, event.json["body"], event.json["chat_state"]), ("message", "real", "active"))
        await reader.nothing_within(0.3)

    async def test_rest_chat_state_and_marker_arrive_as_events(self) -> None:
        """A chat state and a bodiless chat marker POSTed by another REST user arrive as `chat_state` and `message`."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        reader = await self.open_stream(alice)
        reply = await self.call("POST", "/api/messages", bob, {"to": alice[0], "chat_state": "paused"})
        self.assertEqual(reply.code, 200, reply)
        event = await reader.next()
        self.assertEqual((event.name, event.json), ("chat_state", {"from": bob[0], "to": alice[0], "state": "paused"}))
        marker = {"type": "acknowledged", "id": "a-1"}
        reply = await self.call("POST", "/api/messages", bob, {"to": alice[0], "chat_marker": marker})
        self.assertEqual(reply.code, 200, reply)
        event = await reader.next()
        self.assertEqual(
            (event.name, event.json["id"], event.json["chat_marker"]), ("message", reply.json["id"], marker)
        )
        self.assertNotIn("body", event.json)
        reply = await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "m", "markable": True})
        event = await reader.next()
        self.assertEqual((event.json["body"], event.json["markable"]), ("m", True))

    async def test_several_streams_share_one_session(self) -> None:
        """Two streams of one user use one session and both get each event; closing both releases it."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        first, second = await self.open_stream(alice), await self.open_stream(alice)
        pool = self.bridge.parts.pool
        self.assertEqual(len(pool), 1)  # alice's; bob has not called yet
        await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "both"})
        one, two = await first.next(), await second.next()
        self.assertEqual((one.json["body"], one.id), (two.json["body"], two.id))
        events = self.bridge.parts.events
        assert events is not None
        self.assertEqual(events.stream_count(alice[0]), 2)
        await first.close()
        await second.close()
        await sleep(0.2)
        self.assertEqual(events.stream_count(alice[0]), 0)
        self.assertEqual(pool._sessions[alice[0]][0].holds, 0)

    async def test_stream_session_is_available_to_contacts_once(self) -> None:
        """The stream's session goes available once, with the configured priority, however many streams open."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        # Bob subscribes to alice's presence through plain clients, and alice approves.
        alice_laptop, bob_phone = await self.client(alice, "laptop"), await self.client(bob)
        alice_laptop.available()  # subscription requests reach only available resources
        bob_phone.available()

        async def wait_for(client: PlainClient, match: Any) -> None:
            while not match(await client.presences.get().addTimeout(10, reactor)):
                pass

        request = domish.Element((None, "presence"))
        request["to"], request["type"] = alice[0], "subscribe"
        bob_phone.send(request)
        await wait_for(alice_laptop, lambda p: p.getAttribute("type") == "subscribe")
        approval = domish.Element((None, "presence"))
        approval["to"], approval["type"] = bob[0], "subscribed"
        alice_laptop.send(approval)
        # Once subscribed, bob's server tells him alice's current presence.
        await wait_for(
            bob_phone, lambda p: p.getAttribute("from") == f"{alice[0]}/laptop" and not p.getAttribute("type")
        )

        def from_stream_session(presence: domish.Element) -> bool:
            sender = presence.getAttribute("from", "")
            return sender.startswith(alice[0] + "/rest-") and not presence.getAttribute("type")

        await self.open_stream(alice)
        await self.open_stream(alice)
        seen = []
        while not seen:
            presence = await bob_phone.presences.get().addTimeout(10, reactor)
            if from_stream_session(presence):
                seen.append(presence)
        await sleep(0.5)
        seen.extend(p for p in bob_phone.presences.pending if from_stream_session(p))
        self.assertEqual(len(seen), 1, [p.toXml() for p in seen])
        self.assertEqual(str(seen[0].priority), "0")


class CarbonTests(SseTestCase):
    async def test_message_to_other_resource_arrives_as_received_carbon(self) -> None:
        """A message to another of the user's resources arrives unwrapped, marked carbon=received."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        alice_phone = await self.client(alice, "phone")
        alice_phone.available()
        reader = await self.open_stream(alice)
        bob_phone = await self.client(bob)
        await self.send_chat(bob_phone, f"{alice[0]}/phone", "to the phone", id="c1")
        event = await reader.next()
        self.assertEqual(
            {k: event.json[k] for k in ("id", "from", "to", "body", "carbon")},
            {"id": "c1", "from": bob[0], "to": alice[0], "body": "to the phone", "carbon": "received"},
        )

    async def test_message_sent_from_other_resource_arrives_as_sent_carbon(self) -> None:
        """A message the user sends from another client arrives marked carbon=sent."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        alice_phone = await self.client(alice, "phone")
        alice_phone.available()
        reader = await self.open_stream(alice)
        await self.send_chat(alice_phone, bob[0], "from my phone", id="c2")
        event = await reader.next()
        self.assertEqual(
            {k: event.json[k] for k in ("id", "from", "to", "body", "carbon")},
            {"id": "c2", "from": alice[0], "to": bob[0], "body": "from my phone", "carbon": "sent"},
        )

    async def test_forged_carbon_from_another_user_is_dropped(self) -> None:
        """A carbon wrapper sent by someone else is dropped, not unwrapped and not delivered."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        reader = await self.open_stream(alice)
        bob_phone = await self.client(bob)
        forged = domish.Element((None, "message"))
        forged["to"], forged["type"] = alice[0], "chat"
        forged.addElement("body", content="outer")
        inner = forged.addElement((NS_CARBONS, "received")).addElement((NS_FORWARD, "forwarded"))
        message = inner.addElement(("jabber:client", "message"))
        message["from"], message["to"], message["type"] = "boss@localhost/x", alice[0], "chat"
        message.addElement("body", content="forged")
        bob_phone.send(forged)
        await self.send_chat(bob_phone, alice[0], "genuine")
        event = await reader.next()
        self.assertEqual(event.json["body"], "genuine")
        await reader.nothing_within(0.3)


class ReplayTests(SseTestCase):
    bridge_sections = {"sse": {"replay_events": 3}}

    async def test_last_event_id_replays_missed_events(self) -> None:
        """Reconnecting with Last-Event-ID within the window gets exactly the missed events, in order."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        reader = await self.open_stream(alice)
        await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "seen"})
        seen = await reader.next()
        await reader.close()
        for body in ("missed 1", "missed 2"):
            await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": body})
        again = await self.open_stream(alice, headers={"Last-Event-ID": str(seen.id)})
        first, second = await again.next(), await again.next()
        self.assertEqual([first.json["body"], second.json["body"]], ["missed 1", "missed 2"])
        assert first.id is not None and second.id is not None and seen.id is not None
        self.assertLess(int(seen.id), int(first.id))
        self.assertLess(int(first.id), int(second.id))
        await again.nothing_within(0.2)
        # The query parameter does the same for a new EventSource, which cannot set the header.
        by_query = await self.open_stream(alice, query=f"?last_event_id={first.id}")
        self.assertEqual((await by_query.next()).json["body"], "missed 2")

    async def test_id_outside_window_gets_reset(self) -> None:
        """An id older than the buffer, or unknown, gets a `reset` event carrying the current id."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        reader = await self.open_stream(alice)
        await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "seen"})
        seen = await reader.next()
        await reader.close()
        for n in range(4):  # one more than the buffer holds
            await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": f"m{n}"})
        again = await self.open_stream(alice, headers={"Last-Event-ID": str(seen.id)})
        reset = await again.next()
        self.assertEqual(reset.name, "reset")
        self.assertIn("reason", reset.json)
        assert reset.id is not None and seen.id is not None
        self.assertGreater(int(reset.id), int(seen.id))
        await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "after"})
        self.assertEqual((await again.next()).json["body"], "after")
        # Resuming from the reset's id works again.
        resumed = await self.open_stream(alice, headers={"Last-Event-ID": reset.id})
        self.assertEqual((await resumed.next()).json["body"], "after")
        unknown = await self.open_stream(alice, headers={"Last-Event-ID": "1"})
        self.assertEqual((await unknown.next()).name, "reset")

    async def test_invalid_last_event_id_is_400(self) -> None:
        """A Last-Event-ID that is not one of our ids is refused with 400."""
        alice = self.new_user("alice")
        for value in ("abc", "-1", "1" * 40, "\uff11\uff12", "1\x0b"):
            response, reader = await self.request_stream(alice, headers={"Last-Event-ID": value})
            self.assertEqual((response.code, reader.body), (400, b'"Invalid Last-Event-ID"'), value)  # type: ignore[attr-defined]
        response, reader = await self.request_stream(alice, query="?last_event_id=x%00y")
        self.assertEqual(response.code, 400)
        response, reader = await self.request_stream(alice, query="?unknown=1")
        self.assertEqual((response.code, reader.body), (400, b'"Invalid query string"'))  # type: ignore[attr-defined]


class KeepAliveTests(SseTestCase):
    bridge_sections = {"sse": {"keepalive": 0.2}, "http": {"idle_timeout": 0.5}}

    async def test_idle_stream_outlives_keepalive_and_idle_timeout(self) -> None:
        """An idle stream gets comments every keepalive period and still delivers after many of them."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        reader = await self.open_stream(alice)
        await sleep(2.0)  # ten keep-alive periods, four HTTP idle timeouts
        self.assertGreaterEqual(reader.comments, 6)
        self.assertFalse(reader.closed.called)
        await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "still here"})
        self.assertEqual((await reader.next()).json["body"], "still here")


class StalledReader(protocol.Protocol):
    """An HTTP client that sends a request, reads the response head, then stops reading."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.head = b""
        self.started: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.head += data
        if b"\r\n\r\n" in self.head and not self.started.called:
            self.transport.pauseProducing()
            self.started.callback(None)


class BackPressureTests(SseTestCase):
    bridge_sections = {"sse": {"max_queued_bytes": 65536, "replay_events": 5}}

    async def test_client_that_stops_reading_is_cut_off_at_the_limit(self) -> None:
        """A client that stops reading is disconnected once 64 KiB queue up; other streams keep going."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        reading = await self.open_stream(alice)
        port = int(self.bridge.base.rsplit(":", 1)[1])
        stalled = StalledReader(
            b"GET /api/sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
            + basic(*alice).encode()
            + b"\r\nAccept: text/event-stream\r\n\r\n"
        )
        connection = await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
            protocol.Factory.forProtocol(lambda: stalled)
        )
        self.addCleanup(connection.transport.abortConnection)
        await stalled.started.addTimeout(10, reactor)
        self.assertIn(b"200", stalled.head.split(b"\r\n")[0])
        events = self.bridge.parts.events
        assert events is not None
        self.assertEqual(events.stream_count(alice[0]), 2)
        streams = list(events._streams)
        bob_phone = await self.client(bob)
        body = "x" * 20000
        sent = 0
        while events.stream_count(alice[0]) == 2 and sent < 600:
            for _ in range(10):
                await self.send_chat(bob_phone, alice[0], f"{sent} {body}")
                sent += 1
            await bob_phone.iq("get", domish.Element(("urn:xmpp:ping", "ping")), to=self.server.domain)
            for _ in range(10):
                await reading.next()
        self.assertEqual(events.stream_count(alice[0]), 1, f"not cut off after {sent} messages")
        (cut,) = [s for s in streams if s.cut_off]
        self.assertLessEqual(cut.peak_queued, 65536 + 20200)
        # The daemon kept reading: the reading stream got every message, and gets the next one.
        await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "after"})
        event = await reading.next()
        self.assertEqual(event.json["body"], "after")
        self.assertEqual(reading.events.pending, [])


class TokenTests(SseTestCase):
    async def test_token_opens_a_stream_and_never_appears_in_logs(self) -> None:
        """POST /api/sse/token gives a 201 token that opens the stream; the token is not logged."""
        logged: list[str] = []

        @implementer(ILogObserver)
        def observe(event: dict[str, Any]) -> None:
            logged.append(repr(event))
            logged.append(formatEvent(event) or "")

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        alice, bob = self.new_user("alice"), self.new_user("bob")
        reply = await self.call("POST", "/api/sse/token", alice)
        self.assertEqual(reply.code, 201, reply)
        self.assertEqual(set(reply.json), {"token", "expires_in"})
        self.assertEqual(reply.json["expires_in"], 60)
        token = reply.json["token"]
        self.assertGreaterEqual(len(token), 40)
        reader = await self.open_stream(None, query=f"?token={token}")
        await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "via token"})
        event = await reader.next()
        self.assertEqual((event.json["to"], event.json["body"]), (alice[0], "via token"))
        self.assertTrue(logged)
        self.assertFalse([line for line in logged if token in line])
        self.assertTrue([line for line in logged if "/api/sse" in line])

    async def test_wrong_or_missing_credentials_are_401(self) -> None:
        """No credentials, a wrong password or a wrong token: 401, and no stream."""
        alice = self.new_user("alice")
        response, reader = await self.request_stream(None)
        self.assertEqual(response.code, 401)
        self.assertTrue(response.headers.getRawHeaders("www-authenticate")[0].startswith("Basic"))
        response, _ = await self.request_stream((alice[0], "wrong"))
        self.assertEqual(response.code, 401)
        for token in ("nope", "A" * 43, "x" * 5000, "%00", "%3Cscript%3E", ""):
            response, reader = await self.request_stream(None, query=f"?token={token}")
            self.assertEqual(response.code, 401, token)
            self.assertEqual(reader.body, b'"Invalid or expired token"')  # type: ignore[attr-defined]
            self.assertTrue(response.headers.getRawHeaders("www-authenticate")[0].startswith("Bearer"))
        response, reader = await self.request_stream(None, query="?token=%ff")
        self.assertEqual((response.code, reader.body), (400, b'"Invalid query string"'))  # type: ignore[attr-defined]
        unauthenticated = await self.call("POST", "/api/sse/token")
        self.assertEqual(unauthenticated.code, 401)
        self.assertEqual((await self.call("GET", "/api/sse/token", alice)).code, 405)

    async def test_token_for_a_closed_session_is_401(self) -> None:
        """Once the session a token was issued from has ended, the token opens nothing."""
        alice = self.new_user("alice")
        reply = await self.call("POST", "/api/sse/token", alice)
        (session,) = [s for s, _ in self.bridge.parts.pool._sessions.values()]
        self.assertEqual(session.holds, 1)
        session.close()
        await session.ended
        response, _ = await self.request_stream(None, query=f"?token={reply.json['token']}")
        self.assertEqual(response.code, 401)
        tokens = self.bridge.parts.tokens
        assert tokens is not None
        self.assertEqual(len(tokens), 0)

    async def test_cors_lets_another_origin_use_token_and_stream(self) -> None:
        """Pre-flight and answers carry the CORS headers a page on another origin needs."""
        alice = self.new_user("alice")
        origin = "http://app.example"
        preflight = await self.call(
            "OPTIONS",
            "/api/sse/token",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        self.assertEqual(preflight.code, 204)
        self.assertEqual(preflight.header("access-control-allow-origin"), origin)
        self.assertIn("Authorization", preflight.header("access-control-allow-headers") or "")
        reply = await self.call("POST", "/api/sse/token", alice, headers={"Origin": origin})
        self.assertEqual(reply.header("access-control-allow-origin"), origin)
        response, _ = await self.request_stream(None, query=f"?token={reply.json['token']}", headers={"Origin": origin})
        self.assertEqual(response.headers.getRawHeaders("access-control-allow-origin"), [origin])


class ShortTokenTests(SseTestCase):
    bridge_sections = {"sse": {"token_lifetime": 1}}

    async def test_expired_token_is_401_and_releases_the_session(self) -> None:
        """A token past its lifetime is refused, and no longer holds the session."""
        alice = self.new_user("alice")
        reply = await self.call("POST", "/api/sse/token", alice)
        self.assertEqual(reply.json["expires_in"], 1)
        await sleep(1.2)
        response, _ = await self.request_stream(None, query=f"?token={reply.json['token']}")
        self.assertEqual(response.code, 401)
        (session,) = [s for s, _ in self.bridge.parts.pool._sessions.values()]
        self.assertEqual(session.holds, 0)


class EndOfStreamTests(SseTestCase):
    async def test_session_end_closes_streams_with_a_final_event(self) -> None:
        """When the XMPP session ends, its streams get `close` (session_ended) and end."""
        alice = self.new_user("alice")
        reader = await self.open_stream(alice)
        (session,) = [s for s, _ in self.bridge.parts.pool._sessions.values()]
        session.close()
        event = await reader.next()
        self.assertEqual((event.name, event.json), ("close", {"reason": "session_ended"}))
        await reader.closed.addTimeout(5, reactor)
        events = self.bridge.parts.events
        assert events is not None
        self.assertEqual((events.stream_count(alice[0]), events._users), (0, {}))

    async def test_daemon_shutdown_closes_streams_with_a_final_event(self) -> None:
        """Stopping the service tree ends every stream with `close` (shutdown) and closes it."""
        alice = self.new_user("alice")
        running = RunningBridge(reactor, bridge_config(self.mktemp()))
        await running.start()
        readers = [await self.open_stream(alice, running=running) for _ in range(2)]
        await running.stop()
        for reader in readers:
            event = await reader.next()
            self.assertEqual((event.name, event.json), ("close", {"reason": "shutdown"}))
            await reader.closed.addTimeout(5, reactor)


class RoomMessageTests(SseTestCase):
    bridge_sections = {"muclight": {"component": False}}

    async def test_groupchat_from_the_muclight_service_arrives_as_room_message(self) -> None:
        """The service learns the stream's full JID from presence; its room broadcasts become `room.message`."""
        alice = self.new_user("alice")
        service = self.server.component
        factory = component.componentFactory(service, self.server.component_secret)
        ready: defer.Deferred[xmlstream.XmlStream] = defer.Deferred()
        factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, ready.callback)
        factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, ready.errback)
        await HostnameEndpoint(reactor, "127.0.0.1", self.server.component_port).connect(factory)
        xs = await ready.addTimeout(10, reactor)
        self.addCleanup(xs.transport.loseConnection)
        presences: defer.DeferredQueue[domish.Element] = defer.DeferredQueue()
        xs.addObserver("/presence", presences.put)
        reader = await self.open_stream(alice)
        while True:
            presence = await presences.get().addTimeout(10, reactor)
            sender = JID(presence["from"])
            if sender.userhost() == alice[0] and presence.getAttribute("to") == service:
                break
        room = f"room1@{service}"
        broadcast = domish.Element((None, "message"))
        broadcast["from"], broadcast["to"] = f"{room}/bob@localhost", sender.full()
        broadcast["type"], broadcast["id"] = "groupchat", "g1"
        broadcast.addElement("body", content="hello room")
        xs.send(broadcast)
        notice = domish.Element((None, "message"))
        notice["from"], notice["to"], notice["type"], notice["id"] = room, sender.full(), "groupchat", "a1"
        notice.addElement("x", "urn:xmpp:muclight:0#affiliations").addElement("user", content=alice[0])[
            "affiliation"
        ] = "member"
        notice.addElement("body")
        xs.send(notice)
        other = domish.Element((None, "message"))
        other["from"], other["to"], other["type"] = "room@conference.localhost/x", sender.full(), "groupchat"
        other.addElement("body", content="not a MUC Light room")
        xs.send(other)
        message = await reader.next()
        self.assertEqual(message.name, "room.message")
        self.assertEqual(
            {k: message.json[k] for k in ("id", "from", "body", "room", "type")},
            {"id": "g1", "from": "bob@localhost", "body": "hello room", "room": "room1", "type": "message"},
        )
        affiliation = await reader.next()
        self.assertEqual(affiliation.name, "room.message")
        self.assertEqual(
            {k: affiliation.json[k] for k in ("type", "user", "affiliation", "room")},
            {"type": "affiliation", "user": alice[0], "affiliation": "member", "room": "room1"},
        )
        await reader.nothing_within(0.3)


PAGE = """<!doctype html>
<meta charset="utf-8">
<title>SSE from another origin</title>
<script>
window.seen = [];
const base = %(base)s, auth = %(auth)s;
fetch(base + "/api/sse/token", {method: "POST", headers: {Authorization: auth}})
  .then((reply) => {
    if (reply.status !== 201) throw new Error("token answer " + reply.status);
    return reply.json();
  })
  .then((grant) => {
    const source = new EventSource(base + "/api/sse?token=" + encodeURIComponent(grant.token));
    source.onopen = () => window.seen.push({type: "open"});
    source.onerror = () => window.seen.push({type: "error", state: source.readyState});
    source.addEventListener("message", (event) =>
      window.seen.push({type: "message", id: event.lastEventId, data: event.data}));
  })
  .catch((error) => window.seen.push({type: "failed", error: String(error)}));
</script>
"""


class PageResource(Resource):
    isLeaf = True

    def __init__(self, page: bytes) -> None:
        super().__init__()
        self._page = page

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        return self._page


class BrowserTests(SseTestCase):
    timeout = 120

    async def test_headless_chromium_event_source_with_a_token_from_another_origin(self) -> None:
        """A page on another origin gets a token, opens EventSource in Chromium, and sees a message event."""
        paths = chromium_paths()
        if paths is None:
            raise SkipTest("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
        alice, bob = self.new_user("alice"), self.new_user("bob")
        page = PAGE % {"base": json.dumps(self.bridge.base), "auth": json.dumps(basic(*alice))}
        listening = reactor.listenTCP(0, Site(PageResource(page.encode())), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        page_url = f"http://127.0.0.1:{listening.getHost().port}/"
        self.assertNotEqual(page_url.rstrip("/"), self.bridge.base)  # another origin: another port
        browser = HeadlessChromium(reactor, *paths)
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(browser.stop()))
        await browser.start()
        await browser.get(page_url)

        async def wait_for(kind: str) -> dict[str, Any]:
            for _ in range(200):
                seen = await browser.execute("return window.seen;")
                found = [entry for entry in seen if entry["type"] == kind]
                if found:
                    return found[0]
                if any(entry["type"] == "failed" for entry in seen):
                    self.fail(f"the page failed: {seen}")
                await sleep(0.05)
            self.fail(f"no {kind} in the page after 10 s: {seen}")

        await wait_for("open")
        reply = await self.call("POST", "/api/messages", bob, {"to": alice[0], "body": "to the browser"})
        event = await wait_for("message")
        data = json.loads(event["data"])
        self.assertEqual((data["id"], data["from"], data["body"]), (reply.json["id"], bob[0], "to the browser"))
        self.assertTrue(event["id"].isdigit())
