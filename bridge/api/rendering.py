"""How route handlers answer: a JSON value, or a status with an optional JSON body.

Handlers are ``async`` methods that return a value (200 with that JSON), a ``Response``,
or raise; ``json_route`` renders all three through ``bridge.api.errors``. A request whose
client went away is cancelled by Klein; the cancellation passes through untouched.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from klein import Klein
from klein.interfaces import IKleinRequest
from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure
from twisted.web.server import Request
from werkzeug.exceptions import MethodNotAllowed, NotFound

from bridge.api.errors import render_failure, write_json


@dataclass(frozen=True)
class Response:
    status: int
    body: object = None


Handler = Callable[..., Awaitable[Any]]


def json_route(handler: Handler) -> Callable[..., Awaitable[bytes]]:
    """Wrap an async route handler so that its result or failure is rendered as JSON."""

    @functools.wraps(handler)
    async def render(self: object, request: Request, *args: Any, **kwargs: Any) -> bytes:
        try:
            result = await handler(self, request, *args, **kwargs)
        except CancelledError:
            raise
        except Exception:
            return render_failure(request, Failure())
        if isinstance(result, Response):
            return write_json(request, result.status, result.body)
        return write_json(request, 200, result)

    return render


def method_not_allowed(request: Request, methods: list[str]) -> bytes:
    request.setHeader(b"Allow", ", ".join(sorted(methods)).encode())
    return write_json(request, 405, "Method not allowed")


def json_errors(app: Klein) -> Klein:
    """Make ``app`` answer unknown paths (404) and methods (405) in JSON like the rest.

    Call it before any route is added. It also stops Werkzeug from merging repeated
    slashes: in a mounted group that answers ``/a//b`` with a 308 to the very same URL (a
    redirect loop), and an empty segment is no value of a path parameter anyway (404).
    """
    app.url_map.merge_slashes = False

    @app.handle_errors(NotFound)  # type: ignore[arg-type]
    def not_found(_instance: Any, request: Any, failure: Any) -> bytes:
        # Werkzeug reports an empty path (a mounted group's root) as 404 for any method
        # the rules do not list; ask for that path's methods to answer 405 instead.
        mapper = IKleinRequest(request).mapper
        methods = mapper.allowed_methods(mapper.path_info or "/") if mapper.path_info == "" else []
        if methods:
            return method_not_allowed(request, methods)
        return write_json(request, 404, "Not found")

    @app.handle_errors(MethodNotAllowed)  # type: ignore[arg-type]
    def not_allowed(_instance: Any, request: Any, failure: Any) -> bytes:
        return method_not_allowed(request, failure.value.valid_methods or [])

    return app
