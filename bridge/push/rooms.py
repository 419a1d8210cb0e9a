"""Room messages for occupants who are offline: the component notifies their webhooks itself.

A user's server notifies her of what reaches it while she has nothing online; a room
message never does, because the component sends room messages only to occupants'
*available* full JIDs (RFC 6121 refuses groupchat to a bare JID; DESIGN.md, "Room
delivery"), so the server has nothing to publish. The bridge is the app server and the
room service at once, so after each room message is archived it queues, for every occupant
other than the sender with no available resource known to the component, one notification
per webhook of hers: ``{"user", "id", "count": 1, "from": sender's bare JID, "body"?, "room"}``.

"Offline" is the component's view: with XEP-0356 presence privileges it sees every
resource; without them only those that sent it directed presence (the bridge's own
sessions do). The queueing follows the archive commit; a crash between the two loses that
notification, never the message.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.xish import domish

from bridge.protocol.push import MAX_FIELD, Publish
from bridge.push.payload import notification
from bridge.store import Store

log = Logger()


class RoomNotifier:
    """A ``ServiceState.offline_hooks`` entry: queue room notifications for offline occupants."""

    def __init__(self, store: Store, queued: Callable[[], None], track: Callable[[defer.Deferred[None]], None]) -> None:
        self.store = store
        self.queued = queued
        self.track = track

    def __call__(self, room_id: str, sender: str, offline: list[str], broadcast: domish.Element) -> None:
        if offline:
            self.track(defer.Deferred.fromCoroutine(self._notify(room_id, sender, offline, broadcast)))

    async def _notify(self, room_id: str, sender: str, offline: list[str], broadcast: domish.Element) -> None:
        body_element = next(broadcast.elements(None, "body"), None)
        body = str(body_element)[:MAX_FIELD] if body_element is not None else None
        publish = Publish(node="", count=1, sender=sender, body=body)
        deliveries = []
        try:
            for user in offline:
                for webhook in await self.store.user_webhooks(user):
                    if not webhook.gone:
                        deliveries.append((webhook.webhook_id, notification(webhook, publish, room=room_id)))
            await self.store.enqueue_push(deliveries)
        except Exception as e:
            log.error("Room push for {room} not queued: {why}", room=room_id, why=str(e) or type(e).__name__)
            return
        if deliveries:
            self.queued()
