"""xmpp-rest-bridge: MongooseIM's client REST API in front of any XMPP server."""

from bridge import wokkel_compat  # noqa: F401  (must run before any wokkel import)

__version__ = "0.1.0"
