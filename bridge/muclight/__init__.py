"""The MUC Light component: an XEP-0114 external component implementing MongooseIM's MUC
Light protocol, with its rooms and room archive in the bridge's store (``bridge.store``).

``component`` holds the reconnecting stream, ``handlers`` the protocol handlers attached
to it (one per feature), ``rooms`` the rules, ``presence`` the occupants' available
resources, ``archive`` MAM, ``rsm`` paging.
"""

from __future__ import annotations

from typing import Any

from bridge.config import MucLightConfig
from bridge.muclight.component import ComponentConnection
from bridge.muclight.handlers import service_handlers
from bridge.muclight.rooms import RoomSettings
from bridge.store import Store


def build_component(config: MucLightConfig, store: Store, reactor: Any) -> ComponentConnection:
    """The component connection for ``[muclight]``, with the MUC Light handlers attached;
    ``reactor`` is also their clock."""
    connection = ComponentConnection(reactor, config.host, config.port, config.service, config.secret)
    settings = RoomSettings(config.all_can_configure, config.all_can_invite, config.max_occupants)
    for handler in service_handlers(config.service, store, settings, reactor):
        handler.setHandlerParent(connection)
    return connection
