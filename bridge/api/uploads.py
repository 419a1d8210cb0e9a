"""``/api/uploads``: an XEP-0363 upload slot of the user's own server, for attachments.

The client sends ``{filename, size, content_type?}`` and gets ``201 {put_url, get_url,
headers}``: it PUTs the file itself to ``put_url`` with ``headers`` (and the declared size
and type), then sends ``get_url`` as a message's ``oob_url`` (``POST /api/messages``,
XEP-0066). The bytes never pass through the bridge. A size over the service's advertised
``max-file-size`` is refused here (413) without asking it; a service that refuses the
size itself is 413 too; a server with no upload service is 501, as for MAM.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Request

from bridge.api.auth import Authenticator
from bridge.api.errors import ApiError, BadRequest
from bridge.api.input import json_object
from bridge.api.rendering import Response, json_errors, json_route
from bridge.protocol.upload import MAX_SIZE, valid_content_type, valid_filename
from bridge.xmpp.upload import FileTooLarge, InvalidSlot, UploadServices, request_slot


def upload_input(body: dict[str, Any]) -> tuple[str, int, str | None]:
    """(filename, size, content_type) of a ``POST`` body; 400 naming the field otherwise."""
    filename = body.get("filename")
    if filename is None or filename == "":
        raise BadRequest("Missing filename")
    if not isinstance(filename, str) or not valid_filename(filename):
        raise BadRequest("Invalid filename")
    size = body.get("size")
    if size is None or isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
        raise BadRequest("Invalid size")
    content_type = body.get("content_type")
    if content_type is not None and (not isinstance(content_type, str) or not valid_content_type(content_type)):
        raise BadRequest("Invalid content_type")
    return filename, size, content_type


class UploadsApi:
    app = json_errors(Klein())

    def __init__(self, auth: Authenticator, clock: IReactorTime) -> None:
        self._auth = auth
        self._services = UploadServices(clock)

    @app.route("/", methods=["POST"], strict_slashes=False)
    @json_route
    async def create(self, request: Request) -> Response:
        session = await self._auth.session(request)
        filename, size, content_type = upload_input(json_object(request))
        service = await self._services.service(session)
        try:
            slot = await request_slot(session, service, filename, size, content_type)
        except FileTooLarge:
            raise ApiError(413, "File too large") from None
        except InvalidSlot:
            raise ApiError(502, "Invalid upload slot from the XMPP server") from None
        return Response(201, slot.as_json())
