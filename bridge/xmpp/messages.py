"""One-to-one messages (RFC 6121 section 5) sent on a user's session."""

from __future__ import annotations

from twisted.words.xish import domish

from bridge.xmpp.session import Session


async def send_acknowledged(session: Session, message: domish.Element) -> None:
    """Send ``message`` and return once the server has processed it.

    The server handles a stream's stanzas in order, so the answer to a ping sent after
    the message means the message was routed (and archived) before it; messages of one
    reactor turn on one session share that ping (``Session.send_acknowledged``).
    """
    await session.send_acknowledged(message)
