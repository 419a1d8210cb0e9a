"""The MUC Light service as wokkel handlers, one per feature, attached to the component's
stream manager (``bridge.muclight.component``) and sharing one ``ServiceState``:

``presence`` (occupants' available resources, XEP-0356), ``ping`` (XEP-0199), ``disco``
(XEP-0030 with XEP-0059), ``admin`` (create, info, configuration, affiliations, destroy),
``blocking``, ``mam`` (XEP-0313 on rooms), ``groupchat`` (room messages and broadcast),
and ``base.UnhandledIqHandler`` for the IQs none of them takes.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from bridge.muclight.handlers.admin import RoomAdminHandler
from bridge.muclight.handlers.base import MucLightHandler, UnhandledIqHandler
from bridge.muclight.handlers.blocking import BlockingHandler
from bridge.muclight.handlers.disco import DiscoHandler
from bridge.muclight.handlers.groupchat import GroupchatHandler
from bridge.muclight.handlers.mam import RoomArchiveHandler
from bridge.muclight.handlers.ping import PingHandler
from bridge.muclight.handlers.presence import PresenceHandler
from bridge.muclight.handlers.state import ServiceState
from bridge.muclight.rooms import RoomSettings
from bridge.store import Store

HANDLERS: tuple[type[MucLightHandler], ...] = (
    PresenceHandler,
    PingHandler,
    DiscoHandler,
    RoomAdminHandler,
    BlockingHandler,
    RoomArchiveHandler,
    GroupchatHandler,
    UnhandledIqHandler,
)


def service_handlers(service: str, store: Store, settings: RoomSettings, clock: IReactorTime) -> list[MucLightHandler]:
    """The handlers that together serve ``service`` from ``store``, sharing one state."""
    state = ServiceState(service, store, settings, clock)
    return [handler(state) for handler in HANDLERS]
