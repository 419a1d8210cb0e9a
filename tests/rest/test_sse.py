"""``/api/sse`` (DESIGN.md, "Live events"): stream tokens, opening a stream, and its errors.

The event hub is a fake here (it only starts the stream and delivers what a test gives it);
replay and the XMPP side of live events are tested against a real server.
"""

from __future__ import annotations

from typing import Any

import treq
from twisted.words.protocols.jabber.jid import JID

from bridge.api.tokens import StreamTokens
from tests.rest.fakes import ALICE, BASE, FakeSession, RestTestCase, ServerUnavailable, basic


class SseTestCase(RestTestCase):
    async def open_stream(self, query: str = "", headers: dict[str, str] | None = None, auth: bool = True) -> Any:
        sent = {"Authorization": basic()} if auth else {}
        sent.update(headers or {})
        response = await self.bridge.http.get(BASE + "/api/sse" + query, headers={k: [v] for k, v in sent.items()})
        self.chunks: list[bytes] = []
        self.body_done = treq.collect(response, self.chunks.append)
        self.bridge.http.flush()
        return response

    def received(self) -> bytes:
        self.bridge.http.flush()
        return b"".join(self.chunks)


class TokenTests(SseTestCase):
    async def test_token_is_201_with_its_lifetime(self) -> None:
        """POST /api/sse/token answers 201 {token, expires_in} with sse.token_lifetime."""
        response, body = await self.request("POST", "/api/sse/token")
        self.assertEqual(response.code, 201)
        self.assertEqual(set(body), {"token", "expires_in"})
        self.assertEqual(body["expires_in"], 60)

    async def test_token_needs_credentials(self) -> None:
        """POST /api/sse/token without credentials is 401 with a Basic challenge."""
        response, body = await self.request("POST", "/api/sse/token", auth=None)
        self.assertEqual((response.code, body), (401, "Unauthorized"))
        self.assertTrue(response.headers.getRawHeaders("www-authenticate")[0].startswith("Basic "))

    async def test_token_opens_a_stream_until_it_expires(self) -> None:
        """GET /api/sse?token= opens the stream of the token's user; after its lifetime it is 401 with Bearer."""
        _, body = await self.request("POST", "/api/sse/token")
        response = await self.open_stream(f"?token={body['token']}", auth=False)
        self.assertEqual(response.code, 200)
        self.assertEqual(self.bridge.hub.streams[0][0].jid.userhost(), ALICE)
        self.bridge.clock.advance(61)
        answer = await self.request("GET", f"/api/sse?token={body['token']}", auth=None)
        self.assertAnswer(answer, 401, "Invalid or expired token")

    async def test_unknown_token_is_401_with_a_bearer_challenge(self) -> None:
        """An unknown token is 401 "Invalid or expired token" with WWW-Authenticate: Bearer, not Basic."""
        response, body = await self.request("GET", "/api/sse?token=forged", auth=None)
        self.assertEqual((response.code, body), (401, "Invalid or expired token"))
        self.assertEqual(
            response.headers.getRawHeaders("www-authenticate"),
            ['Bearer realm="xmpp-rest-bridge", error="invalid_token"'],
        )


class OtherProcessTokenTests(SseTestCase):
    """Tokens issued by another bridge process that shares this one's key (DESIGN.md, "Several processes")."""

    class SharedKey:
        def __init__(self, key: bytes) -> None:
            self.key = key

        async def stream_token_key(self, candidate: bytes) -> bytes:
            return self.key

    class OtherPool:
        def hold(self, session: Any) -> Any:
            return lambda: None

    def other_process(self, key: bytes) -> StreamTokens:
        other = StreamTokens(self.bridge.clock, self.OtherPool(), 60, self.SharedKey(key))  # type: ignore[arg-type]
        other.startService()
        self.addCleanup(other.stopService)
        return other

    def token_elsewhere(self, key: bytes | None = None) -> str:
        # The key this bridge signs with (a test's view of the key both processes read from the store).
        shared = self.bridge.tokens._keys[0] if key is None else key
        return self.other_process(shared).issue(FakeSession(JID(ALICE)))  # type: ignore[arg-type]

    async def test_valid_token_without_a_session_here_is_421(self) -> None:
        """Another process's valid token, where this process has no session of its user, is 421 with a JSON reason."""
        token = self.token_elsewhere()
        answer = await self.request("GET", f"/api/sse?token={token}", auth=None)
        self.assertAnswer(answer, 421, "Stream token belongs to another bridge process")
        self.assertIsNone(answer[0].headers.getRawHeaders("www-authenticate"))

    async def test_valid_token_is_served_by_the_users_session_here(self) -> None:
        """Another process's valid token opens a stream here once this process holds a session of its user."""
        token = self.token_elsewhere()
        self.assertEqual((await self.request("POST", "/api/sse/token"))[0].code, 201)  # a Basic login here
        response = await self.open_stream(f"?token={token}", auth=False)
        self.assertEqual(response.code, 200)
        self.assertEqual(self.bridge.hub.streams[0][0].jid.userhost(), ALICE)

    async def test_token_signed_with_another_key_is_401(self) -> None:
        """A token signed with a key this process does not share is 401 "Invalid or expired token" with Bearer."""
        await self.request("POST", "/api/sse/token")
        token = self.token_elsewhere(b"k" * 32)
        response, body = await self.request("GET", f"/api/sse?token={token}", auth=None)
        self.assertEqual((response.code, body), (401, "Invalid or expired token"))
        self.assertTrue(response.headers.getRawHeaders("www-authenticate")[0].startswith("Bearer "))

    async def test_malformed_tokens_are_401_never_500(self) -> None:
        """Oversized, garbage and non-ASCII tokens are 401 "Invalid or expired token"."""
        for token in ("A" * 5000, "a.b.c.d", "%C3%A9.1.2.3", "%00", "...", "x" * 40 + "." * 3):
            self.assertAnswer(
                await self.request("GET", f"/api/sse?token={token}", auth=None), 401, "Invalid or expired token"
            )


class StreamTests(SseTestCase):
    async def test_stream_writes_events_and_a_final_close(self) -> None:
        """The stream is text/event-stream: the position id, each event with id and data, then event: close."""
        response = await self.open_stream()
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/event-stream"])
        self.assertEqual(response.headers.getRawHeaders("cache-control"), ["no-cache"])
        self.bridge.hub.deliver(1, "message", {"from": "bob@localhost", "body": "hi"})
        self.assertEqual(
            self.received(), b'id: 0\n\nid: 1\nevent: message\ndata: {"from": "bob@localhost", "body": "hi"}\n\n'
        )
        self.bridge.hub.streams[0][1].end("shutdown")
        self.assertTrue(self.received().endswith(b'event: close\ndata: {"reason": "shutdown"}\n\n'))
        await self.body_done
        self.assertEqual(self.bridge.hub.streams, [])

    async def test_last_event_id_reaches_the_hub(self) -> None:
        """A Last-Event-ID header, or ?last_event_id=, is the position the hub resumes after."""
        await self.open_stream(headers={"Last-Event-ID": " 42 "})
        await self.open_stream("?last_event_id=7")
        self.assertEqual([last for _, _, last in self.bridge.hub.streams], [42, 7])

    async def test_bad_last_event_ids_and_queries_are_400(self) -> None:
        """A Last-Event-ID not of ours is 400 "Invalid Last-Event-ID"; unknown query names "Invalid query string"."""
        for headers, path in (
            ({"Last-Event-ID": "abc"}, "/api/sse"),
            ({"Last-Event-ID": "1" * 20}, "/api/sse"),
            ({}, "/api/sse?last_event_id=-1"),
        ):
            self.assertAnswer(await self.request("GET", path, headers=headers), 400, "Invalid Last-Event-ID")
        self.assertAnswer(await self.request("GET", "/api/sse?since=1"), 400, "Invalid query string")
        self.assertEqual(self.bridge.hub.streams, [])

    async def test_stream_without_credentials_is_401(self) -> None:
        """GET /api/sse with neither Basic credentials nor a token is 401 with a Basic challenge."""
        response, body = await self.request("GET", "/api/sse", auth=None)
        self.assertEqual((response.code, body), (401, "Unauthorized"))
        self.assertTrue(response.headers.getRawHeaders("www-authenticate")[0].startswith("Basic "))

    async def test_hub_failure_before_the_stream_starts_is_503(self) -> None:
        """A stream the hub cannot open (the session ended) is 503 "XMPP server unavailable", not a broken stream."""
        self.bridge.hub.failure = ServerUnavailable("the XMPP stream has ended")
        self.assertAnswer(await self.request("GET", "/api/sse"), 503, "XMPP server unavailable")

    async def test_token_route_only_takes_post(self) -> None:
        """GET /api/sse/token is 405 with Allow: POST."""
        response, body = await self.request("GET", "/api/sse/token")
        self.assertEqual((response.code, body), (405, "Method not allowed"))
        self.assertEqual(response.headers.getRawHeaders("allow"), ["POST"])


class StreamsPerUserTests(SseTestCase):
    config = "[limits]\nmax_streams_per_user = 1\n"

    async def test_streams_past_the_per_user_cap_are_429(self) -> None:
        """A user's stream past limits.max_streams_per_user is 429 with Retry-After; other users are not held."""
        self.assertEqual((await self.open_stream()).code, 200)
        response, body = await self.request("GET", "/api/sse")
        self.assertEqual((response.code, body), (429, "Too many event streams for this user"))
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["10"])
        self.assertEqual((await self.open_stream(headers={"Authorization": basic("bob@localhost")})).code, 200)
