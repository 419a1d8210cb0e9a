"""The root of the API: the ``/api`` tree, the health checks and the API's documents.

Each resource group is its own Klein app (``messages``, ...), mounted here with
``branch=True``. The concerns every path shares (CORS, limits, checks before routing,
metrics, the access log) sit around this resource, in ``bridge.http``.
"""

from __future__ import annotations

from dataclasses import dataclass

from klein import Klein
from twisted.web.resource import Resource
from twisted.web.server import Request

from bridge.api.contacts import ContactsApi
from bridge.api.docs import DocsApi
from bridge.api.errors import write_json
from bridge.api.messages import MessagesApi
from bridge.api.presence import PresenceApi
from bridge.api.push import PushApi
from bridge.api.rendering import json_errors
from bridge.api.rooms import RoomsApi
from bridge.api.sse import SseApi
from bridge.api.uploads import UploadsApi
from bridge.http.readiness import Readiness


@dataclass
class ApiGroups:
    """The mounted resource groups; each issue's capability adds one."""

    messages: MessagesApi
    sse: SseApi
    contacts: ContactsApi
    rooms: RoomsApi
    presence: PresenceApi
    uploads: UploadsApi
    push: PushApi


class BridgeApi:
    """The root Klein app: mounts every group under ``/api`` and answers health checks."""

    app = json_errors(Klein())

    def __init__(self, groups: ApiGroups, readiness: Readiness | None = None) -> None:
        self._groups = groups
        self._readiness = readiness
        self._docs = DocsApi()

    @app.route("/api/messages", branch=True)
    def messages(self, request: Request) -> Resource:
        return self._groups.messages.app.resource()

    @app.route("/api/contacts", branch=True)
    def contacts(self, request: Request) -> Resource:
        return self._groups.contacts.app.resource()

    @app.route("/api/rooms", branch=True)
    def rooms(self, request: Request) -> Resource:
        return self._groups.rooms.app.resource()

    @app.route("/api/presence", branch=True)
    def presence(self, request: Request) -> Resource:
        return self._groups.presence.app.resource()

    @app.route("/api/uploads", branch=True)
    def uploads(self, request: Request) -> Resource:
        return self._groups.uploads.app.resource()

    @app.route("/api/push", branch=True)
    def push(self, request: Request) -> Resource:
        return self._groups.push.app.resource()

    @app.route("/api/sse", branch=True)
    def sse(self, request: Request) -> Resource:
        return self._groups.sse.app.resource()

    @app.route("/healthz", methods=["GET"])
    def healthz(self, request: Request) -> bytes:
        return write_json(request, 200, "ok")

    @app.route("/readyz", methods=["GET"])
    async def readyz(self, request: Request) -> bytes:
        if self._readiness is None:
            return write_json(request, 200, {"status": "ready", "checks": {}})
        status, body = await self._readiness.status()
        return write_json(request, status, body)

    @app.route("/api-docs", methods=["GET"])
    def api_document(self, request: Request) -> bytes:
        return self._docs.document(request)

    @app.route("/api-docs/", methods=["GET"])
    def api_page(self, request: Request) -> bytes:
        return self._docs.page(request)

    @app.route("/api-docs/<string:name>", methods=["GET"])
    def api_page_asset(self, request: Request, name: str) -> bytes:
        return self._docs.asset(request, name)
