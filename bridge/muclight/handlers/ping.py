"""XEP-0199 XMPP Ping, answered by the service JID and by every room to its occupants."""

from __future__ import annotations

from bridge.muclight.handlers.base import ROOM, SERVICE, MucLightHandler, Reply, Request
from bridge.protocol.namespaces import NS_PING


class PingHandler(MucLightHandler):
    """An empty result: the service is up (to anyone), the room has the sender (to occupants)."""

    iq_handlers = {
        (SERVICE, "get", NS_PING, "ping"): "ping_service",
        (ROOM, "get", NS_PING, "ping"): "ping_room",
    }

    async def ping_service(self, request: Request) -> Reply:
        return None

    async def ping_room(self, request: Request) -> Reply:
        await self.occupied(request)
        return None
