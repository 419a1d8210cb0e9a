"""The JSON a webhook gets: ``{"user", "id", "count"?, "from"?, "body"?}`` (DESIGN.md,
"Offline push"), from what the server's summary form carries; ``room`` (a bare room id)
is added for room messages the component notifies itself (``bridge.push.rooms``).

The body is the server's to include (Prosody: ``push_notification_with_body``; ejabberd:
``mod_push``'s ``include_body``); the bridge passes on what it was given, cut at
``bridge.protocol.push.MAX_FIELD`` characters.
"""

from __future__ import annotations

import json

from bridge.protocol.push import Publish
from bridge.store import Webhook


def notification(webhook: Webhook, publish: Publish, room: str | None = None) -> str:
    """The JSON text POSTed to ``webhook`` for ``publish``."""
    data: dict[str, object] = {"user": webhook.user, "id": webhook.webhook_id}
    if publish.count is not None:
        data["count"] = publish.count
    if publish.sender is not None:
        data["from"] = publish.sender
    if publish.body is not None:
        data["body"] = publish.body
    if room is not None:
        data["room"] = room
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
