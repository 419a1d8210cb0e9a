"""XEP-0313 Message Archive Management on room JIDs (``urn:xmpp:mam:2``, and ``mam:1``
answered in kind), for the room's occupants.

A get answers the query form; a set sends one page of results to the querying full JID,
then the IQ result with ``<fin>``. Parsing and the result stanzas live in
``bridge.muclight.archive``; which RSM ids exist is the store's to say.
"""

from __future__ import annotations

from twisted.words.xish import domish

from bridge.muclight import archive
from bridge.muclight.handlers.base import ROOM, MucLightHandler, Reply, Request
from bridge.protocol.namespaces import NS_DATA, NS_MAM, NS_MAM_1

FORM_FIELDS = ("FORM_TYPE", "with", "start", "end")


def query_form(ns: str) -> domish.Element:
    query = domish.Element((ns, "query"))
    form = query.addElement((NS_DATA, "x"))
    form["type"] = "form"
    for var in FORM_FIELDS:
        field = form.addElement("field")
        field["var"] = var
        if var == "FORM_TYPE":
            field["type"] = "hidden"
            field.addElement("value", content=ns)
    return query


class RoomArchiveHandler(MucLightHandler):
    iq_handlers = {
        **{(ROOM, "get", ns, "query"): "form" for ns in (NS_MAM, NS_MAM_1)},
        **{(ROOM, "set", ns, "query"): "query" for ns in (NS_MAM, NS_MAM_1)},
    }

    async def form(self, request: Request) -> Reply:
        await self.occupied(request)
        return query_form(request.payload.uri)

    async def query(self, request: Request) -> Reply:
        room = await self.occupied(request)
        payload = request.payload
        query = archive.parse_query(payload, self.store.is_archive_id)
        page = await self.store.query_archive(room.room_id, query)
        room_jid = self.state.room_jid(room.room_id)
        for item in page.items:
            self.send_stanza(
                archive.result_message(payload.uri, room_jid, request.iq["from"], payload.getAttribute("queryid"), item)
            )
        return archive.fin(payload.uri, page)
