"""XEP-0363 HTTP File Upload: finding the upload service, asking for a slot, reading it.

Pure builders and parsers; the round trips are ``bridge.xmpp.upload``'s. A service
advertises ``urn:xmpp:http:upload:0`` in its disco#info and its size limit in an XEP-0128
form (``FORM_TYPE`` ``urn:xmpp:http:upload:0``, field ``max-file-size``, section 4). A slot
(section 5) is a PUT URL with the headers the client must send, and the GET URL the file
is then served from. Everything the server says is checked before it reaches a client:
only http(s) URLs, and only the headers section 5 allows (``Authorization``, ``Cookie``,
``Expires``) with values that cannot split an HTTP header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.protocol.jid import parse
from bridge.protocol.namespaces import NS_DATA, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_UPLOAD
from bridge.protocol.xml import child, is_xml_text

# The slot headers XEP-0363 section 5 lets a service ask for, by their lower-case names.
SLOT_HEADERS = {"authorization": "Authorization", "cookie": "Cookie", "expires": "Expires"}
# What the API accepts: a file name servers take (no path separators, as Prosody's
# mod_http_file_share refuses them), a size within a signed 64-bit integer, a MIME type.
MAX_FILENAME = 255
MAX_SIZE = 2**63 - 1
MAX_URL = 2048
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
CONTENT_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=({_TOKEN}|\"[^\"\\\r\n]*\"))*")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class UploadService:
    """An upload service of a user's server, and its ``max-file-size`` when it says one."""

    jid: JID
    max_size: int | None


@dataclass(frozen=True)
class Slot:
    """Where to PUT the file (with ``headers``), and where it can be fetched afterwards."""

    put_url: str
    get_url: str
    headers: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {"put_url": self.put_url, "get_url": self.get_url, "headers": dict(self.headers)}


def valid_filename(name: str) -> bool:
    """Whether ``name`` is a file name (no directory part, no control characters) XML can carry."""
    return (
        0 < len(name) <= MAX_FILENAME
        and is_xml_text(name)
        and _CONTROL.search(name) is None
        and "/" not in name
        and "\\" not in name
        and name not in (".", "..")
    )


def valid_content_type(value: str) -> bool:
    """Whether ``value`` is a MIME type (RFC 9110 ``media-type``), ``type/subtype[; p=v]``."""
    return len(value) <= MAX_FILENAME and CONTENT_TYPE.fullmatch(value) is not None


def valid_http_url(value: str, limit: int = MAX_URL) -> bool:
    """Whether ``value`` is an absolute http(s) URL with a host that XML and a header can carry."""
    if not value or len(value) > limit or not is_xml_text(value) or _CONTROL.search(value) or " " in value:
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  # raises ValueError on a port out of range
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def disco_items_query() -> domish.Element:
    return domish.Element((NS_DISCO_ITEMS, "query"))


def disco_info_query() -> domish.Element:
    return domish.Element((NS_DISCO_INFO, "query"))


def item_jids(result: domish.Element) -> list[JID]:
    """The entities a disco#items result lists (items with a ``node`` are not services)."""
    query = child(result, "query", NS_DISCO_ITEMS)
    if query is None:
        return []
    found: list[JID] = []
    for item in query.elements(NS_DISCO_ITEMS, "item"):
        jid = parse(item.getAttribute("jid", ""))
        if jid is not None and not item.getAttribute("node") and jid not in found:
            found.append(jid)
    return found


def _max_file_size(query: domish.Element) -> int | None:
    for form in query.elements(NS_DATA, "x"):
        fields = {f.getAttribute("var"): f for f in form.elements(NS_DATA, "field")}
        form_type = fields.get("FORM_TYPE")
        value = child(form_type, "value", NS_DATA) if form_type is not None else None
        if value is None or str(value).strip() != NS_UPLOAD:
            continue
        size_field = fields.get("max-file-size")
        size = child(size_field, "value", NS_DATA) if size_field is not None else None
        text = str(size).strip() if size is not None else ""
        if text.isascii() and text.isdigit():
            return int(text)
    return None


def upload_service(jid: JID, result: domish.Element) -> UploadService | None:
    """The upload service ``jid`` is, from its disco#info result; None when it is none."""
    query = child(result, "query", NS_DISCO_INFO)
    if query is None:
        return None
    features = {f.getAttribute("var") for f in query.elements(NS_DISCO_INFO, "feature")}
    if NS_UPLOAD not in features:
        return None
    return UploadService(jid, _max_file_size(query))


def build_request(filename: str, size: int, content_type: str | None = None) -> domish.Element:
    """The ``<request/>`` of a slot request (section 5); the caller has validated the values."""
    request = domish.Element((NS_UPLOAD, "request"))
    request["filename"] = filename
    request["size"] = str(size)
    if content_type is not None:
        request["content-type"] = content_type
    return request


def _header_value(text: str) -> str | None:
    # Section 5: newlines are to be stripped; anything else that ends a header is refused.
    value = text.replace("\r", "").replace("\n", "").strip()
    return value if value and _CONTROL.search(value) is None and is_xml_text(value) else None


def parse_slot(result: domish.Element) -> Slot | None:
    """The slot of a slot request's result IQ; None if it is missing or not usable."""
    slot = child(result, "slot", NS_UPLOAD)
    put = child(slot, "put", NS_UPLOAD) if slot is not None else None
    get = child(slot, "get", NS_UPLOAD) if slot is not None else None
    if put is None or get is None:
        return None
    put_url, get_url = put.getAttribute("url", ""), get.getAttribute("url", "")
    if not valid_http_url(put_url) or not valid_http_url(get_url):
        return None
    headers: dict[str, str] = {}
    for header in put.elements(NS_UPLOAD, "header"):
        name = SLOT_HEADERS.get(header.getAttribute("name", "").strip().lower())
        value = _header_value(str(header))
        if name is not None and value is not None:
            headers[name] = value
    return Slot(put_url, get_url, headers)


def file_too_large(error_element: domish.Element | None) -> bool:
    """Whether a stanza error's application condition is section 5's ``<file-too-large/>``."""
    return error_element is not None and error_element.name == "file-too-large" and error_element.uri == NS_UPLOAD
