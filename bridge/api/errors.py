"""The API's one error hierarchy, and the one function that turns every failure into an answer.

Error bodies are JSON strings (``"Missing message body"``), as MongooseIM's client API
answered, rendered by ``bridge.http.errors`` (whose ``ApiError`` is the base here, so the
HTTP edge can refuse requests in the same form). XMPP-side failures map to HTTP here and
nowhere else: stanza errors by their condition, an unreachable server to 503 with
``Retry-After``, a round trip that timed out to 504. Anything unexpected is logged with
its traceback and answered with a bare 500 that leaks nothing.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from twisted.words.protocols.jabber.error import StanzaError

from bridge.http.errors import ApiError, write_error, write_json
from bridge.xmpp.errors import (
    FeatureUnavailable,
    NotRoomMember,
    RoomBadRequest,
    RoomError,
    RoomExists,
    RoomNotAllowed,
    RoomNotFound,
    RoomServiceNotFound,
    ServerTimeout,
    ServerUnavailable,
)

__all__ = [
    "ApiError",
    "BadRequest",
    "NotFound",
    "Unauthorized",
    "as_api_error",
    "render_failure",
    "write_json",
]

log = Logger()

RETRY_AFTER_UNAVAILABLE = "5"

# Stanza error conditions (RFC 6120 8.3.3) and the HTTP status each becomes.
STANZA_STATUS = {
    "bad-request": 400,
    "jid-malformed": 400,
    "not-acceptable": 400,
    "policy-violation": 400,
    "forbidden": 403,
    "not-allowed": 403,
    "not-authorized": 403,
    "registration-required": 403,
    "item-not-found": 404,
    "recipient-unavailable": 404,
    "remote-server-not-found": 404,
    "conflict": 409,
    "resource-constraint": 429,
    "feature-not-implemented": 501,
    "service-unavailable": 503,
    "remote-server-timeout": 504,
}


# MUC Light refusals (bridge.xmpp.muclight_client) and their statuses, as MongooseIM answered.
ROOM_STATUS: dict[type[RoomError], int] = {
    RoomNotFound: 404,
    RoomServiceNotFound: 404,
    NotRoomMember: 403,
    RoomNotAllowed: 403,
    RoomExists: 403,
    RoomBadRequest: 400,
}


class BadRequest(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class NotFound(ApiError):
    def __init__(self, message: str = "Not found") -> None:
        super().__init__(404, message)


class Unauthorized(ApiError):
    """Missing or wrong credentials; the realm goes into ``WWW-Authenticate``."""

    def __init__(self, realm: str, message: str = "Unauthorized") -> None:
        super().__init__(401, message, {"WWW-Authenticate": f'Basic realm="{realm}", charset="UTF-8"'})


def _stanza_error(error: StanzaError) -> ApiError:
    status = STANZA_STATUS.get(error.condition, 502)
    text = error.text or error.condition.replace("-", " ").capitalize()
    return ApiError(status, text)


def as_api_error(failure: Failure) -> ApiError:
    """The ApiError a failure is answered with; unexpected ones are logged here."""
    error = failure.value
    if isinstance(error, ApiError):
        return error
    if isinstance(error, ServerUnavailable):
        return ApiError(503, "XMPP server unavailable", {"Retry-After": RETRY_AFTER_UNAVAILABLE})
    if isinstance(error, ServerTimeout):
        return ApiError(504, "XMPP server timeout")
    if isinstance(error, FeatureUnavailable):
        return ApiError(501, str(error))
    if isinstance(error, RoomError):
        return ApiError(ROOM_STATUS.get(type(error), 403), error.message)
    if isinstance(error, StanzaError):
        return _stanza_error(error)
    log.failure("Unexpected error answering a request", failure)
    return ApiError(500, "Internal server error")


def render_failure(request: Request, failure: Failure) -> bytes:
    """Answer ``request`` with the error ``failure`` stands for."""
    return write_error(request, as_api_error(failure))
