"""The MUC Light component: an XEP-0114 external component implementing MongooseIM's MUC
Light protocol, with its rooms and room archive in the bridge's store (``bridge.store``).

``component`` holds the reconnecting stream, ``service`` the protocol handler attached to
it, ``rooms`` the rules, ``presence`` the occupants' available resources, ``archive`` MAM.
"""

from __future__ import annotations

from typing import Any

from bridge.config import MucLightConfig
from bridge.muclight.component import ComponentConnection
from bridge.muclight.rooms import RoomSettings
from bridge.muclight.service import MucLightService
from bridge.store import Store


def build_component(config: MucLightConfig, store: Store, reactor: Any) -> ComponentConnection:
    """The component connection for ``[muclight]``, with the MUC Light service attached."""
    connection = ComponentConnection(reactor, config.host, config.port, config.service, config.secret)
    settings = RoomSettings(config.all_can_configure, config.all_can_invite, config.max_occupants)
    MucLightService(config.service, store, settings).setHandlerParent(connection)
    return connection
