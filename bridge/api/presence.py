"""``/api/presence``: the user's own presence and their contacts' (RFC 6121 section 4).

``PUT`` makes the user's session available with ``show`` (``chat``, ``away``, ``xa``, ``dnd``;
absent: plain available), ``status`` and ``priority`` (absent: ``sse.priority``, the
priority a stream's session announces), and answers 204 once the server has it. The
session keeps that presence while it lives (see ``bridge.xmpp.presence``). ``GET`` lists
the contacts currently available, from the presence the session received: a session
that never went available (no ``PUT``, no stream) has received none and lists nobody.
The user's own other resources are not listed (``bridge.protocol.presence``).
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.web.server import Request
from twisted.words.protocols.jabber.jid import JID

from bridge.api.auth import Authenticator
from bridge.api.errors import BadRequest
from bridge.api.input import json_object
from bridge.api.rendering import Response, json_errors, json_route
from bridge.protocol.jid import parse
from bridge.protocol.presence import MAX_PRIORITY, MIN_PRIORITY, SHOWS, PresenceInfo, valid_status
from bridge.xmpp.presence import PresenceTracker, set_presence


def presence_input(body: dict[str, Any], default_priority: int = 0) -> PresenceInfo:
    """The presence a ``PUT`` body asks for; 400 "Invalid show|status|priority" otherwise."""
    show = body.get("show")
    if show is not None and (not isinstance(show, str) or show not in SHOWS):
        raise BadRequest("Invalid show")
    status = body.get("status")
    if status is not None and (not isinstance(status, str) or not valid_status(status)):
        raise BadRequest("Invalid status")
    priority = body.get("priority", default_priority)
    if (
        priority is None
        or isinstance(priority, bool)
        or not isinstance(priority, int)
        or not MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        raise BadRequest("Invalid priority")
    return PresenceInfo(show, status or None, priority)


class PresenceApi:
    app = json_errors(Klein())

    def __init__(self, auth: Authenticator, room_service: str, default_priority: int = 0) -> None:
        self._auth = auth
        # Told the session's full JID when it first goes available, as a stream's session does.
        service = parse(room_service)
        self._services: list[JID] = [service] if service is not None else []
        self._default_priority = default_priority

    @app.route("/", methods=["PUT"], strict_slashes=False)
    @json_route
    async def set_own(self, request: Request) -> Response:
        session = await self._auth.session(request)
        info = presence_input(json_object(request), self._default_priority)
        await set_presence(session, info, self._services)
        return Response(204)

    @app.route("/", methods=["GET"], strict_slashes=False)
    @json_route
    async def contacts(self, request: Request) -> list[dict[str, Any]]:
        session = await self._auth.session(request)
        return session.get(PresenceTracker).as_json()
