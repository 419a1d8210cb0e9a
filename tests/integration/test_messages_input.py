"""Bad, hostile and oversized input to /api/messages gets a clear 4xx and loses nothing."""

from __future__ import annotations

from base64 import b64encode

from tests.integration.base import BridgeTestCase


class SendInputTests(BridgeTestCase):
    async def assertRejected(self, body: object, message: str, raw: bytes | None = None) -> None:
        user = self.user
        reply = await self.call(
            "POST", "/api/messages", user, body=body, raw=raw, headers={"Content-Type": "application/json"}
        )
        self.assertEqual((reply.code, reply.json), (400, message), reply)
        self.assertEqual(reply.header("Content-Type"), "application/json; charset=utf-8")

    async def test_missing_and_invalid_fields(self) -> None:
        """Each malformed send gets DESIGN.md's 400 message."""
        self.user = self.new_user()
        bob = "bob@localhost"
        await self.assertRejected({"body": "x"}, "Missing recipient JID")
        await self.assertRejected({"to": "", "body": "x"}, "Missing recipient JID")
        await self.assertRejected({"to": bob}, "Missing message body")
        await self.assertRejected({"to": bob, "body": ""}, "Missing message body")
        await self.assertRejected({"to": bob, "body": 5}, "Invalid message body")
        await self.assertRejected({"to": bob, "body": ["x"]}, "Invalid message body")
        await self.assertRejected({"to": bob, "body": "nul \x00 byte"}, "Invalid message body")
        await self.assertRejected({"to": bob, "body": "lone \ud800 surrogate"}, "Invalid message body")
        for bad_jid in (
            "not a jid",
            "@localhost",
            "bob@",
            "bob@localhost/res",
            "a" * 2000 + "@localhost",
            "<bob>@localhost",
            12,
            ["bob@localhost"],
            {"jid": "x"},
            "bob@local host",
            "bob@\x01",
            "bob@a..b",
            "bob@-x-",
        ):
            await self.assertRejected({"to": bad_jid, "body": "x"}, "Invalid recipient JID")
        await self.assertRejected({"to": bob, "body": "x", "properties": ["a"]}, "Invalid properties")
        await self.assertRejected({"to": bob, "body": "x", "properties": {"a": None}}, "Invalid properties")
        await self.assertRejected({"to": bob, "body": "x", "properties": {"a": 2**63}}, "Invalid properties")
        await self.assertRejected({"to": bob, "body": "x", "properties": {"a": [1]}}, "Invalid properties")
        await self.assertRejected({"to": bob, "body": "x", "properties": {"": "v"}}, "Invalid properties")
        await self.assertRejected({"to": bob, "body": "x", "properties": {"a": {"b": "c"}}}, "Invalid properties")
        await self.assertRejected(
            {"to": bob, "body": "x", "properties": {f"p{n}": "v" for n in range(65)}}, "Invalid properties"
        )
        await self.assertRejected({"to": bob, "body": "x", "thread": 3}, "Invalid thread")
        await self.assertRejected({"to": bob, "body": "x", "parent": "p"}, "Invalid parent: a parent needs a thread")

    async def test_malformed_json(self) -> None:
        """Bodies that are not a JSON object get 400, never 500."""
        self.user = self.new_user()
        await self.assertRejected(None, "Invalid JSON", raw=b"{not json")
        await self.assertRejected(None, "Invalid JSON: expected an object", raw=b'["to", "body"]')
        await self.assertRejected(None, "Invalid JSON: expected an object", raw=b'"hello"')
        await self.assertRejected(None, "Invalid JSON", raw=b"\xff\xfe\x00garbage")
        await self.assertRejected(None, "Invalid JSON", raw=b"[" * 100_00 + b"]" * 100_00)
        await self.assertRejected(None, "Missing recipient JID", raw=b"")

    async def test_oversized_body(self) -> None:
        """A body over http.max_body gets 413 before it is read."""
        user = self.new_user()
        huge = b'{"to": "bob@localhost", "body": "' + b"x" * 100_000 + b'"}'
        reply = await self.call("POST", "/api/messages", user, raw=huge)
        self.assertEqual(reply.code, 413)
        self.assertEqual(reply.json, "Request body too large")

    async def test_large_body_within_limit(self) -> None:
        """A 40 KB message body within the limit is delivered whole, XML characters intact."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        text = ("<&>'\"" * 10_000)[:40_000]
        reply = await self.call("POST", "/api/messages", alice, {"to": bob[0], "body": text})
        self.assertEqual(reply.code, 200, reply)
        history = await self.call("GET", "/api/messages?limit=1", bob)
        self.assertEqual(history.json[0]["body"], text)


class QueryInputTests(BridgeTestCase):
    async def test_bad_query_strings(self) -> None:
        """limit, before and unknown parameters are checked with DESIGN.md's messages."""
        user = self.new_user()
        for query, message in (
            ("limit=abc", "Invalid limit"),
            ("limit=-1", "Invalid limit"),
            ("limit=501", "Invalid limit"),
            ("limit=1.5", "Invalid limit"),
            ("limit=99999999999999999999", "Invalid limit"),
            ("limit=%D9%A3", "Invalid limit"),
            ("before=yesterday", "Invalid value of 'before'"),
            ("before=-5", "Invalid value of 'before'"),
            ("before=", "Invalid value of 'before'"),
            ("limit=1&limit=2", "Invalid query string"),
            ("color=red", "Invalid query string"),
            ("limit=%ff", "Invalid query string"),
        ):
            reply = await self.call("GET", f"/api/messages?{query}", user)
            self.assertEqual((reply.code, reply.json), (400, message), query)

    async def test_before_past_year_9999(self) -> None:
        """A before past 10000-01-01 is 400 "Invalid value of 'before'", not a 500; that instant itself is fine."""
        user = self.new_user()
        for path in ("/api/messages", "/api/messages/bob@localhost"):
            for before in ("253402300800001", "999999999999999"):
                reply = await self.call("GET", f"{path}?before={before}", user)
                self.assertEqual((reply.code, reply.json), (400, "Invalid value of 'before'"), (path, before))
            reply = await self.call("GET", f"{path}?before=253402300800000", user)
            self.assertEqual((reply.code, reply.json), (200, []), path)

    async def test_bad_interlocutor(self) -> None:
        """GET /api/messages/{with} with a bad JID gets 400 "Invalid interlocutor JID"."""
        user = self.new_user()
        for bad in ("not%20a%20jid", "@localhost", "bob@", "%3Cx%3E@localhost", "bob@localhost%2Fres"):
            reply = await self.call("GET", f"/api/messages/{bad}", user)
            self.assertEqual((reply.code, reply.json), (400, "Invalid interlocutor JID"), bad)

    async def test_unknown_method_and_path(self) -> None:
        """Unknown paths give 404 and unsupported methods 405, in JSON."""
        user = self.new_user()
        reply = await self.call("DELETE", "/api/messages", user)
        self.assertEqual((reply.code, reply.json), (405, "Method not allowed"))
        self.assertIn("GET", reply.header("Allow") or "")
        reply = await self.call("GET", "/api/nothing-here", user)
        self.assertEqual((reply.code, reply.json), (404, "Not found"))


class AuthenticationTests(BridgeTestCase):
    bridge_sections = {"throttle": {"failures_per_jid": 3, "failures_per_address": 6}}

    async def test_missing_and_malformed_credentials(self) -> None:
        """No, malformed or foreign-domain credentials get 401 with WWW-Authenticate: Basic."""
        for headers in (
            {},
            {"Authorization": "Bearer abc"},
            {"Authorization": "Basic %%%"},
            {"Authorization": "Basic " + b64encode(b"alice@localhost").decode()},
            {"Authorization": "Basic " + b64encode(b"alice@example.org:pw").decode()},
            {"Authorization": "Basic " + "A" * 10_000},
        ):
            reply = await self.call("GET", "/api/messages", headers=headers)
            self.assertEqual(reply.code, 401, headers)
            self.assertEqual(reply.header("WWW-Authenticate"), 'Basic realm="xmpp-rest-bridge", charset="UTF-8"')

    async def test_wrong_password_then_throttled(self) -> None:
        """Wrong passwords get 401; past the per-JID limit, 429 with Retry-After, even for the right one."""
        jid, password = self.new_user()
        for _ in range(3):
            reply = await self.call("GET", "/api/messages", (jid, "wrong"))
            self.assertEqual(reply.code, 401)
        reply = await self.call("GET", "/api/messages", (jid, password))
        self.assertEqual(reply.code, 429)
        self.assertGreater(int(reply.header("Retry-After") or 0), 0)

    async def test_live_session_is_not_locked_out(self) -> None:
        """A user with a live session keeps working while someone at another address guesses their password.

        DESIGN.md: once the JID itself is throttled (here after 3 failures from anywhere) every
        attempt gets 429, live session or not; and from the guesser's own address the user would
        get the guesser's 429. So the guesser here stays below the JID's limit, elsewhere.
        """
        from treq.client import HTTPClient
        from twisted.internet import reactor
        from twisted.web.client import Agent, HTTPConnectionPool

        from tests.integration.base import basic

        jid, password = self.new_user()
        self.assertEqual((await self.call("GET", "/api/messages", (jid, password))).code, 200)
        pool = HTTPConnectionPool(reactor, persistent=False)
        guesser = HTTPClient(Agent(reactor, pool=pool, bindAddress=("127.0.0.2", 0)))
        for _ in range(2):
            guess = {"Authorization": [basic(jid, "guess")]}
            response = await guesser.get(self.bridge.url("/api/messages"), headers=guess)
            await response.content()
            self.assertEqual(response.code, 401)
            self.assertEqual((await self.call("GET", "/api/messages", (jid, password))).code, 200)

    async def test_address_throttle(self) -> None:
        """Failures across many JIDs from one address are throttled per address."""
        for n in range(6):
            await self.call("GET", "/api/messages", (f"nobody{n}@localhost", "x"))
        jid, password = self.new_user()
        reply = await self.call("GET", "/api/messages", (jid, password))
        self.assertEqual(reply.code, 429)

    async def test_jid_is_normalised(self) -> None:
        """Alice@LOCALHOST logs in as alice@localhost (stringprep)."""
        jid, password = self.new_user()
        user, domain = jid.split("@")
        reply = await self.call(
            "POST", "/api/messages", (f"{user.upper()}@{domain.upper()}", password), {"to": jid, "body": "note to self"}
        )
        self.assertEqual(reply.code, 200, reply)
        history = await self.call("GET", "/api/messages?limit=1", (jid, password))
        self.assertEqual(history.json[0]["from"], jid)

    async def test_many_logins_from_one_address(self) -> None:
        """50 users logging in at once from one address are all served (throttling counts only failures)."""
        from twisted.internet import defer

        users = [self.new_user("crowd") for _ in range(50)]
        replies = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(self.call("GET", "/api/messages", user)) for user in users]
        )
        self.assertEqual({reply.code for reply in replies}, {200})


class CorsTests(BridgeTestCase):
    async def test_preflight_without_credentials(self) -> None:
        """OPTIONS answers CORS pre-flight for any origin without credentials."""
        reply = await self.call(
            "OPTIONS",
            "/api/messages",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
            },
        )
        self.assertEqual(reply.code, 204)
        self.assertEqual(reply.header("Access-Control-Allow-Origin"), "https://app.example.com")
        for method in ("GET", "POST", "PUT", "DELETE"):
            self.assertIn(method, reply.header("Access-Control-Allow-Methods") or "")
        self.assertIn("Authorization", reply.header("Access-Control-Allow-Headers") or "")

    async def test_actual_request_carries_cors_headers(self) -> None:
        """Answers, errors included, carry Access-Control-Allow-Origin for an allowed origin."""
        reply = await self.call("GET", "/api/messages", headers={"Origin": "https://app.example.com"})
        self.assertEqual(reply.code, 401)
        self.assertEqual(reply.header("Access-Control-Allow-Origin"), "https://app.example.com")


class CorsAllowListTests(BridgeTestCase):
    bridge_sections = {"http": {"cors_origins": ["https://good.example"]}}

    async def test_unlisted_origin_gets_no_cors(self) -> None:
        """With an allow-list, other origins get no Access-Control-Allow-Origin."""
        good = await self.call("OPTIONS", "/api/messages", headers={"Origin": "https://good.example"})
        self.assertEqual(good.header("Access-Control-Allow-Origin"), "https://good.example")
        bad = await self.call("OPTIONS", "/api/messages", headers={"Origin": "https://evil.example"})
        self.assertIsNone(bad.header("Access-Control-Allow-Origin"))


class HealthTests(BridgeTestCase):
    async def test_healthz(self) -> None:
        """/healthz answers 200 without credentials."""
        reply = await self.call("GET", "/healthz")
        self.assertEqual((reply.code, reply.json), (200, "ok"))
