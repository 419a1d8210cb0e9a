"""Why an operation on the XMPP side failed, independent of HTTP.

The REST layer maps each of these to a status code in one place (``bridge.api.errors``);
stanza errors from the server arrive as wokkel's ``StanzaError`` and are mapped there too.
"""


class XmppError(Exception):
    """Base of the bridge's own XMPP-side failures."""


class AuthenticationFailed(XmppError):
    """The server rejected the user's credentials (SASL failure)."""


class ServerUnavailable(XmppError):
    """The XMPP server could not be reached, or the stream ended under the request."""


class ServerTimeout(XmppError):
    """The XMPP server did not answer in time."""


class FeatureUnavailable(XmppError):
    """The user's server does not offer a protocol the operation needs (e.g. MAM)."""
