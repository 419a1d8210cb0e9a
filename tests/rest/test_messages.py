"""``/api/messages`` (DESIGN.md's REST table): send, archive reads, and how failures are answered.

Authentication answers (401, 429 from the login throttle) and the XMPP-side failures (503,
504, 501, stanza errors, 500) are the same for every route; they are covered here once.
"""

from __future__ import annotations

from tests.rest.fakes import (
    ALICE,
    BOB,
    FeatureUnavailable,
    RestTestCase,
    ServerTimeout,
    ServerUnavailable,
    StanzaError,
    archived,
    basic,
)


class SendTests(RestTestCase):
    async def test_send_answers_the_id_of_the_stanza_sent(self) -> None:
        """POST /api/messages sends one chat message to the recipient and answers 200 with its id."""
        response, body = await self.request("POST", "/api/messages", {"to": BOB, "body": "hi"})
        self.assertEqual(response.code, 200)
        (sent,) = self.bridge.session().sent
        self.assertEqual(body, {"id": sent["id"]})
        self.assertEqual((sent["to"], sent["type"], str(sent.body)), (BOB, "chat", "hi"))

    async def test_missing_and_invalid_fields_are_400_with_the_contract_strings(self) -> None:
        """Each missing or malformed field gets its own 400 string, and nothing is sent."""
        cases = [
            ({"body": "hi"}, "Missing recipient JID"),
            ({"to": "", "body": "hi"}, "Missing recipient JID"),
            ({"to": "not a jid@", "body": "hi"}, "Invalid recipient JID"),
            ({"to": 42, "body": "hi"}, "Invalid recipient JID"),
            ({"to": "bob@localhost/phone", "body": "hi"}, "Invalid recipient JID"),
            ({"to": BOB}, "Missing message body"),
            ({"to": BOB, "body": ""}, "Missing message body"),
            ({"to": BOB, "body": 5}, "Invalid message body"),
        ]
        for body, message in cases:
            self.assertAnswer(await self.request("POST", "/api/messages", body), 400, message)
        self.assertEqual(self.bridge.session().sent, [])

    async def test_client_id_becomes_the_stanza_id(self) -> None:
        """A client id of 1-64 characters of [A-Za-z0-9_.:-] is the sent stanza's id and the answer's."""
        for client_id in ("a", "retry:2024-01-01_x.1", "x" * 64):
            self.bridge.session().sent.clear()
            answer = await self.request("POST", "/api/messages", {"to": BOB, "body": "hi", "id": client_id})
            self.assertAnswer(answer, 200, {"id": client_id})
            (sent,) = self.bridge.session().sent
            self.assertEqual(sent["id"], client_id)

    async def test_invalid_client_ids_are_400(self) -> None:
        """An id that is not a string, empty, over 64 characters or with other characters is 400 "Invalid id"."""
        for client_id in (5, True, ["a"], {}, "", "x" * 65, "a b", "a/b", "caf\u00e9", "a\n", "a@b", "<x>"):
            answer = await self.request("POST", "/api/messages", {"to": BOB, "body": "hi", "id": client_id})
            self.assertAnswer(answer, 400, "Invalid id")
        self.assertEqual(self.bridge.session().sent, [])

    async def test_bodies_that_are_not_a_json_object_are_400(self) -> None:
        """A body that does not parse, or is not an object, is 400 "Invalid JSON"."""
        json_type = {"Content-Type": "application/json"}
        answer = await self.request("POST", "/api/messages", headers=json_type, data=b"{nope")
        self.assertAnswer(answer, 400, "Invalid JSON")
        answer = await self.request("POST", "/api/messages", headers=json_type, data=b"[1]")
        self.assertAnswer(answer, 400, "Invalid JSON: expected an object")

    async def test_body_not_declared_json_is_415(self) -> None:
        """A body sent as text/plain (a cross-site form) is 415 before anything is sent."""
        answer = await self.request(
            "POST", "/api/messages", headers={"Content-Type": "text/plain"}, data=b'{"to": "bob@localhost"}'
        )
        self.assertAnswer(answer, 415, "Content-Type must be application/json")
        self.assertEqual(self.bridge.pool.logins, 0)

    async def test_other_methods_are_405_with_allow(self) -> None:
        """PUT and DELETE on /api/messages are 405 "Method not allowed" with the methods in Allow."""
        for method in ("PUT", "DELETE"):
            response, body = await self.request(method, "/api/messages", {"to": BOB})
            self.assertEqual((response.code, body), (405, "Method not allowed"), method)
            self.assertEqual(response.headers.getRawHeaders("allow"), ["GET, HEAD, POST"])


class BodyLimitTests(RestTestCase):
    config = "[http]\nmax_body = 100\n"

    async def test_body_over_max_body_is_413(self) -> None:
        """A body over http.max_body is answered 413 "Request body too large" before it is read."""
        answer = await self.request("POST", "/api/messages", {"to": BOB, "body": "x" * 200})
        self.assertAnswer(answer, 413, "Request body too large")
        self.assertEqual(self.bridge.pool.logins, 0)


class AuthenticationTests(RestTestCase):
    async def test_missing_or_wrong_credentials_are_401_with_a_basic_challenge(self) -> None:
        """No, wrong or malformed credentials, or a foreign domain: 401 with WWW-Authenticate: Basic."""
        for auth in (None, basic(ALICE, "wrong"), basic("eve@elsewhere.example"), "Basic !!!", "Bearer x"):
            response, body = await self.request("GET", "/api/messages", auth=auth)
            self.assertEqual((response.code, body), (401, "Unauthorized"), auth)
            self.assertEqual(
                response.headers.getRawHeaders("www-authenticate"),
                ['Basic realm="xmpp-rest-bridge", charset="UTF-8"'],
            )

    async def test_repeated_failures_are_429_whatever_the_password(self) -> None:
        """After three wrong passwords from one address the JID gets 429 with Retry-After, the right password too."""
        for _ in range(3):
            self.assertAnswer(await self.request("GET", "/api/messages", auth=basic(ALICE, "wrong")), 401)
        logins = self.bridge.pool.logins
        for password in ("wrong", "secret"):
            response, body = await self.request("GET", "/api/messages", auth=basic(ALICE, password))
            self.assertEqual((response.code, body), (429, "Too many failed login attempts"), password)
            self.assertTrue(int(response.headers.getRawHeaders("retry-after")[0]) > 0)
        self.assertEqual(self.bridge.pool.logins, logins, "a throttled attempt reached the server")
        self.assertAnswer(await self.request("GET", "/api/messages", auth=basic(BOB)), 200)


class ServerFailureTests(RestTestCase):
    async def test_unreachable_server_at_login_is_503_with_retry_after(self) -> None:
        """A login that cannot reach the XMPP server is 503 "XMPP server unavailable" with Retry-After: 5."""
        self.bridge.pool.login_failure = ServerUnavailable("cannot reach the XMPP server")
        response, body = await self.request("POST", "/api/messages", {"to": BOB, "body": "hi"})
        self.assertEqual((response.code, body), (503, "XMPP server unavailable"))
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["5"])

    async def test_login_timeout_is_504(self) -> None:
        """A login the server does not answer in time is 504 "XMPP server timeout"."""
        self.bridge.pool.login_failure = ServerTimeout("logging in took too long")
        self.assertAnswer(await self.request("GET", "/api/messages"), 504, "XMPP server timeout")

    async def test_stream_ending_under_a_send_is_503_and_a_silent_server_504(self) -> None:
        """A send whose stream ends is 503, and one whose round trip times out is 504."""
        session = self.bridge.session()
        session.failure = ServerUnavailable("the XMPP stream has ended")
        self.assertAnswer(await self.request("POST", "/api/messages", {"to": BOB, "body": "hi"}), 503)
        session.failure = ServerTimeout("the XMPP server did not answer in time")
        answer = await self.request("POST", "/api/messages", {"to": BOB, "body": "hi"})
        self.assertAnswer(answer, 504, "XMPP server timeout")

    async def test_stanza_errors_map_by_condition(self) -> None:
        """Stanza errors become 400, 403, 404, 501, 503 or 504 by condition, with the server's text when it gave one."""
        session = self.bridge.session()
        cases = [
            (StanzaError("bad-request"), 400, "Bad request"),
            (StanzaError("forbidden", text="No archive for you"), 403, "No archive for you"),
            (StanzaError("not-allowed"), 403, "Not allowed"),
            (StanzaError("item-not-found"), 404, "Item not found"),
            (StanzaError("feature-not-implemented"), 501, "Feature not implemented"),
            (StanzaError("service-unavailable"), 503, "Service unavailable"),
            (StanzaError("remote-server-timeout"), 504, "Remote server timeout"),
        ]
        for error, status, message in cases:
            session.failure = error
            self.assertAnswer(await self.request("GET", "/api/messages"), status, message)

    async def test_server_without_mam_is_501(self) -> None:
        """Reading the archive of a server without XEP-0313 is 501 with the reason."""
        self.bridge.session().failure = FeatureUnavailable("the XMPP server has no message archive (XEP-0313)")
        answer = await self.request("GET", "/api/messages")
        self.assertAnswer(answer, 501, "the XMPP server has no message archive (XEP-0313)")

    async def test_unexpected_errors_are_a_bare_500_and_logged(self) -> None:
        """An unexpected exception is 500 "Internal server error" without its text, and its traceback is logged."""
        self.bridge.session().failure = RuntimeError("secret internals")
        self.assertAnswer(await self.request("GET", "/api/messages"), 500, "Internal server error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ArchiveTests(RestTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.archive = self.bridge.session().archive
        self.archive.messages = [
            archived(BOB, ALICE, "first", 1000, "a1"),
            archived(ALICE, BOB, "second", 2000, "a2"),
        ]

    async def test_recent_messages_oldest_first(self) -> None:
        """GET /api/messages answers the archive as RecvMessage JSON, oldest first, asking for 50 by default."""
        response, body = await self.request("GET", "/api/messages")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            body,
            [
                {"id": "a1", "from": BOB, "to": ALICE, "timestamp": 1000, "body": "first"},
                {"id": "a2", "from": ALICE, "to": BOB, "timestamp": 2000, "body": "second"},
            ],
        )
        self.assertEqual(self.archive.queries, [(None, None, 50)])

    async def test_limit_and_before_reach_the_archive_query(self) -> None:
        """``limit`` is passed on and ``before`` (ms) becomes an end one millisecond earlier; a contact filters."""
        self.assertAnswer(await self.request("GET", "/api/messages/bob@localhost?limit=1&before=2000"), 200)
        self.assertEqual(self.archive.queries, [(BOB, 1999, 1)])

    async def test_before_the_epoch_is_an_empty_answer(self) -> None:
        """``before=0`` answers [] without asking the server (nothing is older than 1970)."""
        self.assertAnswer(await self.request("GET", "/api/messages?before=0"), 200, [])
        self.assertEqual(self.archive.queries, [])

    async def test_bad_query_strings_are_400(self) -> None:
        """Bad ``limit``, ``before``, unknown or repeated names and bad contacts get the contract's 400 strings."""
        cases = [
            ("/api/messages?limit=501", "Invalid limit"),
            ("/api/messages?limit=-1", "Invalid limit"),
            ("/api/messages?limit=ten", "Invalid limit"),
            ("/api/messages?before=yesterday", "Invalid value of 'before'"),
            ("/api/messages?before=1.5", "Invalid value of 'before'"),
            ("/api/messages?page=2", "Invalid query string"),
            ("/api/messages?limit=1&limit=2", "Invalid query string"),
            ("/api/messages?kuropatwa", "Invalid query string"),
            ("/api/messages/not%20a%20jid@", "Invalid interlocutor JID"),
            ("/api/messages/bob@localhost/phone", "Invalid interlocutor JID"),
            ("/api/messages/bob@localhost?limit=x", "Invalid limit"),
        ]
        for path, message in cases:
            self.assertAnswer(await self.request("GET", path), 400, message)
        self.assertEqual(self.archive.queries, [])
