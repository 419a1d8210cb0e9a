"""``/api/push``: webhooks for offline notifications (XEP-0357, the bridge as app server).

``POST {url}`` answers ``201 {"id", "secret"}``: the secret signs every notification
(``X-Bridge-Signature``) and is shown only here. ``GET`` lists ``[{id, url}]``,
``DELETE /{id}`` removes one (204, or 404). With ``[push] enabled = false`` every route
answers 404 "Push notifications are not enabled" and nothing is sent to the server.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.web.server import Request

from bridge.api.auth import Authenticator
from bridge.api.errors import ApiError, BadRequest, NotFound
from bridge.api.input import json_object
from bridge.api.rendering import Response, json_errors, json_route
from bridge.push.registry import PushRegistry, TooManyWebhooks
from bridge.push.urls import HostNotAllowed, InvalidUrl

NOT_ENABLED = "Push notifications are not enabled"
INVALID_URL = "Invalid webhook URL"
HOST_NOT_ALLOWED = "Webhook host not allowed"
# Ids are ours (``secrets.token_hex(8)``); anything else cannot name a webhook.
MAX_ID = 64


class PushApi:
    app = json_errors(Klein())

    def __init__(self, auth: Authenticator, registry: PushRegistry | None) -> None:
        self._auth = auth
        self._registry = registry

    def _enabled(self) -> PushRegistry:
        if self._registry is None:
            raise NotFound(NOT_ENABLED)
        return self._registry

    @app.route("/", methods=["POST"], strict_slashes=False)
    @json_route
    async def register(self, request: Request) -> Response:
        session = await self._auth.session(request)
        registry = self._enabled()
        url = json_object(request).get("url")
        try:
            webhook = await registry.register(session, url)
        except InvalidUrl:
            raise BadRequest(INVALID_URL) from None
        except HostNotAllowed:
            raise ApiError(403, HOST_NOT_ALLOWED) from None
        except TooManyWebhooks:
            raise ApiError(409, "Too many webhooks") from None
        return Response(201, {"id": webhook.webhook_id, "secret": webhook.secret})

    @app.route("/", methods=["GET"], strict_slashes=False)
    @json_route
    async def list_webhooks(self, request: Request) -> list[dict[str, Any]]:
        session = await self._auth.session(request)
        webhooks = await self._enabled().webhooks(session.jid.userhost())
        return [{"id": webhook.webhook_id, "url": webhook.url} for webhook in webhooks]

    @app.route("/<string:webhook_id>", methods=["DELETE"])
    @json_route
    async def remove(self, request: Request, webhook_id: str) -> Response:
        session = await self._auth.session(request)
        registry = self._enabled()
        if len(webhook_id) > MAX_ID or not await registry.remove(session, webhook_id):
            raise NotFound("Webhook not found")
        return Response(204)
