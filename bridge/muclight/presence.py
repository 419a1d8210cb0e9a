"""Which full JIDs of each user are available, learnt from presence (RFC 6121 section 4).

Servers refuse ``groupchat`` messages to a bare JID (RFC 6121 8.5.2.1.1), so the room
delivers to full JIDs, and needs to know them. Two sources feed this table, and the
component cannot tell them apart, nor needs to:

* XEP-0356 privileged entity, presence permission ``managed_entity``: the server forwards
  every user's broadcast presence to the component, and all current ones when it connects.
* Directed presence: a client (the bridge's own sessions among them) sends
  ``<presence to='muclight.example.com'/>`` when it goes available; the server then sends
  the component its unavailable presence when it goes away.

A delivery that bounces (a message error from a full JID) removes that JID too.

Both sources only tell the component that is connected when the presence goes out. So
that a process that takes the component over (``bridge.muclight.leader``), or restarts,
delivers to occupants who were online before, every change is also written to the store
(``PresenceJournal``: in order, never holding up a delivery, failures logged) and the
table is restored from it when the component's stream comes up. A record not refreshed
for ``MAX_AGE`` seconds is ignored and purged; a stale one that survives costs one bounce.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.xish import domish

from bridge.protocol.jid import parse
from bridge.store import Store

log = Logger()

# Seconds a stored available resource counts without a fresh presence.
MAX_AGE = 86400.0
# Writes queued while the store does not answer; past it changes are dropped (and logged):
# memory stays bounded, and a record lost costs a bounce or a missed delivery after a takeover.
MAX_QUEUED = 10000


class PresenceJournal:
    """Writes the table's changes to the store one after another, in the order they
    happened, and restores the table in that same order (after the writes before it)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: deque[Callable[[], Awaitable[None]]] = deque()
        self._running = False
        self._failing = False
        self._dropping = False

    def record(self, full: str, available: bool) -> None:
        """Queue the write of one change; returns at once."""

        async def write() -> None:
            await self._store.set_available(full, available)

        if len(self._queue) >= MAX_QUEUED:
            if not self._dropping:
                log.warn("Occupants' presence: {count} writes queued; dropping changes", count=len(self._queue))
            self._dropping = True
            return
        self._dropping = False
        self._enqueue(write)

    def restore(self, into: AvailableResources) -> defer.Deferred[None]:
        """Add the stored resources to ``into``, except those it drops meanwhile; fires once done."""
        done: defer.Deferred[None] = defer.Deferred()
        into._dropped = set()

        async def load() -> None:
            try:
                stored = await self._store.available_resources(MAX_AGE)
                dropped = into._dropped or set()
                for full in stored:
                    if full not in dropped:
                        into.add(full, journal=False)
            finally:
                into._dropped = None
                done.callback(None)

        self._enqueue(load)
        return done

    def _enqueue(self, work: Callable[[], Awaitable[None]]) -> None:
        self._queue.append(work)
        if not self._running:
            defer.Deferred.fromCoroutine(self._drain())

    async def _drain(self) -> None:
        self._running = True
        try:
            while self._queue:
                work = self._queue.popleft()
                try:
                    await work()
                except Exception as e:
                    if not self._failing:
                        log.warn("Occupants' presence not saved to the store: {why}", why=str(e) or type(e).__name__)
                    self._failing = True
                else:
                    if self._failing:
                        log.info("Occupants' presence is saved to the store again")
                    self._failing = False
        finally:
            self._running = False


class AvailableResources:
    """The available full JIDs of each bare JID, in the order they appeared; changes go to
    ``journal`` when there is one."""

    def __init__(self, journal: PresenceJournal | None = None) -> None:
        self._by_user: dict[str, dict[str, None]] = {}
        self._journal = journal
        # While a restore runs: the JIDs removed meanwhile, which it must not bring back.
        self._dropped: set[str] | None = None

    def __len__(self) -> int:
        return sum(len(resources) for resources in self._by_user.values())

    def resources(self, user: str) -> list[str]:
        return list(self._by_user.get(user, ()))

    def add(self, full: str, journal: bool = True) -> None:
        user = full.split("/", 1)[0]
        self._by_user.setdefault(user, {})[full] = None
        if self._dropped is not None:
            self._dropped.discard(full)
        if journal and self._journal is not None:
            self._journal.record(full, True)  # also refreshes its age

    def remove(self, full: str) -> None:
        user = full.split("/", 1)[0]
        resources = self._by_user.get(user)
        if resources is not None:
            resources.pop(full, None)
            if not resources:
                del self._by_user[user]
        if self._dropped is not None:
            self._dropped.add(full)
        if self._journal is not None:
            self._journal.record(full, False)

    def restore(self) -> defer.Deferred[None]:
        """Add what the journal stored (a component that just connected); fires once done."""
        if self._journal is None:
            return defer.succeed(None)
        return self._journal.restore(self)

    def observe(self, presence: domish.Element) -> None:
        """Update the table from a presence stanza the component received."""
        sender = parse(presence.getAttribute("from"))
        if sender is None or not sender.user or not sender.resource:
            return
        presence_type = presence.getAttribute("type")
        if presence_type is None:
            self.add(sender.full())
        elif presence_type in ("unavailable", "error"):
            self.remove(sender.full())
