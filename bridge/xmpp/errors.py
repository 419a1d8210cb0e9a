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


class RoomError(XmppError):
    """A MUC Light service refused a room request; the message is meant for the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RoomNotFound(RoomError):
    """No such room (or, from a server that does not say, a room the user is not in)."""


class NotRoomMember(RoomError):
    """The room exists and the user does not occupy it."""


class RoomNotAllowed(RoomError):
    """The user occupies the room but may not do this (not the owner, ...)."""


class RoomExists(RoomError):
    """A room with the requested id exists already."""


class RoomBadRequest(RoomError):
    """The service found the request malformed."""


class RoomServiceNotFound(RoomError):
    """The configured MUC Light service does not answer: not declared, or not connected."""
