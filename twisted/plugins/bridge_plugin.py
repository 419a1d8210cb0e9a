"""Registers ``twistd bridge``; all wiring lives in ``bridge.tap``."""

from twisted.application.service import ServiceMaker

bridge = ServiceMaker(
    "xmpp-rest-bridge",
    "bridge.tap",
    "MongooseIM's client REST API for any XMPP server.",
    "bridge",
)
