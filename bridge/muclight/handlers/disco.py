"""XEP-0030 Service Discovery of the MUC Light service and its rooms.

The service's disco#info names it a ``conference/text`` service with MUC Light and the
MAM namespaces its rooms answer (as MongooseIM lists them); its disco#items are the
sender's rooms with name and version, one XEP-0059 page of them when the query asks
(``bridge.muclight.rsm``). A room's disco#info is for its occupants.
"""

from __future__ import annotations

from twisted.words.xish import domish

from bridge.muclight import rsm
from bridge.muclight.handlers.base import ROOM, SERVICE, MucLightHandler, Reply, Request
from bridge.protocol.namespaces import NS_DISCO_INFO, NS_DISCO_ITEMS, NS_MAM, NS_MAM_1, NS_MUCLIGHT, NS_RSM
from bridge.protocol.xml import child

SERVICE_FEATURES = (NS_MUCLIGHT, NS_MAM_1, NS_MAM, NS_DISCO_INFO, NS_DISCO_ITEMS)
ROOM_FEATURES = (NS_MUCLIGHT, NS_MAM, NS_MAM_1, NS_DISCO_INFO)


def info(name: str, features: tuple[str, ...]) -> domish.Element:
    query = domish.Element((NS_DISCO_INFO, "query"))
    identity = query.addElement("identity")
    identity["category"], identity["type"], identity["name"] = "conference", "text", name
    for feature in features:
        query.addElement("feature")["var"] = feature
    return query


class DiscoHandler(MucLightHandler):
    iq_handlers = {
        (SERVICE, "get", NS_DISCO_INFO, "query"): "service_info",
        (SERVICE, "get", NS_DISCO_ITEMS, "query"): "service_items",
        (ROOM, "get", NS_DISCO_INFO, "query"): "room_info",
    }

    async def service_info(self, request: Request) -> Reply:
        return info("MUC Light", SERVICE_FEATURES)

    async def service_items(self, request: Request) -> Reply:
        """The user's rooms by room JID; one XEP-0059 page of them when the query asks."""
        user = request.require_user()
        rooms = {self.state.room_jid(room.room_id): room for room in await self.store.user_rooms(user)}
        jids = sorted(rooms)
        page = rsm.parse_request(child(request.payload, "set", NS_RSM))
        query = domish.Element((NS_DISCO_ITEMS, "query"))
        chosen, first_index = rsm.select(jids, page)
        for jid in chosen:
            item = query.addElement("item")
            item["jid"], item["name"], item["version"] = jid, rooms[jid].name, rooms[jid].version
        if page is not None:
            query.addChild(rsm.answer(chosen, first_index, len(jids)))
        return query

    async def room_info(self, request: Request) -> Reply:
        room = await self.occupied(request)
        return info(room.name, ROOM_FEATURES)
