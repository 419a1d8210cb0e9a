"""The offline-push half of the SQL store (``bridge.push``): users' webhooks and the durable
delivery queue, which several bridge processes drain with leases.

A mixin of ``bridge.store.sql.SqlStore``, kept apart so that each file reads as one concern;
it uses the store's plumbing (``_exec``, ``_run``, ``_now_ms``, ``dialect``) and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from bridge.store import PendingPush, Webhook

T = TypeVar("T")


class PushQueries:
    """The push methods of the ``Store`` interface, on SQLite or PostgreSQL."""

    if TYPE_CHECKING:
        dialect: str

        def _exec(self, cursor: Any, statement: str, args: tuple[Any, ...] = ()) -> Any: ...

        async def _run(self, interaction: Callable[..., T], *args: Any) -> T: ...

        def _now_ms(self) -> int: ...

    _WEBHOOK_COLUMNS = "webhook_id, user_jid, url, secret, node, created_at, gone"

    @staticmethod
    def _webhook(row: Any) -> Webhook:
        return Webhook(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]))

    def _add_webhook(self, cursor: Any, webhook: Webhook, limit: int) -> bool:
        if self.dialect == "postgresql":
            # One user's registrations, one at a time, so that the limit holds across processes.
            cursor.execute("SELECT pg_advisory_xact_lock(73160515, hashtext(%s))", (webhook.user,))
        count = self._exec(cursor, "SELECT COUNT(*) FROM push_webhooks WHERE user_jid = ?", (webhook.user,))
        if count.fetchone()[0] >= limit:
            return False
        self._exec(
            cursor,
            "INSERT INTO push_webhooks (webhook_id, user_jid, url, secret, node, created_at, gone) "
            "VALUES (?, ?, ?, ?, ?, ?, 0)",
            (webhook.webhook_id, webhook.user, webhook.url, webhook.secret, webhook.node, self._now_ms()),
        )
        return True

    async def add_webhook(self, webhook: Webhook, limit: int) -> bool:
        return await self._run(self._add_webhook, webhook, limit)

    def _user_webhooks(self, cursor: Any, user: str) -> list[Webhook]:
        rows = self._exec(
            cursor,
            f"SELECT {self._WEBHOOK_COLUMNS} FROM push_webhooks WHERE user_jid = ? ORDER BY created_at, webhook_id",
            (user,),
        ).fetchall()
        return [self._webhook(row) for row in rows]

    async def user_webhooks(self, user: str) -> list[Webhook]:
        return await self._run(self._user_webhooks, user)

    def _webhook_by_node(self, cursor: Any, node: str) -> Webhook | None:
        row = self._exec(
            cursor, f"SELECT {self._WEBHOOK_COLUMNS} FROM push_webhooks WHERE node = ?", (node,)
        ).fetchone()
        return None if row is None else self._webhook(row)

    async def webhook_by_node(self, node: str) -> Webhook | None:
        return await self._run(self._webhook_by_node, node)

    def _remove_webhook(self, cursor: Any, user: str, webhook_id: str) -> Webhook | None:
        row = self._exec(
            cursor,
            f"SELECT {self._WEBHOOK_COLUMNS} FROM push_webhooks WHERE webhook_id = ? AND user_jid = ?",
            (webhook_id, user),
        ).fetchone()
        if row is None:
            return None
        self._exec(cursor, "DELETE FROM push_webhooks WHERE webhook_id = ?", (webhook_id,))
        self._exec(cursor, "DELETE FROM push_queue WHERE webhook_id = ?", (webhook_id,))
        return self._webhook(row)

    async def remove_webhook(self, user: str, webhook_id: str) -> Webhook | None:
        return await self._run(self._remove_webhook, user, webhook_id)

    def _webhook_gone(self, cursor: Any, webhook_id: str) -> None:
        self._exec(cursor, "UPDATE push_webhooks SET gone = 1 WHERE webhook_id = ?", (webhook_id,))
        self._exec(cursor, "DELETE FROM push_queue WHERE webhook_id = ?", (webhook_id,))

    async def webhook_gone(self, webhook_id: str) -> None:
        await self._run(self._webhook_gone, webhook_id)

    def _enqueue_push(self, cursor: Any, deliveries: list[tuple[str, str]]) -> None:
        now = self._now_ms()
        for webhook_id, payload in deliveries:
            self._exec(
                cursor,
                "INSERT INTO push_queue (webhook_id, payload, created_ms, due_ms) VALUES (?, ?, ?, ?)",
                (webhook_id, payload, now, now),
            )

    async def enqueue_push(self, deliveries: list[tuple[str, str]]) -> None:
        if deliveries:
            await self._run(self._enqueue_push, deliveries)

    def _claim_push(self, cursor: Any, owner: str, lease: float, limit: int) -> list[PendingPush]:
        now = self._now_ms()
        # PostgreSQL: rows another process is claiming right now are skipped, not waited for.
        lock = " FOR UPDATE OF q SKIP LOCKED" if self.dialect == "postgresql" else ""
        rows = self._exec(
            cursor,
            "SELECT q.delivery_id, q.payload, q.created_ms, q.attempts, "
            "w.webhook_id, w.user_jid, w.url, w.secret, w.node, w.created_at, w.gone "
            "FROM push_queue q JOIN push_webhooks w ON w.webhook_id = q.webhook_id "
            f"WHERE q.due_ms <= ? AND q.lease_until_ms <= ? ORDER BY q.due_ms, q.delivery_id LIMIT ?{lock}",
            (now, now, limit),
        ).fetchall()
        until = now + int(lease * 1000)
        claimed = []
        for row in rows:
            # Conditional, so that a row another process leased since the SELECT is not
            # taken (SQLite: Python's sqlite3 opens the transaction only at this UPDATE).
            self._exec(
                cursor,
                "UPDATE push_queue SET lease_until_ms = ?, lease_owner = ? "
                "WHERE delivery_id = ? AND lease_until_ms <= ?",
                (until, owner, row[0], now),
            )
            if cursor.rowcount == 1:
                claimed.append(PendingPush(row[0], self._webhook(row[4:]), row[1], row[2], row[3]))
        return claimed

    async def claim_push(self, owner: str, lease: float, limit: int) -> list[PendingPush]:
        return await self._run(self._claim_push, owner, lease, limit)

    def _finish_push(self, cursor: Any, delivery_id: int) -> None:
        self._exec(cursor, "DELETE FROM push_queue WHERE delivery_id = ?", (delivery_id,))

    async def finish_push(self, delivery_id: int) -> None:
        await self._run(self._finish_push, delivery_id)

    def _retry_push(self, cursor: Any, delivery_id: int, due: float) -> None:
        self._exec(
            cursor,
            "UPDATE push_queue SET due_ms = ?, attempts = attempts + 1, lease_until_ms = 0, lease_owner = '' "
            "WHERE delivery_id = ?",
            (int(due * 1000), delivery_id),
        )

    async def retry_push(self, delivery_id: int, due: float) -> None:
        await self._run(self._retry_push, delivery_id, due)

    def _push_queue_stats(self, cursor: Any) -> tuple[int, int | None]:
        row = self._exec(cursor, "SELECT COUNT(*), MIN(created_ms) FROM push_queue").fetchone()
        return int(row[0]), None if row[1] is None else int(row[1])

    async def push_queue_stats(self) -> tuple[int, int | None]:
        return await self._run(self._push_queue_stats)
