"""The root of the API: the ``/api`` tree, the health checks and the API's documents.

Each resource group is its own Klein app (``messages``, ...), mounted here with
``branch=True``. The concerns every path shares (CORS, limits, checks before routing,
metrics, the access log) sit around this resource, in ``bridge.http``.

``BridgeApi.resource`` routes once: ``/api/<group>/...`` goes straight to that group's
app, so its map is the only one that matches the path (through the root's branch routes a
request was matched twice, and got a new resource for its group each time; 8 % of the
CPU of ``POST /api/messages``). The root app answers everything else: health checks,
documents, unknown paths, and group paths in a spelling only Werkzeug decodes
(``/api/%6Dessages``), through the same branch routes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

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
        self._readiness = readiness
        self._docs = DocsApi()
        # Each group's resource, made once: a KleinResource keeps nothing of a request.
        self._groups: dict[str, Resource] = {
            each.name: getattr(groups, each.name).app.resource() for each in fields(groups)
        }

    def resource(self) -> Resource:
        """The API's resource, for the site."""
        return _RoutedOnce(self.app.resource(), self._groups)

    @app.route("/api/messages", branch=True)
    def messages(self, request: Request) -> Resource:
        return self._groups["messages"]

    @app.route("/api/contacts", branch=True)
    def contacts(self, request: Request) -> Resource:
        return self._groups["contacts"]

    @app.route("/api/rooms", branch=True)
    def rooms(self, request: Request) -> Resource:
        return self._groups["rooms"]

    @app.route("/api/presence", branch=True)
    def presence(self, request: Request) -> Resource:
        return self._groups["presence"]

    @app.route("/api/uploads", branch=True)
    def uploads(self, request: Request) -> Resource:
        return self._groups["uploads"]

    @app.route("/api/push", branch=True)
    def push(self, request: Request) -> Resource:
        return self._groups["push"]

    @app.route("/api/sse", branch=True)
    def sse(self, request: Request) -> Resource:
        return self._groups["sse"]

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


class _RoutedOnce(Resource):
    """``/api/<group>/...`` to the group's resource, the rest to the root app's (see module doc)."""

    isLeaf = True

    def __init__(self, root: Resource, groups: dict[str, Resource]) -> None:
        super().__init__()
        self._root = root
        self._groups = {b"api/" + name.encode("ascii"): group for name, group in groups.items()}

    def render(self, request: Request) -> bytes | int:
        path = request.postpath or []
        # What the branch routes take: the group's path alone, or followed by a segment
        # that is not empty (``/api/rooms//users`` and ``/api/rooms/`` are the root's 404).
        mounted = len(path) == 2 or (len(path) > 2 and path[2] != b"")
        group = self._groups.get(b"/".join(path[:2])) if mounted else None
        if group is None:
            result: bytes | int = self._root.render(request)
            return result
        # As Klein's branch routes leave it: the group's app sees the rest of the path.
        request.prepath = (request.prepath or []) + path[:2]
        request.postpath = path[2:]
        result = group.render(request)
        return result
