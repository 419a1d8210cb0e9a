"""Registering and removing webhooks, and keeping the user's server in step (XEP-0357 section 5).

``POST /api/push`` checks the URL (``bridge.push.urls``), asks the server whether it offers
push, stores the webhook (with a fresh secret and XEP-0357 node) and then enables push for
that node from the user's session; if enabling fails the webhook is removed again, so a
stored webhook is one the server was asked to notify. ``DELETE`` removes it first and
then disables push: if the disable is lost, the server's next publish to the unknown node
gets ``item-not-found`` and the server gives up on it by itself.

A webhook that answers ``410 Gone`` (``bridge.push.worker``) is marked gone; push is
disabled on the server from the user's live session when she has one here, else at her
next session, and the webhook is removed then.
"""

from __future__ import annotations

import secrets
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.protocols.jabber.error import StanzaError

from bridge.config import PushConfig
from bridge.push.signing import new_secret
from bridge.push.urls import check_url
from bridge.store import Store, Webhook
from bridge.xmpp.errors import FeatureUnavailable, XmppError
from bridge.xmpp.push import NO_PUSH, disable_push, enable_push, server_has_push

log = Logger()


class TooManyWebhooks(Exception):
    """The user has ``push.max_webhooks`` webhooks already."""


class PushRegistry:
    """The users' webhooks in ``store``, and push turned on and off on their servers."""

    def __init__(self, store: Store, config: PushConfig, service: str) -> None:
        self.store = store
        self.config = config
        self.service = service
        # Each user's live session on this process (from the pool's session_opened hook).
        self._live: dict[str, Any] = {}

    async def register(self, session: Any, url: object) -> Webhook:
        """A new webhook for the session's user; ``InvalidUrl``, ``HostNotAllowed``,
        ``FeatureUnavailable``, ``TooManyWebhooks`` or the server's refusal otherwise."""
        checked = check_url(url, self.config.allowed_hosts)
        if not await server_has_push(session):
            raise FeatureUnavailable(NO_PUSH)
        webhook = Webhook(
            webhook_id=secrets.token_hex(8),
            user=session.jid.userhost(),
            url=checked.url,
            secret=new_secret(),
            node=secrets.token_urlsafe(18),
        )
        if not await self.store.add_webhook(webhook, self.config.max_webhooks):
            raise TooManyWebhooks(webhook.user)
        try:
            await enable_push(session, self.service, webhook.node)
        except BaseException:
            await self.store.remove_webhook(webhook.user, webhook.webhook_id)
            raise
        log.info(
            "Push enabled for {user}: webhook {id} on {host}",
            user=webhook.user,
            id=webhook.webhook_id,
            host=checked.host,
        )
        return webhook

    async def webhooks(self, user: str) -> list[Webhook]:
        """``user``'s webhooks that still take deliveries."""
        return [webhook for webhook in await self.store.user_webhooks(user) if not webhook.gone]

    async def remove(self, session: Any, webhook_id: str) -> bool:
        """Remove one of the session's user's webhooks and disable its push; False if she has none of that id."""
        webhook = await self.store.remove_webhook(session.jid.userhost(), webhook_id)
        if webhook is None:
            return False
        await self._disable(session, webhook)
        return True

    async def _disable(self, session: Any, webhook: Webhook) -> None:
        try:
            await disable_push(session, self.service, webhook.node)
        except (StanzaError, XmppError) as e:
            # Not fatal: the server's next publish for the node gets item-not-found.
            log.warn(
                "Disabling push for webhook {id} of {user} failed: {why}",
                id=webhook.webhook_id,
                user=webhook.user,
                why=str(e) or type(e).__name__,
            )

    def gone(self, webhook: Webhook) -> None:
        """The webhook answered 410 (and is marked gone): disable push now if she is connected here."""
        session = self._live.get(webhook.user)
        if session is not None and session.alive:
            defer.Deferred.fromCoroutine(self._forget_gone(session, [webhook]))

    async def _forget_gone(self, session: Any, webhooks: list[Webhook]) -> None:
        for webhook in webhooks:
            await self._disable(session, webhook)
            await self.store.remove_webhook(webhook.user, webhook.webhook_id)
            log.info(
                "Webhook {id} of {user} answered 410 Gone: removed, push disabled",
                id=webhook.webhook_id,
                user=webhook.user,
            )

    def session_opened(self, session: Any) -> None:
        """A ``SessionPool.session_opened`` hook: track it, and finish what 410 answers left to do."""
        user = session.jid.userhost()
        self._live[user] = session
        session.ended.addBoth(lambda _: self._live.pop(user, None) if self._live.get(user) is session else None)
        defer.Deferred.fromCoroutine(self._catch_up(session)).addErrback(
            lambda failure: log.warn("Push clean-up for {user} failed: {why}", user=user, why=failure.getErrorMessage())
        )

    async def _catch_up(self, session: Any) -> None:
        gone = [webhook for webhook in await self.store.user_webhooks(session.jid.userhost()) if webhook.gone]
        if gone:
            await self._forget_gone(session, gone)
