"""The MUC Light component's store: rooms, affiliations, room versions, the room archive
(XEP-0313 on room JIDs) and MUC Light blocking lists.

One interface, two SQL back-ends chosen by ``storage.url``: an embedded SQLite file (the
default) or PostgreSQL when several bridge processes share rooms. Every call runs on a
thread pool, never on the reactor thread, and every write is committed before its Deferred
fires, so the component can acknowledge or broadcast a change only once it is durable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger()

OWNER = "owner"
MEMBER = "member"


class StoreError(Exception):
    """The database failed or refused an operation."""


class RoomExists(StoreError):
    """A room with that id exists already."""


class VersionConflict(StoreError):
    """The room changed (or vanished) since it was read; read it again and retry."""


class NotOccupant(Exception):
    """The sender of a message is not (or no longer) an occupant of the room: a refusal,
    not a store failure."""


@dataclass(frozen=True)
class Room:
    """A room as stored: its configuration, its occupants in joining order, its version."""

    room_id: str
    name: str
    subject: str
    version: str
    affiliations: tuple[tuple[str, str], ...] = ()

    def affiliation(self, user: str) -> str | None:
        for jid, affiliation in self.affiliations:
            if jid == user:
                return affiliation
        return None

    @property
    def occupants(self) -> list[str]:
        return [jid for jid, _ in self.affiliations]


@dataclass(frozen=True)
class NewArchiveItem:
    """A stanza to archive: what the room sent, as XML, without a ``to`` attribute."""

    stanza_id: str
    kind: str  # "message" or "affiliation"
    sender: str | None  # the occupant's bare JID for a message; None for a room notice
    xml: str


@dataclass(frozen=True)
class ArchivedItem:
    archive_id: str
    timestamp: int  # Unix milliseconds
    stanza_id: str
    kind: str
    sender: str | None
    xml: str


@dataclass(frozen=True)
class Posted:
    """What ``Store.post_message`` did: the room as it was when the message was taken (its
    occupants are whom to deliver to) and the message's archive entry."""

    room: Room
    item: ArchivedItem
    # True when the room had archived this id from this sender already (a client's retry):
    # ``item`` is that earlier entry, and nothing was archived now.
    retry: bool = False


@dataclass(frozen=True)
class ArchiveQuery:
    """One page of a room archive: filters (ms, inclusive) and XEP-0059 paging by archive id."""

    start: int | None = None
    end: int | None = None
    sender: str | None = None
    after_id: str | None = None
    before_id: str | None = None
    # True for RSM <before/>: the page nearest the end (or before before_id).
    from_end: bool = False
    limit: int = 50


@dataclass(frozen=True)
class ArchivePage:
    items: list[ArchivedItem] = field(default_factory=list)
    complete: bool = True
    count: int = 0


class Store:
    """What the component needs from a database; see ``bridge.store.sql`` for the SQL one."""

    async def get_room(self, room_id: str) -> Room | None:
        raise NotImplementedError

    async def user_rooms(self, user: str) -> list[Room]:
        """The rooms ``user`` occupies (without their affiliation lists)."""
        raise NotImplementedError

    async def create_room(self, room: Room, notice: NewArchiveItem | None) -> list[ArchivedItem]:
        """Store a new room and archive its creation notice; ``RoomExists`` if the id is taken."""
        raise NotImplementedError

    async def update_room(
        self, room_id: str, expected_version: str, room: Room | None, archive: list[NewArchiveItem]
    ) -> list[ArchivedItem]:
        """Replace the room (``None`` destroys it and its archive) if it is still at
        ``expected_version``, and archive ``archive``, in one transaction."""
        raise NotImplementedError

    async def archive_message(self, room_id: str, item: NewArchiveItem) -> ArchivedItem | None:
        """Archive a groupchat message; None when the room no longer exists."""
        raise NotImplementedError

    async def post_message(self, room_id: str, item: NewArchiveItem, dedupe: bool) -> Posted | None:
        """Take a groupchat message from an occupant: None when the room does not exist,
        ``NotOccupant`` when ``item.sender`` is not in it; with ``dedupe``, an id the room
        already archived from that sender is a retry (``Posted.retry``); else archive it.

        ``SqlStore`` does all of it in one transaction under the room's row lock, so a
        message racing a removal is refused, and two processes cannot both archive one
        retried id. This composition of the other calls is for stores of one process.
        """
        room = await self.get_room(room_id)
        if room is None:
            return None
        if item.sender is None or room.affiliation(item.sender) is None:
            raise NotOccupant(room_id)
        if dedupe:
            earlier = await self.archived_message(room_id, item.stanza_id, item.sender)
            if earlier is not None:
                return Posted(room, earlier, retry=True)
        archived = await self.archive_message(room_id, item)
        return None if archived is None else Posted(room, archived)

    async def query_archive(self, room_id: str, query: ArchiveQuery) -> ArchivePage:
        raise NotImplementedError

    async def archived_message(self, room_id: str, stanza_id: str, sender: str) -> ArchivedItem | None:
        """The earliest groupchat message of ``room_id``'s archive with ``stanza_id`` from
        ``sender``, or None: how the room recognises a client's retry (DESIGN.md,
        "Idempotent retries")."""
        raise NotImplementedError

    def is_archive_id(self, text: str) -> bool:
        """Whether ``text`` can be one of this store's archive ids (``ArchivedItem.archive_id``).

        The id format belongs to the store: a client's RSM ``after``/``before`` that fails
        this check cannot name an archived item, and is refused before any query.
        """
        raise NotImplementedError

    async def blocking_list(self, user: str) -> list[tuple[str, str]]:
        """``user``'s denied (kind, JID) pairs; kind is "room" or "user"."""
        raise NotImplementedError

    async def set_blocking(self, user: str, changes: list[tuple[str, str, bool]]) -> None:
        """Apply (kind, JID, deny) changes to ``user``'s blocking list."""
        raise NotImplementedError

    async def blocking(self, users: list[str], room_jid: str, by: str) -> set[str]:
        """Those of ``users`` who block the room ``room_jid`` or the user ``by``."""
        raise NotImplementedError

    async def set_available(self, full_jid: str, available: bool) -> None:
        """Record that an occupant's resource went available (or refresh it), or forget it."""
        raise NotImplementedError

    async def available_resources(self, max_age: float) -> list[str]:
        """The full JIDs recorded available within the last ``max_age`` seconds, oldest
        first; older records are purged. What a component that takes over starts from
        (``bridge.muclight.presence``)."""
        raise NotImplementedError

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def stream_token_key(self, candidate: bytes) -> bytes:
        """The key that signs stream tokens for every bridge process sharing this store
        (``bridge.api.tokens``): ``candidate`` is stored when there is none yet (once, also
        when processes start together), and the stored key is returned."""
        raise NotImplementedError

    # -- offline push (bridge.push): webhooks and the delivery queue

    async def add_webhook(self, webhook: Webhook, limit: int) -> bool:
        """Store ``webhook`` unless its user has ``limit`` already (then False)."""
        raise NotImplementedError

    async def user_webhooks(self, user: str) -> list[Webhook]:
        """``user``'s webhooks, oldest first (gone ones included: see ``Webhook.gone``)."""
        raise NotImplementedError

    async def webhook_by_node(self, node: str) -> Webhook | None:
        raise NotImplementedError

    async def remove_webhook(self, user: str, webhook_id: str) -> Webhook | None:
        """Delete ``user``'s webhook and its queued deliveries; the webhook, or None if she has none of that id."""
        raise NotImplementedError

    async def webhook_gone(self, webhook_id: str) -> None:
        """The webhook answered 410 Gone: mark it and drop its queued deliveries."""
        raise NotImplementedError

    async def enqueue_push(self, deliveries: list[tuple[str, str]]) -> None:
        """Queue (webhook id, JSON payload) deliveries, due now, in one transaction."""
        raise NotImplementedError

    async def claim_push(self, owner: str, lease: float, limit: int) -> list[PendingPush]:
        """Up to ``limit`` due deliveries nobody holds, leased to ``owner`` for ``lease`` seconds
        (so that processes sharing the store never hold the same one)."""
        raise NotImplementedError

    async def finish_push(self, delivery_id: int) -> None:
        """The delivery is done (delivered, or dropped): remove it from the queue."""
        raise NotImplementedError

    async def retry_push(self, delivery_id: int, due: float) -> None:
        """Release the delivery, due again at Unix time ``due``, with one more attempt counted."""
        raise NotImplementedError

    async def push_queue_stats(self) -> tuple[int, int | None]:
        """(queued deliveries, Unix ms the oldest was queued, or None when there are none)."""
        raise NotImplementedError


def open_store(url: str, reactor: Any, clock: IReactorTime | None = None) -> Store:
    """The store for a ``storage.url`` (``sqlite://PATH`` or ``postgresql://...``); archive
    timestamps come from ``clock`` (default: ``reactor``)."""
    from bridge.store.sql import SqlStore

    return SqlStore.from_url(url, reactor, clock)


class StoreService(Service):
    """Opens (and migrates) the store when the daemon starts, and closes it when it stops.

    A store that cannot be opened is logged; the component then answers
    ``internal-server-error`` instead of taking the daemon down.
    """

    name = "store"  # type: ignore[assignment]

    def __init__(self, store: Store) -> None:
        self.store = store
        self.started: defer.Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        self.started = defer.Deferred.fromCoroutine(self.store.start())
        self.started.addErrback(lambda failure: log.error("{why}", why=failure.getErrorMessage()))

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return defer.Deferred.fromCoroutine(self.store.close())


@dataclass(frozen=True)
class Webhook:
    """A user's registered webhook (``POST /api/push``) and the XEP-0357 node it stands for."""

    webhook_id: str
    user: str
    url: str
    secret: str = field(repr=False)
    node: str
    created_at: int = 0
    # It answered 410 Gone: no more deliveries; push is disabled on the server at her next session.
    gone: bool = False


@dataclass(frozen=True)
class PendingPush:
    """A claimed delivery: its row, the payload and the webhook it goes to."""

    delivery_id: int
    webhook: Webhook
    payload: str
    created_ms: int
    attempts: int
