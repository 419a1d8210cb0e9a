"""``/api/contacts``: the user's roster and presence subscriptions (RFC 6121), as MongooseIM had it.

Beyond MongooseIM, which ignored them, ``POST`` takes an optional ``name`` and ``groups``
and ``GET`` returns them: they are the roster item's own, so the user's other XMPP
clients show the same display names and groups.

One answer differs from MongooseIM's: ``POST`` of a local JID whose account does not
exist is 204, not 404. MongooseIM looked in its own user database; the bridge only has
the user's session, and no stanza without side effects tells a missing account from an
existing one that shares no presence with the user. Checked on Prosody 0.12 and ejabberd
23.01 (``MissingAccountTests`` in tests/integration/test_mongooseim_fidelity.py):
disco#info and disco#items to the bare JID answer ``service-unavailable`` (Prosody) or
``subscription-required`` (ejabberd) either way, ping gets a result either way, and a
presence probe gets no answer either way. Only messages (stored offline, or delivered)
would tell, and sending one is a side effect.

``PUT`` ``accept`` answers 204 only once the server confirms that the contact now has the
user's presence (subscription ``from`` or ``both``, ``bridge.xmpp.roster``). MongooseIM
answered 204 whenever the contact was in the roster; the bridge answers 404 "Contact not
found" when there was no request to accept: it was declined or withdrawn meanwhile, for
instance through another bridge process serving the same user, whose answer this
process's session may not have seen. Nothing is then left behind on the server (no
pre-approval).
"""

from __future__ import annotations

import json
import re
from typing import Any

from klein import Klein
from twisted.web.server import Request
from twisted.words.protocols.jabber.jid import JID

from bridge.api.auth import Authenticator
from bridge.api.errors import BadRequest, NotFound
from bridge.api.input import json_object, parse_jid
from bridge.api.rendering import Response, json_errors, json_route
from bridge.protocol.roster import Contact
from bridge.protocol.xml import is_xml_text
from bridge.xmpp.roster import RosterClient
from bridge.xmpp.session import Session

ACTIONS = ("invite", "accept")
MAX_NAME = 1023
MAX_GROUP = 1023
MAX_GROUPS = 100
MAX_BULK = 500
_SURROGATE = re.compile("[\ud800-\udfff]")


def as_given(value: object) -> str:
    """A request value as the client wrote it, for answers; lone surrogates become U+FFFD."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return _SURROGATE.sub("\ufffd", text)


def contact_jid(value: object, own: JID | None) -> JID:
    """A contact's bare JID; 400 "Invalid JID: X" with the value given otherwise."""
    invalid = f"Invalid JID: {as_given(value)}"
    jid = parse_jid(value, invalid)
    if jid.host.endswith("."):  # RFC 7622 3.2: the same domain without its final dot
        jid = parse_jid(f"{jid.user}@{jid.host[:-1]}", invalid)
    if own is not None and jid.userhost() == own.userhost():
        raise BadRequest(invalid)  # the user is no contact of their own (servers refuse it)
    return jid


def _jid_or_none(value: object, own: JID | None) -> JID | None:
    try:
        return contact_jid(value, own)
    except BadRequest:
        return None


def optional_name(body: dict[str, Any]) -> str | None:
    """The roster item's display name; "" removes it, absent keeps the current one."""
    value = body.get("name")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_NAME or not is_xml_text(value):
        raise BadRequest("Invalid name")
    return value


def optional_groups(body: dict[str, Any]) -> list[str] | None:
    """The roster item's groups; [] removes them, absent keeps the current ones."""
    value = body.get("groups")
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_GROUPS:
        raise BadRequest("Invalid groups")
    groups: list[str] = []
    for group in value:
        if not isinstance(group, str) or not group or len(group) > MAX_GROUP or not is_xml_text(group):
            raise BadRequest("Invalid groups")
        if group not in groups:
            groups.append(group)
    return groups


def contact_json(contact: Contact) -> dict[str, Any]:
    result: dict[str, Any] = {"jid": contact.jid, "subscription": contact.subscription, "ask": contact.ask}
    if contact.name:
        result["name"] = contact.name
    if contact.groups:
        result["groups"] = list(contact.groups)
    return result


class ContactsApi:
    app = json_errors(Klein())

    def __init__(self, auth: Authenticator) -> None:
        self._auth = auth

    @staticmethod
    def _roster(session: Session) -> RosterClient:
        return session.get(RosterClient)

    @app.route("/", methods=["GET"], strict_slashes=False)
    @json_route
    async def list_contacts(self, request: Request) -> list[dict[str, Any]]:
        session = await self._auth.session(request)
        return [contact_json(contact) for contact in await self._roster(session).contacts()]

    @app.route("/", methods=["POST"], strict_slashes=False)
    @json_route
    async def add(self, request: Request) -> Response:
        session = await self._auth.session(request)
        body = json_object(request)
        if body.get("jid") in (None, ""):
            raise BadRequest("Missing JID")
        jid = contact_jid(body["jid"], session.jid)
        await self._roster(session).set_item(jid, optional_name(body), optional_groups(body))
        return Response(204)

    @app.route("/<path:jid>", methods=["GET"])
    @json_route
    async def show(self, request: Request, jid: str) -> dict[str, Any]:
        """One roster item, as MongooseIM's ``GET /contacts/{jid}`` answered; 404 when not in the roster."""
        session = await self._auth.session(request)
        found = await self._roster(session).find(contact_jid(jid, session.jid))
        if found is None:
            raise NotFound("Contact not found")
        return contact_json(found)

    @app.route("/<path:jid>", methods=["PUT"])
    @json_route
    async def act(self, request: Request, jid: str) -> Response:
        session = await self._auth.session(request)
        contact = contact_jid(jid, session.jid)
        action = json_object(request).get("action")
        if action in (None, ""):
            raise BadRequest("Missing action")
        if not isinstance(action, str) or action not in ACTIONS:
            raise BadRequest("Invalid action")
        roster = self._roster(session)
        if await roster.find(contact) is None:
            raise NotFound("Contact not found")
        if action == "invite":
            await roster.subscribe(contact)
        elif not await roster.approve(contact):
            # The server had no request to approve (answered elsewhere, or withdrawn).
            raise NotFound("Contact not found")
        return Response(204)

    @app.route("/<path:jid>", methods=["DELETE"])
    @json_route
    async def remove(self, request: Request, jid: str) -> Response:
        session = await self._auth.session(request)
        contact = contact_jid(jid, session.jid)
        if not await self._roster(session).remove(contact):
            raise NotFound("Contact not found")
        return Response(204)

    @app.route("/", methods=["DELETE"], strict_slashes=False)
    @json_route
    async def remove_many(self, request: Request) -> dict[str, list[str]]:
        session = await self._auth.session(request)
        given = json_object(request).get("to_delete")
        if given is None:
            raise BadRequest("Missing to_delete")
        if not isinstance(given, list) or len(given) > MAX_BULK or not all(isinstance(v, str) for v in given):
            raise BadRequest("Invalid to_delete")
        jids = [(value, _jid_or_none(value, session.jid)) for value in given]
        removed = await self._roster(session).remove_all(jid for _, jid in jids if jid is not None)
        not_deleted = [as_given(value) for value, jid in jids if jid is None or jid.userhost() not in removed]
        return {"not_deleted": not_deleted}
