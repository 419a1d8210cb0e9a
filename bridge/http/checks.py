"""Checks before routing: what Klein would misread is refused here (400, 415).

A path or Host that is not UTF-8 gets the 400 its route would give (Klein answers those
with a text/html 400 and a logged traceback each), and a body that is not declared
``application/json`` gets 415, so that no cross-site form can act as a user.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes as unquote

from twisted.web.resource import Resource
from twisted.web.server import Request

from bridge.http.errors import ApiError, write_error, write_json

NOT_JSON = "Content-Type must be application/json"


def is_json_media_type(content_type: bytes | None) -> bool:
    """Whether a Content-Type value is ``application/json`` (any case, parameters allowed)."""
    if content_type is None:
        return False
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json"


def body_size(request: Request) -> int:
    """The length of the request body that was received (without moving its read position)."""
    content = request.content
    if content is None:
        return 0
    position = content.tell()
    content.seek(0, 2)
    size = content.tell()
    content.seek(position)
    return size


def require_json_body(request: Request) -> None:
    """415 for a non-empty body that is not declared ``application/json``.

    A browser sends a cross-site form (``text/plain``, ``application/x-www-form-urlencoded``,
    ``multipart/form-data``) without a CORS pre-flight, and with whatever Basic login it
    cached for the bridge's origin; were such a body read as JSON, any page could act as
    the user. ``application/json`` always needs a pre-flight, which CORS answers. An empty
    body (``DELETE``, ``POST /api/sse/token``) needs no Content-Type.
    """
    if body_size(request) == 0:
        return
    declared = request.requestHeaders.getRawHeaders(b"content-type") or []
    if len(declared) != 1 or not is_json_media_type(declared[0]):
        raise ApiError(415, NOT_JSON)


def path_error(request: Request) -> str | None:
    """The 400 message for a path or Host that is not UTF-8, else None.

    The message is the one the route would give its parameter: the path's segments as
    Twisted splits and percent-decodes them, the first bad one named.
    """
    try:
        request.getRequestHostname().decode("utf-8")
    except UnicodeDecodeError:
        return "Invalid Host header"
    segments = [unquote(segment) for segment in request.path.split(b"/")[1:]]
    for index, segment in enumerate(segments):
        try:
            segment.decode("utf-8")
        except UnicodeDecodeError:
            return _segment_error(segments, index)
    return None


def _segment_error(segments: list[bytes], bad: int) -> str:
    # The REST routes' own messages for a bad parameter (bridge.api), by where it is.
    group = segments[:2]
    if group == [b"api", b"messages"] and bad >= 2:
        return "Invalid interlocutor JID"
    if group == [b"api", b"contacts"] and bad >= 2:
        return "Invalid JID: " + b"/".join(segments[2:]).decode("utf-8", "replace")
    if group == [b"api", b"rooms"] and bad == 2:
        return "Invalid room ID"
    if group == [b"api", b"rooms"] and bad == 4 and segments[3] == b"users":
        return "Invalid user JID"
    return "Invalid request path"


class RequestChecksResource(Resource):
    """Refuses, before routing, what Klein would misread: paths that are not UTF-8, bodies that are not JSON."""

    isLeaf = True

    def __init__(self, wrapped: Resource) -> None:
        super().__init__()
        self._wrapped = wrapped

    def render(self, request: Request) -> bytes | int:
        message = path_error(request)
        if message is not None:
            return write_json(request, 400, message)
        try:
            require_json_body(request)
        except ApiError as error:
            return write_error(request, error)
        return self._wrapped.render(request)
