"""MUC Light blocking lists (MongooseIM's ``urn:xmpp:muclight:0#blocking``), on the service JID.

A user denies rooms (by room JID) or users (by bare JID): she is then not added to such a
room, nor to any room by such a user (``Store.blocking``, checked on creation and on
affiliation changes). ``allow`` removes an item; the list answers only the denials.
"""

from __future__ import annotations

from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.xish import domish

from bridge.muclight.handlers.base import SERVICE, MucLightHandler, Reply, Request
from bridge.protocol.muclight import bare_jid
from bridge.protocol.namespaces import NS_BLOCKING


class BlockingHandler(MucLightHandler):
    iq_handlers = {
        (SERVICE, "get", NS_BLOCKING, "query"): "get_blocking",
        (SERVICE, "set", NS_BLOCKING, "query"): "set_blocking",
    }

    async def get_blocking(self, request: Request) -> Reply:
        query = domish.Element((NS_BLOCKING, "query"))
        for kind, target in await self.store.blocking_list(request.require_user()):
            query.addElement(kind, content=target)["action"] = "deny"
        return query

    async def set_blocking(self, request: Request) -> Reply:
        user = request.require_user()
        changes: list[tuple[str, str, bool]] = []
        for element in request.payload.elements():
            action = element.getAttribute("action")
            target = bare_jid(str(element))
            if element.uri != NS_BLOCKING or element.name not in ("room", "user") or action not in ("deny", "allow"):
                raise StanzaError("bad-request")
            if target is None or (element.name == "room" and target.split("@", 1)[1] != self.state.service):
                raise StanzaError("bad-request", text="Invalid JID")
            changes.append((element.name, target, action == "deny"))
        if not changes:
            raise StanzaError("bad-request")
        await self.store.set_blocking(user, changes)
        return None
