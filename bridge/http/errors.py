"""JSON answers, rendered in one place, and the base of the API's error hierarchy.

Every answer with a JSON body goes through ``json_answer``: answers to a Twisted request
(``write_json``, ``write_error``) and the few that have no request to answer and are
written straight to the transport before the connection is closed (``raw_answer``: 408,
413, 414, 431). So status line, reason phrase, headers and body have one form. Error
bodies are JSON strings (``"Request body too large"``), as MongooseIM's client API
answered. ``bridge.api.errors`` builds the rest of the hierarchy on ``ApiError`` and maps
XMPP-side failures to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from twisted.web import http
from twisted.web.server import Request

JSON_TYPE = b"application/json; charset=utf-8"

# Reason phrases by their RFC 9110 and RFC 6585 names, where Twisted has none (it writes
# "Unknown Status") or an older one ("Request-URI Too Long", "Request Time-out").
REASONS = {
    408: b"Request Timeout",
    413: b"Payload Too Large",
    414: b"URI Too Long",
    421: b"Misdirected Request",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
}


class ApiError(Exception):
    """An answer other than success: a status, a message for the client, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def reason(status: int) -> bytes:
    """The reason phrase of ``status``'s status line."""
    return REASONS.get(status) or http.RESPONSES.get(status, b"Unknown Status")


@dataclass(frozen=True)
class JsonAnswer:
    """A rendered answer: status line parts, headers in order, and the encoded body."""

    status: int
    reason: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


def json_answer(status: int, body: object, headers: Mapping[str, str] | None = None) -> JsonAnswer:
    """The one rendering of a JSON answer (an error's body is its message as a JSON string).

    A 204 has neither body nor Content-Type. ``headers`` (``Retry-After``,
    ``WWW-Authenticate``) come before the Content-Type, as each answer set them before.
    """
    # Encoded as Twisted encodes str headers: names in ISO-8859-1, values in UTF-8.
    extra = tuple((name.encode("latin-1"), value.encode("utf-8")) for name, value in (headers or {}).items())
    if status == 204:
        return JsonAnswer(status, reason(status), extra, b"")
    encoded = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return JsonAnswer(status, reason(status), (*extra, (b"Content-Type", JSON_TYPE)), encoded)


def write_json(request: Request, status: int, body: object, headers: Mapping[str, str] | None = None) -> bytes:
    """Set the status and headers of ``request`` and return the encoded JSON body."""
    answer = json_answer(status, body, headers)
    request.setResponseCode(answer.status, answer.reason)
    for name, value in answer.headers:
        request.setHeader(name, value)
    return answer.body


def write_error(request: Request, error: ApiError) -> bytes:
    """Answer ``request`` with ``error``: its status, its headers, its message."""
    return write_json(request, error.status, error.message, error.headers)


def raw_answer(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 answer for the transport, when there is no request to answer.

    It says ``Connection: close``: the caller closes the connection after writing it,
    since the rest of what the client sent cannot be read as a request.
    """
    answer = json_answer(status, message)
    head = [b"HTTP/1.1 %d %s" % (answer.status, answer.reason)]
    head += [b"%s: %s" % header for header in answer.headers]
    head += [b"Connection: close", b"Content-Length: %d" % len(answer.body)]
    return b"\r\n".join(head) + b"\r\n\r\n" + answer.body
