"""``/api/messages``: send one-to-one messages and read them back from the user's archive."""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.web.server import Request

from bridge.api.auth import Authenticator
from bridge.api.errors import BadRequest
from bridge.api.input import (
    archive_window,
    chat_marker,
    chat_state,
    client_id,
    json_object,
    markable,
    message_properties,
    oob_url,
    optional_text,
    parse_jid,
    text,
)
from bridge.api.rendering import json_errors, json_route
from bridge.protocol.convert import build_message, message_to_json
from bridge.xmpp.archive import ArchiveClient
from bridge.xmpp.messages import send_acknowledged


def message_content(body: dict[str, Any]) -> tuple[str | None, bool, dict[str, str] | None, str | None]:
    """(body, markable, chat_marker, chat_state) of a one-to-one message.

    The body may be left out when a marker or a chat state is given; with none of the three
    it is 400 "Missing message body", as MongooseIM answered. With an ``oob_url`` it
    defaults to the URL (XEP-0066, as Conversations sends attachments).
    """
    marker, state = chat_marker(body), chat_state(body)
    is_markable = markable(body)
    attachment = oob_url(body)
    if body.get("body") in (None, "") and attachment is not None:
        return attachment, is_markable, marker, state
    if body.get("body") in (None, "") and (marker is not None or state is not None):
        return None, False, marker, state
    text_body = text(body, "body", "Missing message body", "Invalid message body")
    return text_body, is_markable, marker, state


class MessagesApi:
    app = json_errors(Klein())

    def __init__(self, auth: Authenticator) -> None:
        self._auth = auth

    @app.route("/", methods=["POST"], strict_slashes=False)
    @json_route
    async def send(self, request: Request) -> dict[str, str]:
        session = await self._auth.session(request)
        body = json_object(request)
        if body.get("to") in (None, ""):
            raise BadRequest("Missing recipient JID")
        to = parse_jid(body["to"], "Invalid recipient JID")
        content, is_markable, marker, state = message_content(body)
        message = build_message(
            to,
            content,
            thread=optional_text(body, "thread", "Invalid thread"),
            parent=optional_text(body, "parent", "Invalid parent"),
            properties=message_properties(body),
            markable=is_markable,
            chat_marker=marker,
            chat_state=state,
            oob_url=oob_url(body),
            message_id=client_id(body),
        )
        if body.get("parent") is not None and body.get("thread") is None:
            raise BadRequest("Invalid parent: a parent needs a thread")
        await send_acknowledged(session, message)
        return {"id": message["id"]}

    @app.route("/", methods=["GET"], strict_slashes=False)
    @json_route
    async def recent(self, request: Request) -> list[dict[str, Any]]:
        return await self._archive(request, None)

    @app.route("/<path:with_jid>", methods=["GET"])
    @json_route
    async def with_contact(self, request: Request, with_jid: str) -> list[dict[str, Any]]:
        return await self._archive(request, with_jid)

    async def _archive(self, request: Request, with_jid: str | None) -> list[dict[str, Any]]:
        session = await self._auth.session(request)
        contact = None if with_jid is None else parse_jid(with_jid, "Invalid interlocutor JID")
        limit, before = archive_window(request)
        end = None if before is None else before - 1
        if end is not None and end < 0:
            # Nothing is older than the epoch; and Prosody 0.12's MAM fails on a pre-1970
            # 'end' without answering, which would cost the client a 504 (found by fuzzing).
            return []
        found = await session.get(ArchiveClient).query(contact, end, limit)
        return [message_to_json(item.message, item.timestamp, item.archive_id) for item in found]
