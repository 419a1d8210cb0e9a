"""Reading and checking request input: JSON bodies, query strings, JIDs.

Each helper raises a ``BadRequest`` with the client-facing message once, so handlers state
what they need instead of repeating type and format checks.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.server import Request
from twisted.words.protocols.jabber.jid import JID

from bridge.api.errors import BadRequest
from bridge.http.checks import require_json_body
from bridge.protocol.convert import CHAT_MARKERS, CHAT_STATES
from bridge.protocol.jid import parse
from bridge.protocol.properties import PropertyValue, smack_property
from bridge.protocol.upload import valid_http_url
from bridge.protocol.xml import is_xml_text

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
# The latest ``before`` an archive query can carry: the archive code asks for messages at
# or before ``before - 1`` ms, and Python's datetime (XEP-0082 times) ends with 9999-12-31.
MAX_BEFORE = 253402300800000  # 10000-01-01T00:00:00Z in Unix ms
# Smack properties of one message: how many, and how long a name and a string value may be.
MAX_PROPERTIES = 64
MAX_PROPERTY_NAME = 256
MAX_PROPERTY_VALUE = 8192


def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object; 415 if it is not declared JSON, 400 for anything else."""
    require_json_body(request)
    raw = request.content.read() if request.content is not None else b""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("Invalid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("Invalid JSON: expected an object")
    return body


def text(body: dict[str, Any], key: str, missing: str, invalid: str | None = None) -> str:
    """A required, non-empty string that XML can carry."""
    value = body.get(key)
    if value is None or value == "":
        raise BadRequest(missing)
    if not isinstance(value, str) or not is_xml_text(value):
        raise BadRequest(invalid or missing)
    return value


def optional_text(body: dict[str, Any], key: str, invalid: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or not is_xml_text(value):
        raise BadRequest(invalid)
    return value


def parse_jid(value: object, invalid: str, bare: bool = True) -> JID:
    """A stringprep-normalised JID with a user part (and no resource when ``bare``)."""
    jid = parse(value) if isinstance(value, str) and is_xml_text(value) else None
    if jid is None or not jid.user or (bare and jid.resource):
        raise BadRequest(invalid)
    return jid


def query_args(request: Request, allowed: set[str]) -> dict[str, str]:
    """The query string as one value per name; unknown or repeated names are refused."""
    args: dict[str, str] = {}
    # Twisted drops names without "=" ("?kuropatwa"); MongooseIM refused them, so do we.
    _, _, query = (request.uri or b"").partition(b"?")
    if any(piece and b"=" not in piece for piece in query.split(b"&")):
        raise BadRequest("Invalid query string")
    raw_args: dict[bytes, list[bytes]] = request.args or {}
    for raw_name, values in raw_args.items():
        try:
            name = raw_name.decode("utf-8")
            decoded = [v.decode("utf-8") for v in values]
        except UnicodeDecodeError:
            raise BadRequest("Invalid query string") from None
        if name not in allowed or len(decoded) != 1:
            raise BadRequest("Invalid query string")
        args[name] = decoded[0]
    return args


def _non_negative_int(value: str) -> int | None:
    if not value.isascii() or not value.isdigit() or len(value) > 15:
        return None
    return int(value)


def archive_window(request: Request) -> tuple[int, int | None]:
    """``limit`` (default 50, at most 500) and ``before`` (Unix ms) of an archive query."""
    args = query_args(request, {"limit", "before"})
    limit = DEFAULT_LIMIT
    if "limit" in args:
        parsed = _non_negative_int(args["limit"])
        if parsed is None or parsed > MAX_LIMIT:
            raise BadRequest("Invalid limit")
        limit = parsed
    before = None
    if "before" in args:
        before = _non_negative_int(args["before"])
        if before is None or before > MAX_BEFORE:
            raise BadRequest("Invalid value of 'before'")
    return limit, before


# --- Message extensions (one-to-one and room messages share them) ---


def message_properties(body: dict[str, Any]) -> dict[str, PropertyValue] | None:
    """Optional Smack properties: a flat map of names to strings, numbers or booleans.

    Each value must have a Smack type (``bridge.protocol.properties.smack_property``):
    integers within Java's long, finite floats; anything else, a nested object or list,
    null, too many or too long is 400 "Invalid properties".
    """
    properties = body.get("properties")
    if properties is None:
        return None
    if not isinstance(properties, dict) or len(properties) > MAX_PROPERTIES:
        raise BadRequest("Invalid properties")
    for name, value in properties.items():
        if not name or len(name) > MAX_PROPERTY_NAME or not is_xml_text(name):
            raise BadRequest("Invalid properties")
        try:
            _, value_text = smack_property(value)
        except ValueError:
            raise BadRequest("Invalid properties") from None
        if len(value_text) > MAX_PROPERTY_VALUE or not is_xml_text(value_text):
            raise BadRequest("Invalid properties")
    return properties


def markable(body: dict[str, Any]) -> bool:
    """XEP-0333 ``markable``: a JSON boolean, false by default."""
    value = body.get("markable", False)
    if not isinstance(value, bool):
        raise BadRequest("Invalid markable")
    return value


def chat_marker(body: dict[str, Any]) -> dict[str, str] | None:
    """An XEP-0333 ``chat_marker`` ``{type: received|displayed|acknowledged, id}``, or None."""
    marker = body.get("chat_marker")
    if marker is None:
        return None
    if (
        not isinstance(marker, dict)
        or marker.get("type") not in CHAT_MARKERS
        or not isinstance(marker.get("id"), str)
        or not marker["id"]
        or not is_xml_text(marker["id"])
    ):
        raise BadRequest("Invalid chat marker")
    return {"type": marker["type"], "id": marker["id"]}


def chat_state(body: dict[str, Any]) -> str | None:
    """An XEP-0085 ``chat_state`` (active, composing, paused, inactive, gone), or None."""
    state = body.get("chat_state")
    if state is None:
        return None
    if state not in CHAT_STATES:
        raise BadRequest("Invalid chat_state")
    return str(state)


def oob_url(body: dict[str, Any]) -> str | None:
    """An XEP-0066 ``oob_url``: an absolute http(s) URL of at most 2048 characters, or None."""
    url = body.get("oob_url")
    if url is None:
        return None
    if not isinstance(url, str) or not valid_http_url(url):
        raise BadRequest("Invalid oob_url")
    return url


# --- Client message ids (DESIGN.md, "Idempotent retries") ---

MAX_CLIENT_ID = 64
_CLIENT_ID_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-")


def client_id(body: dict[str, Any]) -> str | None:
    """An optional client ``id`` (1-64 of ``[A-Za-z0-9_.:-]``) to become the stanza id, or None.

    The alphabet is narrow on purpose: the id is echoed, stored and compared as it is, so it
    must need no stringprep, escaping or normalisation on any server. Anything else given
    (not a string, empty, too long, other characters) is 400 "Invalid id".
    """
    value = body.get("id")
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CLIENT_ID:
        raise BadRequest("Invalid id")
    if not _CLIENT_ID_CHARACTERS.issuperset(value):
        raise BadRequest("Invalid id")
    return value
