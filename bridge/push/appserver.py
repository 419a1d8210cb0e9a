"""The app server's XMPP side: the push service JID accepts the user's server's publish.

XEP-0357 section 5 (Publishing): the user's server sends an IQ set with a pubsub
``<publish node=...>`` whose item holds a ``urn:xmpp:push:summary`` form. It is addressed
to the push service, here the MUC Light component's domain, and must come from the user's
own server: its ``from`` is the domain of the webhook's user (Prosody's mod_cloud_notify
and ejabberd's mod_push send that) or her bare JID (as the XEP also allows). Anything
else for a known node, and any unknown node, is answered ``item-not-found``: XEP-0357
section 8 makes the server disable push for that node (Prosody after ``push_max_errors``).
A known node's publish is queued (``bridge.push.worker``) before the result goes back.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.words.protocols.jabber.error import StanzaError

from bridge.muclight.handlers.base import SERVICE, MucLightHandler, Reply, Request
from bridge.muclight.handlers.state import ServiceState
from bridge.protocol.push import NS_PUBSUB, parse_publish
from bridge.push.payload import notification


class PushPublishHandler(MucLightHandler):
    """Pubsub publish to the service JID: a notification for one webhook."""

    iq_handlers = {(SERVICE, "set", NS_PUBSUB, "pubsub"): "publish"}

    def __init__(self, state: ServiceState, queued: Callable[[], None]) -> None:
        super().__init__(state)
        self.queued = queued

    async def publish(self, request: Request) -> Reply:
        published = parse_publish(request.payload)
        if published is None:
            raise StanzaError("bad-request")
        webhook = await self.store.webhook_by_node(published.node)
        sender = request.sender
        if webhook is None or webhook.gone:
            raise StanzaError("item-not-found")
        user_domain = webhook.user.split("@", 1)[-1]
        from_server = sender.user is None and sender.host == user_domain and not sender.resource
        from_account = sender.user is not None and sender.userhost() == webhook.user and not sender.resource
        if not (from_server or from_account):
            raise StanzaError("item-not-found")
        await self.store.enqueue_push([(webhook.webhook_id, notification(webhook, published))])
        self.queued()
        return None
