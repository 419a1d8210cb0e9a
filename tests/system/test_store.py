"""The MUC Light store on SQLite, and on PostgreSQL when a server is available: the same
tests, the same schema."""

from __future__ import annotations

import secrets
import sqlite3

from twisted.internet import defer, reactor, task
from twisted.internet.task import Clock
from twisted.trial import unittest

from bridge.store import (
    ArchiveQuery,
    NewArchiveItem,
    NotOccupant,
    Room,
    RoomExists,
    Store,
    StoreError,
    VersionConflict,
    open_store,
)
from bridge.store.schema import MIGRATIONS
from tests.servers.postgres import fresh_test_database


def item(text: str, sender: str | None = "a@x") -> NewArchiveItem:
    return NewArchiveItem(
        secrets.token_hex(4), "message" if sender else "affiliation", sender, f"<message>{text}</message>"
    )


class StoreCase:
    """A store test's plumbing, mixed into a TestCase that provides ``url()``."""

    def url(self) -> str:
        raise NotImplementedError

    async def open(self, clock: Clock | None = None) -> Store:
        store = open_store(self.url(), reactor, clock)
        await store.start()
        self.addCleanup(store.close)  # type: ignore[attr-defined]
        return store


class StoreTests(StoreCase):
    """The store's behaviour, the same on every back-end."""

    def schema_versions(self) -> list[int]:
        """The migrations the database records, read past the store."""
        raise NotImplementedError

    async def test_processes_starting_together_migrate_once(self) -> None:
        """Several stores opening one new database at once all start, the schema is migrated
        once, and every table is usable (on SQLite one failed with "table rooms already exists",
        on PostgreSQL with a catalog collision, before their migration locks)."""
        stores = [open_store(self.url(), reactor) for _ in range(4)]
        for store in stores:
            self.addCleanup(store.close)  # type: ignore[attr-defined]
        await defer.gatherResults([defer.Deferred.fromCoroutine(store.start()) for store in stores])
        self.assertEqual(self.schema_versions(), list(range(1, len(MIGRATIONS) + 1)))  # type: ignore[attr-defined]
        self.assertEqual(await stores[3].push_queue_stats(), (0, None))  # type: ignore[attr-defined]

    async def test_room_round_trip_and_conflicts(self) -> None:
        """A room is stored with its occupants in order; a second create and a stale update are refused."""
        store = await self.open()
        room = Room("r1", "Name <&>", "", "v1", (("a@x", "owner"), ("b@x", "member")))
        created = await store.create_room(room, item("created", None))
        self.assertEqual(len(created), 1)
        self.assertEqual(await store.get_room("r1"), room)
        self.assertIsNone(await store.get_room("nope"))
        with self.assertRaises(RoomExists):  # type: ignore[attr-defined]
            await store.create_room(room, None)
        changed = Room("r1", "New", "s", "v2", (("b@x", "owner"),))
        await store.update_room("r1", "v1", changed, [item("left", None)])
        self.assertEqual(await store.get_room("r1"), changed)
        with self.assertRaises(VersionConflict):  # type: ignore[attr-defined]
            await store.update_room("r1", "v1", room, [])
        self.assertEqual([r.room_id for r in await store.user_rooms("b@x")], ["r1"])
        self.assertEqual(await store.user_rooms("a@x"), [])

    async def test_destroy_removes_room_and_archive(self) -> None:
        """Destroying a room drops its occupants and archive; a new room of that id starts empty."""
        store = await self.open()
        await store.create_room(Room("r2", "n", "", "v1", (("a@x", "owner"),)), item("created", None))
        await store.archive_message("r2", item("hello"))
        await store.update_room("r2", "v1", None, [])
        self.assertIsNone(await store.get_room("r2"))
        self.assertIsNone(await store.archive_message("r2", item("late")))
        await store.create_room(Room("r2", "n", "", "v9", (("c@x", "owner"),)), None)
        page = await store.query_archive("r2", ArchiveQuery())
        self.assertEqual(page.items, [])

    async def test_archive_paging_and_filters(self) -> None:
        """Archive ids grow, pages go forward and back, and time and sender filters apply."""
        store = await self.open()
        await store.create_room(Room("r3", "n", "", "v1", (("a@x", "owner"),)), None)
        stored = [await store.archive_message("r3", item(str(n), "a@x" if n % 2 else "b@x")) for n in range(5)]
        ids = [int(s.archive_id) for s in stored if s is not None]
        self.assertEqual(ids, sorted(set(ids)))
        last = await store.query_archive("r3", ArchiveQuery(from_end=True, limit=2))
        self.assertEqual([i.xml for i in last.items], ["<message>3</message>", "<message>4</message>"])
        self.assertEqual((last.complete, last.count), (False, 5))
        before = await store.query_archive("r3", ArchiveQuery(before_id=last.items[0].archive_id, limit=10))
        self.assertEqual(len(before.items), 3)
        self.assertTrue(before.complete)
        after = await store.query_archive("r3", ArchiveQuery(after_id=stored[3].archive_id))  # type: ignore[union-attr]
        self.assertEqual([i.xml for i in after.items], ["<message>4</message>"])
        by_b = await store.query_archive("r3", ArchiveQuery(sender="b@x"))
        self.assertEqual(len(by_b.items), 3)
        timestamp = stored[0].timestamp  # type: ignore[union-attr]
        self.assertEqual((await store.query_archive("r3", ArchiveQuery(end=timestamp - 1))).items, [])
        self.assertEqual(len((await store.query_archive("r3", ArchiveQuery(start=timestamp))).items), 5)
        with self.assertRaises(StoreError):  # type: ignore[attr-defined]
            await store.query_archive("r3", ArchiveQuery(after_id="1 OR 1=1"))

    async def test_archive_is_stamped_by_the_injected_clock(self) -> None:
        """Archived items carry the store's clock's time in milliseconds, not the wall clock's."""
        clock = Clock()
        clock.advance(1234.5678)
        store = await self.open(clock)
        await store.create_room(Room("r5", "n", "", "v1", (("a@x", "owner"),)), None)
        first = await store.archive_message("r5", item("one"))
        clock.advance(2)
        changed = await store.update_room("r5", "v1", Room("r5", "m", "", "v2", (("a@x", "owner"),)), [item("two")])
        assert first is not None
        self.assertEqual((first.timestamp, changed[0].timestamp), (1234567, 1236567))

    async def test_archive_ids_are_the_stores_to_judge(self) -> None:
        """The store says which texts can be its archive ids: its own ids are, SQL and junk are not."""
        store = await self.open()
        await store.create_room(Room("r6", "n", "", "v1", (("a@x", "owner"),)), None)
        stored = await store.archive_message("r6", item("one"))
        assert stored is not None
        self.assertTrue(store.is_archive_id(stored.archive_id))
        for bad in ("1 OR 1=1", "", "-1", "1" * 19, "\u0661"):
            self.assertFalse(store.is_archive_id(bad), bad)

    async def test_archived_message_by_stanza_id_and_sender(self) -> None:
        """A room's archived message is found by (room, stanza id, sender): the earliest of that id, never a
        notice, another sender's or another room's."""
        store = await self.open()
        await store.create_room(Room("r7", "n", "", "v1", (("a@x", "owner"),)), None)
        await store.create_room(Room("r8", "n", "", "v1", (("a@x", "owner"),)), None)
        await store.update_room(
            "r7",
            "v1",
            Room("r7", "n", "", "v2", (("a@x", "owner"),)),
            [NewArchiveItem("retry-1", "affiliation", None, "<message>notice</message>")],
        )
        first = await store.archive_message("r7", NewArchiveItem("retry-1", "message", "a@x", "<message>1</message>"))
        await store.archive_message("r7", NewArchiveItem("retry-1", "message", "a@x", "<message>2</message>"))
        await store.archive_message("r8", NewArchiveItem("other", "message", "a@x", "<message>3</message>"))
        found = await store.archived_message("r7", "retry-1", "a@x")
        self.assertEqual(found, first)
        self.assertIsNone(await store.archived_message("r7", "retry-1", "b@x"))
        self.assertIsNone(await store.archived_message("r7", "other", "a@x"))
        self.assertIsNone(await store.archived_message("r8", "retry-1", "a@x"))
        self.assertIsNone(await store.archived_message("nope", "retry-1", "a@x"))

    async def test_blocking_lists(self) -> None:
        """Deny items are listed, allow removes them, and blockers of a room or inviter are found."""
        store = await self.open()
        await store.set_blocking("c@x", [("room", "r@m", True), ("user", "a@x", True), ("user", "z@x", False)])
        self.assertEqual(await store.blocking_list("c@x"), [("room", "r@m"), ("user", "a@x")])
        self.assertEqual(await store.blocking(["c@x", "d@x"], "other@m", "a@x"), {"c@x"})
        self.assertEqual(await store.blocking(["c@x"], "r@m", "b@x"), {"c@x"})
        await store.set_blocking("c@x", [("user", "a@x", False)])
        self.assertEqual(await store.blocking(["c@x"], "other@m", "a@x"), set())

    async def test_reopen_keeps_data_and_schema(self) -> None:
        """Closing and reopening migrates nothing twice and keeps what was committed."""
        store = await self.open()
        await store.create_room(Room("r4", "kept", "", "v1", (("a@x", "owner"),)), None)
        await store.close()
        again = await self.open()
        self.assertEqual((await again.get_room("r4")).name, "kept")  # type: ignore[union-attr]

    async def test_stream_token_key_is_created_once_and_shared(self) -> None:
        """The first candidate key is stored; every later or concurrent caller, and a reopened store, gets it back."""
        store = await self.open()
        first = secrets.token_bytes(32)
        self.assertEqual(await store.stream_token_key(first), first)
        self.assertEqual(await store.stream_token_key(secrets.token_bytes(32)), first)
        other = await self.open()
        self.assertEqual(await other.stream_token_key(secrets.token_bytes(32)), first)

    async def test_post_message_checks_membership_and_retries(self) -> None:
        """post_message archives an occupant's message with the room it was taken in, refuses a
        stranger and a missing room, and answers a retried id with the earlier entry."""
        store = await self.open()
        room = Room("p1", "n", "", "v1", (("a@x", "owner"), ("b@x", "member")))
        await store.create_room(room, None)
        first = await store.post_message("p1", NewArchiveItem("id-1", "message", "b@x", "<message/>"), dedupe=True)
        assert first is not None
        self.assertEqual((first.room, first.retry), (room, False))
        again = await store.post_message("p1", NewArchiveItem("id-1", "message", "b@x", "<message/>"), dedupe=True)
        assert again is not None
        self.assertEqual((again.item, again.retry), (first.item, True))
        with self.assertRaises(NotOccupant):  # type: ignore[attr-defined]
            await store.post_message("p1", NewArchiveItem("id-2", "message", "z@x", "<message/>"), dedupe=False)
        self.assertIsNone(await store.post_message("nope", item("x"), dedupe=False))
        page = await store.query_archive("p1", ArchiveQuery())
        self.assertEqual([i.stanza_id for i in page.items], ["id-1"])

    async def test_archive_time_never_goes_back(self) -> None:
        """An entry archived while the clock reads earlier than the room's last entry gets that
        entry's time, so archive order and time order agree."""
        clock = Clock()
        clock.advance(5000)
        store = await self.open(clock)
        await store.create_room(Room("t1", "n", "", "v1", (("a@x", "owner"),)), None)
        first = await store.archive_message("t1", item("one"))
        clock.rightNow = 4000.0  # the clock stepped back (or another process's lags)
        posted = await store.post_message("t1", item("two"), dedupe=False)
        changed = await store.update_room("t1", "v1", Room("t1", "m", "", "v2", (("a@x", "owner"),)), [item("n")])
        assert first is not None and posted is not None
        self.assertEqual([first.timestamp, posted.item.timestamp, changed[0].timestamp], [5000000] * 3)

    async def test_available_resources_round_trip_and_expiry(self) -> None:
        """Available resources are recorded oldest first, refreshed, forgotten on request, and purged
        once older than the age asked for."""
        clock = Clock()
        clock.advance(100000)
        store = await self.open(clock)
        await store.set_available("a@x/one", True)
        clock.advance(10)
        await store.set_available("b@x/two", True)
        await store.set_available("a@x/three", True)
        clock.advance(10)
        await store.set_available("a@x/one", True)  # refreshed: now the newest
        await store.set_available("b@x/two", False)
        await store.set_available("b@x/gone", False)  # unknown: nothing to forget
        self.assertEqual(await store.available_resources(86400), ["a@x/three", "a@x/one"])
        clock.advance(86400 - 5)
        self.assertEqual(await store.available_resources(86400), ["a@x/one"])
        clock.advance(86400)
        self.assertEqual(await store.available_resources(86400), [])
        self.assertEqual(await store.available_resources(10**9), [])  # purged, not only hidden


class SqliteStoreTests(StoreTests, unittest.TestCase):
    def url(self) -> str:
        if not hasattr(self, "_path"):
            self._path = self.mktemp() + "/store.sqlite3"
        return "sqlite://" + self._path

    async def test_schema_version_recorded(self) -> None:
        """The SQLite file records the schema version it was migrated to."""
        await self.open()
        connection = sqlite3.connect(self._path)
        self.assertEqual(connection.execute("SELECT MAX(version) FROM schema_version").fetchone()[0], len(MIGRATIONS))
        connection.close()

    def schema_versions(self) -> list[int]:
        connection = sqlite3.connect(self._path)
        self.addCleanup(connection.close)
        return [row[0] for row in connection.execute("SELECT version FROM schema_version ORDER BY version")]

    async def test_version_1_file_migrates_to_the_stanza_id_index(self) -> None:
        """A file at schema version 1 keeps its archive and gains the (room_id, stanza_id) index on start."""
        import os

        os.makedirs(os.path.dirname(self.url()[len("sqlite://") :]), exist_ok=True)
        connection = sqlite3.connect(self._path)
        connection.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in MIGRATIONS[0]:
            connection.execute(statement.replace("{id}", "INTEGER PRIMARY KEY AUTOINCREMENT"))
        connection.execute("INSERT INTO schema_version (version) VALUES (1)")
        connection.execute("INSERT INTO rooms VALUES ('r1', 'n', '', 'v1', 0)")
        connection.execute(
            "INSERT INTO room_archive (room_id, timestamp_ms, stanza_id, kind, sender, xml) "
            "VALUES ('r1', 5, 'old-id', 'message', 'a@x', '<message/>')"
        )
        connection.commit()
        connection.close()
        store = await self.open()
        found = await store.archived_message("r1", "old-id", "a@x")
        self.assertEqual((found.archive_id, found.timestamp) if found else None, ("1", 5))
        connection = sqlite3.connect(self._path)
        indexes = {row[1] for row in connection.execute("PRAGMA index_list(room_archive)")}
        connection.close()
        self.assertIn("room_archive_by_stanza_id", indexes)

    def test_bad_url(self) -> None:
        """A storage URL of another kind is refused."""
        with self.assertRaises(StoreError):
            open_store("mysql://x", reactor)


class PostgresStoreTests(StoreTests, unittest.TestCase):
    def setUp(self) -> None:
        self._url = fresh_test_database("bridge_test_")

    def url(self) -> str:
        return self._url

    async def test_two_writers_agree_on_one_order(self) -> None:
        """Two processes' stores on one database, one clock 1000 s behind the other, posting to one room
        at once: archive ids and timestamps rise together, and every message is archived once."""
        ahead, behind = Clock(), Clock()
        ahead.advance(2000)
        behind.advance(1000)
        first, second = await self.open(ahead), await self.open(behind)
        await first.create_room(Room("c1", "n", "", "v1", (("a@x", "owner"), ("b@x", "member"))), None)
        posts = []
        for n in range(40):
            store, sender = (first, "a@x") if n % 2 else (second, "b@x")
            message = NewArchiveItem(f"m{n}", "message", sender, f"<message>{n}</message>")
            posts.append(defer.Deferred.fromCoroutine(store.post_message("c1", message, dedupe=True)))
        await defer.gatherResults(posts)
        page = await first.query_archive("c1", ArchiveQuery(limit=100))
        self.assertEqual(sorted(i.stanza_id for i in page.items), sorted(f"m{n}" for n in range(40)))
        ids = [int(i.archive_id) for i in page.items]
        stamps = [i.timestamp for i in page.items]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(stamps, sorted(stamps))

    async def test_retried_id_is_archived_once_by_two_writers(self) -> None:
        """The same client id posted through two processes at once is archived once; the other is a retry."""
        first, second = await self.open(), await self.open()
        await first.create_room(Room("c2", "n", "", "v1", (("a@x", "owner"),)), None)
        message = NewArchiveItem("same", "message", "a@x", "<message/>")
        results = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(s.post_message("c2", message, dedupe=True)) for s in (first, second) * 3]
        )
        self.assertEqual(sorted(r.retry for r in results), [False] + [True] * 5)
        self.assertEqual((await first.query_archive("c2", ArchiveQuery())).count, 1)

    async def test_message_racing_a_removal_is_refused(self) -> None:
        """A message from an occupant whose removal is being committed waits for the room's lock and is
        refused once the removal commits, not archived."""
        import psycopg2

        store = await self.open()
        await store.create_room(Room("c3", "n", "", "v1", (("a@x", "owner"), ("b@x", "member"))), None)
        remover = psycopg2.connect(self._url)
        self.addCleanup(remover.close)
        cursor = remover.cursor()
        cursor.execute("SELECT 1 FROM rooms WHERE room_id = 'c3' FOR UPDATE")
        cursor.execute("DELETE FROM affiliations WHERE room_id = 'c3' AND user_jid = 'b@x'")
        posting = defer.Deferred.fromCoroutine(store.post_message("c3", item("late", "b@x"), dedupe=False))
        await task.deferLater(reactor, 0.5, lambda: None)
        self.assertFalse(posting.called)  # waiting for the room's lock
        remover.commit()
        with self.assertRaises(NotOccupant):
            await posting
        self.assertEqual((await store.query_archive("c3", ArchiveQuery())).count, 0)

    def schema_versions(self) -> list[int]:
        import psycopg2

        connection = psycopg2.connect(self._url)
        self.addCleanup(connection.close)
        with connection.cursor() as cursor:
            cursor.execute("SELECT version FROM schema_version ORDER BY version")
            return [row[0] for row in cursor.fetchall()]
