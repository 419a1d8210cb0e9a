"""What every path shares: health checks, API docs, CORS, unknown paths, and the request limits."""

from __future__ import annotations

from tests.rest.fakes import BOB, RestTestCase, basic


class HealthTests(RestTestCase):
    async def test_healthz_needs_no_credentials(self) -> None:
        """GET /healthz answers 200 "ok" without credentials."""
        self.assertAnswer(await self.request("GET", "/healthz", auth=None), 200, "ok")

    async def test_readyz_answers_the_readiness_checks(self) -> None:
        """GET /readyz answers the readiness status and body: 200 when ready, 503 when not."""
        self.assertAnswer(
            await self.request("GET", "/readyz", auth=None), 200, {"status": "ready", "checks": {"xmpp": "ok"}}
        )
        self.bridge.readiness.answer = (503, {"status": "not ready", "checks": {"xmpp": "failed"}})
        self.assertAnswer(
            await self.request("GET", "/readyz", auth=None), 503, {"status": "not ready", "checks": {"xmpp": "failed"}}
        )

    async def test_health_routes_take_only_get(self) -> None:
        """POST /healthz is 405 with Allow."""
        response, body = await self.request("POST", "/healthz", {"x": 1}, auth=None)
        self.assertEqual((response.code, body), (405, "Method not allowed"))
        self.assertEqual(response.headers.getRawHeaders("allow"), ["GET, HEAD"])


class DocsTests(RestTestCase):
    async def test_openapi_document_and_page_need_no_credentials(self) -> None:
        """/api-docs is the OpenAPI 3 document as JSON and /api-docs/ an HTML page, both without credentials."""
        response, body = await self.request("GET", "/api-docs", auth=None)
        self.assertEqual(response.code, 200)
        self.assertTrue(body["openapi"].startswith("3."))
        self.assertIn("/messages", str(body["paths"]))
        response, _ = await self.request("GET", "/api-docs/", auth=None)
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.getRawHeaders("content-type")[0].startswith("text/html"))

    async def test_unknown_asset_is_404(self) -> None:
        """An /api-docs/ file that is not vendored is a JSON 404 "Not found"."""
        self.assertAnswer(await self.request("GET", "/api-docs/nope.js", auth=None), 404, "Not found")


class PathTests(RestTestCase):
    async def test_unknown_paths_are_json_404(self) -> None:
        """Paths outside the API are 404 "Not found" in JSON, with or without credentials."""
        for path in ("/api/nope", "/api", "/", "/api/rooms/tea/nope"):
            for auth in (None, ""):
                self.assertAnswer(await self.request("GET", path, auth=auth), 404, "Not found")


class CorsTests(RestTestCase):
    async def test_preflight_needs_no_credentials_and_never_allows_credentials(self) -> None:
        """OPTIONS answers 204 with the methods and headers allowed, the Origin echoed, no Allow-Credentials."""
        response, _ = await self.request(
            "OPTIONS",
            "/api/rooms/tea",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PUT"},
            auth=None,
        )
        self.assertEqual(response.code, 204)
        self.assertEqual(response.headers.getRawHeaders("access-control-allow-origin"), ["https://app.example"])
        self.assertEqual(
            response.headers.getRawHeaders("access-control-allow-methods"), ["GET, POST, PUT, DELETE, OPTIONS"]
        )
        self.assertIn("Authorization", response.headers.getRawHeaders("access-control-allow-headers")[0])
        self.assertIsNone(response.headers.getRawHeaders("access-control-allow-credentials"))
        self.assertEqual(self.bridge.pool.logins, 0)

    async def test_answers_expose_retry_after_and_the_challenge(self) -> None:
        """Answers to an allowed Origin expose Retry-After and WWW-Authenticate to the page, errors included."""
        response, _ = await self.request("GET", "/api/messages", headers={"Origin": "https://app.example"}, auth=None)
        self.assertEqual(response.code, 401)
        self.assertEqual(
            response.headers.getRawHeaders("access-control-expose-headers"), ["Retry-After, WWW-Authenticate"]
        )


class ListedOriginsTests(RestTestCase):
    config = '[http]\ncors_origins = ["https://app.example"]\n'

    async def test_unlisted_origins_get_no_cors_headers(self) -> None:
        """With a cors_origins list, other origins get no Access-Control-Allow-Origin, listed ones get theirs."""
        for origin, allowed in (("https://evil.example", None), ("https://app.example", ["https://app.example"])):
            response, _ = await self.request("GET", "/healthz", headers={"Origin": origin}, auth=None)
            self.assertEqual(response.headers.getRawHeaders("access-control-allow-origin"), allowed, origin)


class RateLimitTests(RestTestCase):
    config = "[limits]\nuser_rate = 1.0\nuser_burst = 2\n"

    async def test_a_user_past_the_rate_is_429_and_others_are_served(self) -> None:
        """Past limits.user_burst a user gets 429 "Too many requests" with Retry-After, until the bucket refills."""
        for _ in range(3):  # the first logs in (not counted), then the burst of two
            self.assertAnswer(await self.request("GET", "/api/contacts"), 200)
        response, body = await self.request("GET", "/api/contacts")
        self.assertEqual((response.code, body), (429, "Too many requests"))
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["1"])
        self.assertAnswer(await self.request("GET", "/api/contacts", auth=basic(BOB)), 200)
        self.bridge.clock.advance(1)
        self.assertAnswer(await self.request("GET", "/api/contacts"), 200)


class SessionCapTests(RestTestCase):
    config = "[limits]\nmax_sessions = 1\n"

    async def test_logins_past_max_sessions_are_503(self) -> None:
        """At limits.max_sessions live sessions a new user's login is 503 "Too many sessions"; users in are served."""
        self.assertAnswer(await self.request("GET", "/api/contacts"), 200)
        response, body = await self.request("GET", "/api/contacts", auth=basic(BOB))
        self.assertEqual((response.code, body), (503, "Too many sessions"))
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["10"])
        self.assertAnswer(await self.request("GET", "/api/contacts"), 200)


class RoutedOnceTests(RestTestCase):
    """Group paths skip the root app's routing, and answer exactly as through it."""

    PATHS = [
        ("GET", "/api/messages?limit=1"),
        ("GET", "/api/messages/"),
        ("GET", "/api/messages/bob@localhost"),
        ("GET", "/api/messages//bob@localhost"),
        ("GET", "/api/%6Dessages"),
        ("GET", "/api/contacts"),
        ("GET", "/api/contactsx"),
        ("GET", "/api/rooms/"),
        ("POST", "/api/rooms//users"),
        ("DELETE", "/api/presence"),
        ("GET", "/api"),
        ("GET", "/api/"),
        ("GET", "/api/nothing/here"),
        ("GET", "/healthz"),
    ]

    async def answers(self) -> list[tuple[int, object]]:
        found = []
        for method, path in self.PATHS:
            response, body = await self.request(method, path)
            found.append((response.code, body))
        return found

    async def test_groups_answer_as_through_the_root_app(self) -> None:
        routed = await self.answers()
        resource = self.bridge.site.resource
        while hasattr(resource, "_wrapped"):
            resource = resource._wrapped
        resource._groups = {}  # every path through the root app's branch routes
        self.assertEqual(routed, await self.answers())
        self.assertEqual(200, routed[0][0])
