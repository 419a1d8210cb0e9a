"""XEP-0357 from the user's session: does her server offer push, and turning it on and off.

The feature ``urn:xmpp:push:0`` is advertised on the account (the user's bare JID: Prosody's
mod_cloud_notify, ejabberd's mod_push) and sometimes on the server; both are asked, as for
MAM (``bridge.xmpp.capabilities.discover``). Registration is rare, so nothing is cached: a
server that gains the module is seen at once.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from bridge.protocol.push import NS_PUSH, disable, enable
from bridge.xmpp.capabilities import discover

NO_PUSH = "the XMPP server has no push (XEP-0357)"


async def server_has_push(session: Any) -> bool:
    """Whether the session's server (or her account) advertises ``urn:xmpp:push:0``."""
    try:
        features = await discover(session)
    except defer.FirstError as e:
        # One of the two disco round trips failed (a timeout, the stream ended): that error.
        e.subFailure.raiseException()
    return NS_PUSH in features.features


async def enable_push(session: Any, service: str, node: str) -> None:
    """Ask the user's server to publish notifications for ``node`` to ``service``.

    The server's refusal is its ``StanzaError`` (mapped to HTTP by ``bridge.api.errors``).
    """
    await session.iq("set", enable(service, node))


async def disable_push(session: Any, service: str, node: str) -> None:
    """Ask the user's server to stop publishing for ``node``."""
    await session.iq("set", disable(service, node))
