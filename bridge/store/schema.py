"""The SQL schema of rooms, affiliations, the room archive and blocking lists, and its set-up.

Each migration runs once, in order, inside the transaction that records it
(``SqlStore._migrate``); a new one is appended, never edited.
"""

from __future__ import annotations

from typing import Any

# Each migration is a list of statements; "{id}" is the dialect's auto-increment key.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE rooms (
            room_id TEXT PRIMARY KEY,
            roomname TEXT NOT NULL,
            subject TEXT NOT NULL,
            version TEXT NOT NULL,
            created_at BIGINT NOT NULL)""",
        """CREATE TABLE affiliations (
            room_id TEXT NOT NULL,
            user_jid TEXT NOT NULL,
            affiliation TEXT NOT NULL,
            position INTEGER NOT NULL,
            PRIMARY KEY (room_id, user_jid))""",
        "CREATE INDEX affiliations_by_user ON affiliations (user_jid)",
        """CREATE TABLE room_archive (
            archive_id {id},
            room_id TEXT NOT NULL,
            timestamp_ms BIGINT NOT NULL,
            stanza_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            sender TEXT,
            xml TEXT NOT NULL)""",
        "CREATE INDEX room_archive_by_room ON room_archive (room_id, archive_id)",
        """CREATE TABLE blocking (
            user_jid TEXT NOT NULL,
            kind TEXT NOT NULL,
            target TEXT NOT NULL,
            PRIMARY KEY (user_jid, kind, target))""",
    ],
    # 2: idempotent retries look a room's messages up by stanza id (GroupchatHandler). Not
    # unique: notices and other senders' messages may share an id, and old archives may too.
    ["CREATE INDEX room_archive_by_stanza_id ON room_archive (room_id, stanza_id)"],
    # Stream tokens: secrets every bridge process sharing the store reads at start (the key
    # that signs stream tokens, bridge.api.tokens), each written once, never in a log.
    ["CREATE TABLE shared_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)"],
    # Cluster (issue 13): the component's view of the occupants' available resources
    # (bridge.muclight.presence), so that a process taking the component over
    # (bridge.muclight.leader) delivers to them at once; rows not refreshed for a day expire.
    [
        """CREATE TABLE available_resources (
            full_jid TEXT PRIMARY KEY,
            user_jid TEXT NOT NULL,
            seen_ms BIGINT NOT NULL)""",
        "CREATE INDEX available_resources_by_seen ON available_resources (seen_ms)",
    ],
    # Offline push (XEP-0357, bridge.push): users' webhooks, and the durable delivery queue
    # that several bridge processes drain with leases (push_queue.lease_until_ms).
    [
        """CREATE TABLE push_webhooks (
            webhook_id TEXT PRIMARY KEY,
            user_jid TEXT NOT NULL,
            url TEXT NOT NULL,
            secret TEXT NOT NULL,
            node TEXT NOT NULL UNIQUE,
            created_at BIGINT NOT NULL,
            gone INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX push_webhooks_by_user ON push_webhooks (user_jid)",
        """CREATE TABLE push_queue (
            delivery_id {id},
            webhook_id TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            due_ms BIGINT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            lease_until_ms BIGINT NOT NULL DEFAULT 0,
            lease_owner TEXT NOT NULL DEFAULT '')""",
        "CREATE INDEX push_queue_by_due ON push_queue (due_ms)",
        "CREATE INDEX push_queue_by_webhook ON push_queue (webhook_id)",
    ],
]


def sqlite_setup(connection: Any) -> None:
    """Each SQLite connection of the pool: WAL, durable commits, and waiting on locks."""
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA busy_timeout=5000")
