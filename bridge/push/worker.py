"""The delivery queue's drain: claim due notifications, POST them, settle each one.

The queue lives in the store (``push_queue``), so a crash or a restart loses nothing: a
notification leaves the queue only once it is delivered, gone or dropped. Each process
claims rows with a lease (``Store.claim_push``; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL),
so bridges sharing one database drain the same queue without delivering a row twice; a
process that dies holding rows leaves them to others (or to itself after a restart) once
the lease runs out, ``LEASE`` seconds, longer than a delivery can take.

A failed delivery is released with its next due time (``bridge.push.backoff``); one that
is still failing 24 h after it was queued is dropped. ``410 Gone`` marks the webhook gone
(``bridge.push.registry``). New notifications wake the worker at once; it also polls
every ``POLL`` seconds, for retries that fall due and rows other processes queued.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from bridge.push.backoff import expired, retry_delay
from bridge.push.client import Outcome
from bridge.store import PendingPush, Store, StoreError, Webhook

log = Logger()

POLL = 1.0
LEASE = 60.0
# Deliveries in flight at once, over all hosts (each host has its own, lower, limit).
MAX_IN_FLIGHT = 64


class PushWorker(Service):
    """Drains ``store``'s push queue through ``client`` (a ``WebhookClient``)."""

    def __init__(
        self,
        store: Store,
        client: Any,
        clock: IReactorTime,
        on_gone: Callable[[Webhook], None] = lambda webhook: None,
        count: Callable[[str], None] = lambda outcome: None,
        rand: Callable[[], float] = random.random,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.clock = clock
        self.on_gone = on_gone
        self.count = count
        self.rand = rand
        self.owner = owner or secrets.token_hex(8)
        self.in_flight: set[int] = set()
        self.depth = 0
        self.oldest_ms: int | None = None
        self._timer: IDelayedCall | None = None
        self._draining = False
        self._again = False
        self._work: set[defer.Deferred[None]] = set()
        self._retries: set[IDelayedCall] = set()
        self._store_problem: str | None = None

    # -- scheduling

    def startService(self) -> None:
        super().startService()
        self.wake()

    def stopService(self) -> defer.Deferred[Any]:
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for retry in self._retries:
            if retry.active():
                retry.cancel()
        self._retries.clear()
        # Shutdown does not wait for slow webhooks: in-flight work is cancelled, and a row
        # it held is claimed again once its lease runs out (at least once across a stop).
        work = list(self._work)
        for each in work:
            each.cancel()
        return defer.DeferredList(work, consumeErrors=True)

    def wake(self) -> None:
        """Look at the queue now (a notification was queued, or a delivery ended)."""
        self._retries = {retry for retry in self._retries if retry.active()}
        if not self.running:
            return
        if self._draining:
            self._again = True
            return
        self._track(self._drain())

    def _track(self, work: Any) -> None:
        deferred = defer.Deferred.fromCoroutine(work)
        self._work.add(deferred)
        deferred.addBoth(lambda _: self._work.discard(deferred))

    def _schedule(self) -> None:
        if not self.running:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.clock.callLater(POLL, self.wake)

    async def _drain(self) -> None:
        self._draining = True
        try:
            while True:
                self._again = False
                room = MAX_IN_FLIGHT - len(self.in_flight)
                claimed = await self.store.claim_push(self.owner, LEASE, room) if room > 0 else []
                for pending in claimed:
                    self.in_flight.add(pending.delivery_id)
                    self._track(self._deliver(pending))
                if not self._again and len(claimed) < room:
                    break
                if room <= 0:
                    break
            self.depth, self.oldest_ms = await self.store.push_queue_stats()
            self._store_problem = None
        except defer.CancelledError:
            return
        except StoreError as e:
            # Once per change: the store may stay down for a while, polled every second.
            if str(e) != self._store_problem:
                log.error("Push queue: {why}", why=str(e))
            self._store_problem = str(e)
        except Exception:
            log.failure("Push queue drain failed")
        finally:
            self._draining = False
            self._schedule()

    # -- one delivery

    async def _deliver(self, pending: PendingPush) -> None:
        try:
            await self._settle(pending)
        except defer.CancelledError:
            pass  # stopping: the lease lets this row go in LEASE seconds
        except StoreError as e:
            log.error("Push queue: {why}", why=str(e))
        except Exception:
            log.failure("Push delivery {id} failed unexpectedly", id=pending.delivery_id)
        finally:
            self.in_flight.discard(pending.delivery_id)
            self.wake()

    async def _settle(self, pending: PendingPush) -> None:
        webhook = pending.webhook
        now = self.clock.seconds()
        if webhook.gone:
            await self.store.finish_push(pending.delivery_id)
            return
        if expired(pending.created_ms / 1000, now):
            await self.store.finish_push(pending.delivery_id)
            self.count("dropped")
            log.warn(
                "Push to webhook {id} of {user} dropped after 24 h of failures",
                id=webhook.webhook_id,
                user=webhook.user,
            )
            return
        outcome, why = await self.client.post(webhook.url, pending.payload.encode(), webhook.secret)
        if outcome is Outcome.DELIVERED:
            await self.store.finish_push(pending.delivery_id)
        elif outcome is Outcome.GONE:
            await self.store.webhook_gone(webhook.webhook_id)
            self.on_gone(webhook)
        elif outcome is Outcome.REFUSED:
            await self.store.finish_push(pending.delivery_id)
            log.warn("Push to webhook {id} of {user} refused: {why}", id=webhook.webhook_id, user=webhook.user, why=why)
        else:
            delay = retry_delay(pending.attempts, self.rand)
            due = self.clock.seconds() + delay
            await self.store.retry_push(pending.delivery_id, due)
            # On time, not at the next poll (another process may take it first: also fine).
            if self.running:  # a delivery cancelled by stopService ends here too
                self._retries.add(self.clock.callLater(delay, self.wake))
            log.info(
                "Push to webhook {id} failed ({why}); attempt {n} in {delay:.1f} s",
                id=webhook.webhook_id,
                why=why,
                n=pending.attempts + 2,
                delay=due - self.clock.seconds(),
            )
            self.count("retried")
            return
        self.count(outcome.value)
