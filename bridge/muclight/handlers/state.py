"""What the MUC Light handlers on one component stream share: the service JID, the store,
the policy, the clock, the occupants' available resources, and one lock per room.

Stanzas for one room are handled one at a time, in arrival order, whichever handler takes
them (room IQs, groupchat messages): a change is committed to the store, then announced,
then acknowledged, so a client that gets the answer to an IQ sent after a message knows
the message is archived.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.xish import domish

from bridge.muclight.presence import AvailableResources, PresenceJournal
from bridge.muclight.rooms import RoomSettings, new_version
from bridge.protocol.muclight import NOT_OCCUPANT
from bridge.protocol.namespaces import NS_BRIDGE_ERRORS
from bridge.store import Room, Store

# How many recent broadcasts ``ServiceState.was_broadcast`` remembers: far more than a
# room takes while its senders wait for their answers and retry (about a minute).
REMEMBERED_BROADCASTS = 4096


def not_occupant() -> StanzaError:
    """item-not-found, as the protocol answers a stranger, with the bridge's condition that
    tells the REST side the room exists (403 rather than 404)."""
    return StanzaError("item-not-found", appCondition=domish.Element((NS_BRIDGE_ERRORS, NOT_OCCUPANT)))


class ServiceState:
    """Serves ``service`` (e.g. ``muclight.example.com``) and its rooms from ``store``;
    ``clock`` (an ``IReactorTime``: the reactor, or a ``Clock`` in tests) dates versions."""

    def __init__(self, service: str, store: Store, settings: RoomSettings, clock: IReactorTime) -> None:
        self.service = service
        self.store = store
        self.settings = settings
        self.clock = clock
        self.available = AvailableResources(PresenceJournal(store))
        self._locks: dict[str, defer.DeferredLock] = {}
        # Stanzas being handled, so tests and shutdown can wait for them.
        self.pending: set[defer.Deferred[None]] = set()
        # Called with (room id, sender's bare JID, occupants with no available resource, the
        # broadcast) after each room message is archived: offline push (bridge.push.rooms).
        self.offline_hooks: list[Callable[[str, str, list[str], domish.Element], None]] = []
        # Archive ids of the room messages this process broadcast on a live component
        # stream, newest last (``was_broadcast``).
        self._broadcast: OrderedDict[tuple[str, str], None] = OrderedDict()

    def broadcast_done(self, room_id: str, archive_id: str) -> None:
        """Remember that the message ``archive_id`` went out to the room's occupants."""
        self._broadcast[(room_id, archive_id)] = None
        while len(self._broadcast) > REMEMBERED_BROADCASTS:
            self._broadcast.popitem(last=False)

    def was_broadcast(self, room_id: str, archive_id: str) -> bool:
        """Whether this process broadcast ``archive_id``. A client's retry of a message it
        did not is one whose first attempt was archived by a component that died (or whose
        stream dropped) before broadcasting and answering: it must go out now."""
        return (room_id, archive_id) in self._broadcast

    def room_jid(self, room_id: str) -> str:
        return f"{room_id}@{self.service}"

    def new_version(self) -> str:
        return new_version(self.clock)

    def track(self, work: defer.Deferred[None]) -> None:
        """Keep ``work`` in ``pending`` until it ends."""
        self.pending.add(work)
        work.addBoth(lambda _: self.pending.discard(work))

    async def in_room(self, room_id: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` once every earlier stanza for ``room_id`` is done."""
        lock = self._locks.setdefault(room_id, defer.DeferredLock())
        await lock.acquire()
        try:
            await work()
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(room_id, None)

    async def occupied(self, room_id: str, user: str) -> Room:
        """The room ``user`` occupies; item-not-found if there is none, or she is not in it."""
        room = await self.store.get_room(room_id)
        if room is None:
            raise StanzaError("item-not-found")
        if room.affiliation(user) is None:
            raise not_occupant()
        return room
