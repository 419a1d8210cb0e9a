"""The store in SQL: SQLite (``sqlite3``) or PostgreSQL (``psycopg2``), through
``twisted.enterprise.adbapi`` so every query runs on the pool's threads, not the reactor.

The schema is created and migrated on start: ``schema_version`` holds the last migration
applied, and each migration runs in its own transaction (on PostgreSQL under an advisory
lock, so processes starting together migrate once). SQLite runs in WAL mode with
``synchronous=FULL`` and one connection, so a commit is on disk before its Deferred fires
and writers never contend. On PostgreSQL several processes write (DESIGN.md, "Several
processes"): every transaction that changes a room or archives into it first locks the
room's row (``SELECT ... FOR UPDATE``), so each room has one order of changes and
messages, a message is checked against the occupants in the transaction that archives it,
and archive times never go back (``_stamp``). The schema itself is ``bridge.store.schema``.

Over 300 lines on purpose: it is one class, every operation of the ``Store`` interface as a
blocking interaction (``_name``) and its async face (``name``) side by side, so that each
transaction's statements read in one place. The offline-push queries are a mixin of their
own, ``bridge.store.sql_push``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from bridge.store import (
    ArchivedItem,
    ArchivePage,
    ArchiveQuery,
    NewArchiveItem,
    NotOccupant,
    Posted,
    Room,
    RoomExists,
    Store,
    StoreError,
    VersionConflict,
)
from bridge.store.schema import MIGRATIONS, sqlite_setup
from bridge.store.sql_push import PushQueries

log = Logger()

T = TypeVar("T")


class SqlStore(PushQueries, Store):
    """``Store`` on a DB-API module through an adbapi connection pool.

    ``clock`` stamps archived items (the reactor in production, a ``Clock`` in tests).
    """

    def __init__(
        self,
        dialect: str,
        pool_factory: Callable[[], adbapi.ConnectionPool],
        integrity: type[Exception],
        clock: IReactorTime,
    ) -> None:
        self.dialect = dialect
        self._clock = clock
        self._pool_factory = pool_factory
        self._pool: adbapi.ConnectionPool | None = None
        self._integrity: type[Exception] = integrity
        self._ready: defer.Deferred[None] = defer.Deferred()
        self._failed = False

    @classmethod
    def from_url(cls, url: str, reactor: Any, clock: IReactorTime | None = None) -> SqlStore:
        """The store for ``url``; its pool runs on ``reactor``'s threads, stamps come from
        ``clock`` (default: ``reactor``)."""
        clock = reactor if clock is None else clock
        if url.startswith("sqlite://"):
            import sqlite3

            path = url[len("sqlite://") :]

            def sqlite_pool() -> adbapi.ConnectionPool:
                directory = os.path.dirname(path)
                if directory:
                    os.makedirs(directory, exist_ok=True)
                return adbapi.ConnectionPool(
                    "sqlite3",
                    path,
                    check_same_thread=False,
                    cp_min=1,
                    cp_max=1,
                    cp_openfun=sqlite_setup,
                    cp_reactor=reactor,
                    cp_noisy=False,
                )

            return cls("sqlite", sqlite_pool, sqlite3.IntegrityError, clock)
        if url.startswith(("postgresql://", "postgres://")):
            try:
                import psycopg2
            except ImportError:
                raise StoreError("storage.url names PostgreSQL but psycopg2 is not installed") from None

            def postgres_pool() -> adbapi.ConnectionPool:
                return adbapi.ConnectionPool(
                    "psycopg2", url, cp_min=1, cp_max=4, cp_reactor=reactor, cp_noisy=False, cp_reconnect=True
                )

            return cls("postgresql", postgres_pool, psycopg2.IntegrityError, clock)
        raise StoreError("storage.url: expected sqlite:///path or postgresql://...")

    # -- plumbing

    def _now_ms(self) -> int:
        # Read on a pool thread, as time.time was: a reactor's or a Clock's seconds() only
        # reads the time, which is safe from any thread.
        return int(self._clock.seconds() * 1000)

    def is_archive_id(self, text: str) -> bool:
        """Archive ids here are the archive table's row numbers, in decimal."""
        return text.isascii() and text.isdigit() and len(text) <= 18

    def _sql(self, statement: str) -> str:
        # "{lock}": a row lock for the rest of the transaction. SQLite has none and needs
        # none: its one connection runs one transaction at a time.
        if self.dialect == "postgresql":
            statement = statement.replace("?", "%s").replace("{lock}", "FOR UPDATE")
            return statement.replace("{id}", "BIGSERIAL PRIMARY KEY")
        return statement.replace("{lock}", "").replace("{id}", "INTEGER PRIMARY KEY AUTOINCREMENT")

    async def start(self) -> None:
        """Open the pool and migrate the schema; queries issued meanwhile wait for it."""
        try:
            self._pool = self._pool_factory()
            self._pool.start()
            applied = await self._pool.runInteraction(self._migrate)
        except Exception as e:
            self._failed = True
            if not self._ready.called:
                self._ready.callback(None)
            raise StoreError(f"cannot open the store: {e}") from e
        if applied:
            log.info("Store schema migrated to version {version} ({dialect})", version=applied, dialect=self.dialect)
        self._ready.callback(None)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _migrate(self, cursor: Any) -> int:
        if self.dialect == "postgresql":
            # First, before even the CREATE ... IF NOT EXISTS: two processes creating the
            # table at once collide in PostgreSQL's catalog (a unique violation on pg_type).
            cursor.execute("SELECT pg_advisory_xact_lock(73160514)")
        else:
            # Python's sqlite3 opens no transaction before DDL: without this, two processes
            # starting on a new file both create the tables ("table rooms already exists"),
            # and a crash mid-migration would leave half a schema. IMMEDIATE takes the write
            # lock now; the other process waits for it (busy_timeout) and finds the schema.
            cursor.execute("BEGIN IMMEDIATE")
        cursor.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        cursor.execute("SELECT MAX(version) FROM schema_version")
        current = cursor.fetchone()[0] or 0
        for number, statements in enumerate(MIGRATIONS, start=1):
            if number <= current:
                continue
            for statement in statements:
                cursor.execute(self._sql(statement))
            cursor.execute(self._sql("INSERT INTO schema_version (version) VALUES (?)"), (number,))
        return len(MIGRATIONS) if current < len(MIGRATIONS) else 0

    async def _run(self, interaction: Callable[..., T], *args: Any) -> T:
        await self._wait_ready()
        assert self._pool is not None
        try:
            return await self._pool.runInteraction(interaction, *args)
        except (StoreError, RoomExists, VersionConflict):
            raise
        except self._integrity as e:
            raise VersionConflict(str(e)) from None

    async def _wait_ready(self) -> None:
        if not self._ready.called:
            waiting: defer.Deferred[None] = defer.Deferred()

            def done(result: object) -> object:
                waiting.callback(None)
                return result

            self._ready.addBoth(done)
            await waiting
        if self._pool is None or self._failed:
            raise StoreError("the store is not open")

    def _exec(self, cursor: Any, statement: str, args: tuple[Any, ...] = ()) -> Any:
        cursor.execute(self._sql(statement), args)
        return cursor

    # -- rooms

    def _load_room(self, cursor: Any, room_id: str, lock: bool = False) -> Room | None:
        """The room; with ``lock``, its row stays locked until the transaction ends, which
        serialises every change and message of the room across processes (PostgreSQL)."""
        statement = "SELECT roomname, subject, version FROM rooms WHERE room_id = ?" + (" {lock}" if lock else "")
        row = self._exec(cursor, statement, (room_id,)).fetchone()
        if row is None:
            return None
        affiliations = self._exec(
            cursor,
            "SELECT user_jid, affiliation FROM affiliations WHERE room_id = ? ORDER BY position",
            (room_id,),
        ).fetchall()
        return Room(room_id, row[0], row[1], row[2], tuple((jid, aff) for jid, aff in affiliations))

    async def get_room(self, room_id: str) -> Room | None:
        return await self._run(self._load_room, room_id)

    def _user_rooms(self, cursor: Any, user: str) -> list[Room]:
        rows = self._exec(
            cursor,
            "SELECT r.room_id, r.roomname, r.subject, r.version FROM rooms r "
            "JOIN affiliations a ON a.room_id = r.room_id WHERE a.user_jid = ? ORDER BY r.created_at, r.room_id",
            (user,),
        ).fetchall()
        return [Room(*row) for row in rows]

    async def user_rooms(self, user: str) -> list[Room]:
        return await self._run(self._user_rooms, user)

    def _write_affiliations(self, cursor: Any, room: Room) -> None:
        self._exec(cursor, "DELETE FROM affiliations WHERE room_id = ?", (room.room_id,))
        for position, (jid, affiliation) in enumerate(room.affiliations):
            self._exec(
                cursor,
                "INSERT INTO affiliations (room_id, user_jid, affiliation, position) VALUES (?, ?, ?, ?)",
                (room.room_id, jid, affiliation, position),
            )

    def _stamp(self, cursor: Any, room_id: str) -> int:
        """The time for the room's next archive entry: the clock, or the room's last entry's
        time if that is later (another process's clock, or a clock that stepped back), so
        that archive order and time order never disagree. Run under the room's lock."""
        row = self._exec(
            cursor,
            "SELECT timestamp_ms FROM room_archive WHERE room_id = ? ORDER BY archive_id DESC LIMIT 1",
            (room_id,),
        ).fetchone()
        now = self._now_ms()
        return now if row is None else max(now, row[0])

    def _append(self, cursor: Any, room_id: str, item: NewArchiveItem, now: int) -> ArchivedItem:
        self._exec(
            cursor,
            "INSERT INTO room_archive (room_id, timestamp_ms, stanza_id, kind, sender, xml) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING archive_id",
            (room_id, now, item.stanza_id, item.kind, item.sender, item.xml),
        )
        archive_id = cursor.fetchone()[0]
        return ArchivedItem(str(archive_id), now, item.stanza_id, item.kind, item.sender, item.xml)

    def _create(self, cursor: Any, room: Room, notice: NewArchiveItem | None) -> list[ArchivedItem]:
        if self._exec(cursor, "SELECT 1 FROM rooms WHERE room_id = ?", (room.room_id,)).fetchone() is not None:
            raise RoomExists(room.room_id)
        now = self._now_ms()
        try:
            self._exec(
                cursor,
                "INSERT INTO rooms (room_id, roomname, subject, version, created_at) VALUES (?, ?, ?, ?, ?)",
                (room.room_id, room.name, room.subject, room.version, now),
            )
        except self._integrity:
            raise RoomExists(room.room_id) from None
        # A destroyed room's leftovers never leak into a new room of the same id.
        self._exec(cursor, "DELETE FROM room_archive WHERE room_id = ?", (room.room_id,))
        self._write_affiliations(cursor, room)
        return [self._append(cursor, room.room_id, notice, now)] if notice is not None else []

    async def create_room(self, room: Room, notice: NewArchiveItem | None) -> list[ArchivedItem]:
        return await self._run(self._create, room, notice)

    def _update(
        self, cursor: Any, room_id: str, expected: str, room: Room | None, archive: list[NewArchiveItem]
    ) -> list[ArchivedItem]:
        locked = self._exec(cursor, "SELECT version FROM rooms WHERE room_id = ? {lock}", (room_id,)).fetchone()
        if locked is None or locked[0] != expected:
            raise VersionConflict(room_id)
        if room is None:
            self._exec(cursor, "DELETE FROM rooms WHERE room_id = ? AND version = ?", (room_id, expected))
            if cursor.rowcount != 1:
                raise VersionConflict(room_id)
            self._exec(cursor, "DELETE FROM affiliations WHERE room_id = ?", (room_id,))
            self._exec(cursor, "DELETE FROM room_archive WHERE room_id = ?", (room_id,))
            return []
        self._exec(
            cursor,
            "UPDATE rooms SET roomname = ?, subject = ?, version = ? WHERE room_id = ? AND version = ?",
            (room.name, room.subject, room.version, room_id, expected),
        )
        if cursor.rowcount != 1:
            raise VersionConflict(room_id)
        self._write_affiliations(cursor, room)
        now = self._stamp(cursor, room_id) if archive else 0
        return [self._append(cursor, room_id, item, now) for item in archive]

    async def update_room(
        self, room_id: str, expected_version: str, room: Room | None, archive: list[NewArchiveItem]
    ) -> list[ArchivedItem]:
        return await self._run(self._update, room_id, expected_version, room, archive)

    # -- archive

    def _archive_message(self, cursor: Any, room_id: str, item: NewArchiveItem) -> ArchivedItem | None:
        if self._exec(cursor, "SELECT 1 FROM rooms WHERE room_id = ? {lock}", (room_id,)).fetchone() is None:
            return None
        return self._append(cursor, room_id, item, self._stamp(cursor, room_id))

    async def archive_message(self, room_id: str, item: NewArchiveItem) -> ArchivedItem | None:
        return await self._run(self._archive_message, room_id, item)

    def _post(self, cursor: Any, room_id: str, item: NewArchiveItem, dedupe: bool) -> Posted | None:
        # One transaction under the room's row lock: membership, the retry lookup, the
        # archive id and the timestamp all see every earlier commit for the room.
        room = self._load_room(cursor, room_id, lock=True)
        if room is None:
            return None
        if item.sender is None or room.affiliation(item.sender) is None:
            raise NotOccupant(room_id)
        if dedupe:
            earlier = self._archived_message(cursor, room_id, item.stanza_id, item.sender)
            if earlier is not None:
                return Posted(room, earlier, retry=True)
        return Posted(room, self._append(cursor, room_id, item, self._stamp(cursor, room_id)))

    async def post_message(self, room_id: str, item: NewArchiveItem, dedupe: bool) -> Posted | None:
        return await self._run(self._post, room_id, item, dedupe)

    def _query(self, cursor: Any, room_id: str, query: ArchiveQuery) -> ArchivePage:
        where = ["room_id = ?"]
        args: list[Any] = [room_id]
        if query.start is not None:
            where.append("timestamp_ms >= ?")
            args.append(query.start)
        if query.end is not None:
            where.append("timestamp_ms <= ?")
            args.append(query.end)
        if query.sender is not None:
            where.append("sender = ?")
            args.append(query.sender)
        filters = " AND ".join(where)
        count = self._exec(cursor, f"SELECT COUNT(*) FROM room_archive WHERE {filters}", tuple(args)).fetchone()[0]
        paging, paging_args = [], []
        if query.after_id is not None:
            paging.append("archive_id > ?")
            paging_args.append(int(query.after_id))
        if query.before_id is not None:
            paging.append("archive_id < ?")
            paging_args.append(int(query.before_id))
        clause = " AND ".join([filters, *paging])
        order = "DESC" if query.from_end or (query.before_id is not None and query.after_id is None) else "ASC"
        rows = self._exec(
            cursor,
            "SELECT archive_id, timestamp_ms, stanza_id, kind, sender, xml FROM room_archive "
            f"WHERE {clause} ORDER BY archive_id {order} LIMIT ?",
            (*args, *paging_args, query.limit + 1),
        ).fetchall()
        complete = len(rows) <= query.limit
        rows = rows[: query.limit]
        if order == "DESC":
            rows.reverse()
        items = [ArchivedItem(str(row[0]), row[1], row[2], row[3], row[4], row[5]) for row in rows]
        return ArchivePage(items, complete, count)

    async def query_archive(self, room_id: str, query: ArchiveQuery) -> ArchivePage:
        for archive_id in (query.after_id, query.before_id):
            if archive_id is not None and not self.is_archive_id(archive_id):
                raise StoreError("not an archive id")
        return await self._run(self._query, room_id, query)

    def _archived_message(self, cursor: Any, room_id: str, stanza_id: str, sender: str) -> ArchivedItem | None:
        row = self._exec(
            cursor,
            "SELECT archive_id, timestamp_ms, stanza_id, kind, sender, xml FROM room_archive "
            "WHERE room_id = ? AND stanza_id = ? AND kind = 'message' AND sender = ? ORDER BY archive_id LIMIT 1",
            (room_id, stanza_id, sender),
        ).fetchone()
        return None if row is None else ArchivedItem(str(row[0]), row[1], row[2], row[3], row[4], row[5])

    async def archived_message(self, room_id: str, stanza_id: str, sender: str) -> ArchivedItem | None:
        return await self._run(self._archived_message, room_id, stanza_id, sender)

    # -- occupants' available resources (bridge.muclight.presence)

    def _set_available(self, cursor: Any, full_jid: str, available: bool) -> None:
        if not available:
            self._exec(cursor, "DELETE FROM available_resources WHERE full_jid = ?", (full_jid,))
            return
        self._exec(
            cursor,
            "INSERT INTO available_resources (full_jid, user_jid, seen_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (full_jid) DO UPDATE SET seen_ms = excluded.seen_ms",
            (full_jid, full_jid.split("/", 1)[0], self._now_ms()),
        )

    async def set_available(self, full_jid: str, available: bool) -> None:
        await self._run(self._set_available, full_jid, available)

    def _available_resources(self, cursor: Any, max_age: float) -> list[str]:
        oldest = self._now_ms() - int(max_age * 1000)
        self._exec(cursor, "DELETE FROM available_resources WHERE seen_ms < ?", (oldest,))
        rows = self._exec(cursor, "SELECT full_jid FROM available_resources ORDER BY seen_ms, full_jid").fetchall()
        return [row[0] for row in rows]

    async def available_resources(self, max_age: float) -> list[str]:
        return await self._run(self._available_resources, max_age)

    # -- blocking

    def _blocking_list(self, cursor: Any, user: str) -> list[tuple[str, str]]:
        rows = self._exec(
            cursor, "SELECT kind, target FROM blocking WHERE user_jid = ? ORDER BY kind, target", (user,)
        ).fetchall()
        return [(kind, target) for kind, target in rows]

    async def blocking_list(self, user: str) -> list[tuple[str, str]]:
        return await self._run(self._blocking_list, user)

    def _set_blocking(self, cursor: Any, user: str, changes: list[tuple[str, str, bool]]) -> None:
        for kind, target, deny in changes:
            self._exec(
                cursor, "DELETE FROM blocking WHERE user_jid = ? AND kind = ? AND target = ?", (user, kind, target)
            )
            if deny:
                self._exec(
                    cursor, "INSERT INTO blocking (user_jid, kind, target) VALUES (?, ?, ?)", (user, kind, target)
                )

    async def set_blocking(self, user: str, changes: list[tuple[str, str, bool]]) -> None:
        await self._run(self._set_blocking, user, changes)

    def _blocking(self, cursor: Any, users: list[str], room_jid: str, by: str) -> set[str]:
        found: set[str] = set()
        for user in users:
            row = self._exec(
                cursor,
                "SELECT 1 FROM blocking WHERE user_jid = ? AND "
                "((kind = 'room' AND target = ?) OR (kind = 'user' AND target = ?))",
                (user, room_jid, by),
            ).fetchone()
            if row is not None:
                found.add(user)
        return found

    async def blocking(self, users: list[str], room_jid: str, by: str) -> set[str]:
        if not users:
            return set()
        return await self._run(self._blocking, users, room_jid, by)

    # -- shared secrets

    def _shared_secret(self, cursor: Any, name: str, candidate: str) -> str:
        # ON CONFLICT DO NOTHING: of processes starting together, the first insert wins and
        # the others read it (PostgreSQL's SELECT sees the row once the winner committed).
        self._exec(
            cursor,
            "INSERT INTO shared_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (name, candidate),
        )
        row = self._exec(cursor, "SELECT value FROM shared_secrets WHERE name = ?", (name,)).fetchone()
        return str(row[0])

    async def stream_token_key(self, candidate: bytes) -> bytes:
        stored = await self._run(self._shared_secret, "stream_token_key", candidate.hex())
        try:
            return bytes.fromhex(stored)
        except ValueError:
            raise StoreError("the stored stream token key is not hexadecimal") from None
