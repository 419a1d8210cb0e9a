"""XEP-0313 Message Archive Management on room JIDs, with XEP-0059 paging.

A room's occupants query ``room@service`` with ``urn:xmpp:mam:2`` (``mam:1`` is accepted
too and answered in kind): data form fields ``start``, ``end`` and ``with`` (an occupant's
bare JID), RSM ``max``, ``after`` and ``before`` (empty for the last page). Results are
sent to the querying full JID before the IQ result, which carries ``<fin>`` with the first
and last archive ids, the count and whether the page reaches the end of the archive.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.xish import domish

from bridge.muclight.protocol import parse_element
from bridge.protocol.convert import format_timestamp, parse_timestamp
from bridge.protocol.muclight import bare_jid
from bridge.protocol.namespaces import NS_DATA, NS_DELAY, NS_FORWARD, NS_RSM
from bridge.protocol.xml import child
from bridge.store import ArchivedItem, ArchivePage, ArchiveQuery

# Most results in one page, whatever the client asks for.
MAX_PAGE = 500
DEFAULT_PAGE = 50


def _fields(query: domish.Element) -> dict[str, str]:
    form = child(query, "x", NS_DATA)
    fields: dict[str, str] = {}
    if form is None:
        return fields
    for field in form.elements(NS_DATA, "field"):
        var = field.getAttribute("var")
        value = child(field, "value", NS_DATA)
        if var and value is not None:
            fields[var] = str(value)
    return fields


def parse_query(query: domish.Element, is_archive_id: Callable[[str], bool]) -> ArchiveQuery:
    """The store query a MAM ``<query/>`` asks for; ``StanzaError`` (bad-request) if malformed.

    ``is_archive_id`` is the store's (``Store.is_archive_id``): an RSM id it rejects names
    nothing, so it is item-not-found before any query.
    """
    fields = _fields(query)
    start = end = None
    if "start" in fields:
        start = parse_timestamp(fields["start"])
        if start is None:
            raise StanzaError("bad-request", text="Invalid start")
    if "end" in fields:
        end = parse_timestamp(fields["end"])
        if end is None:
            raise StanzaError("bad-request", text="Invalid end")
    sender = None
    if fields.get("with"):
        sender = bare_jid(fields["with"])
        if sender is None:
            raise StanzaError("bad-request", text="Invalid with")
    limit, after_id, before_id, from_end = DEFAULT_PAGE, None, None, False
    rsm = child(query, "set", NS_RSM)
    if rsm is not None:
        maximum = child(rsm, "max", NS_RSM)
        if maximum is not None:
            text = str(maximum).strip()
            if not text.isascii() or not text.isdigit() or len(text) > 6:
                raise StanzaError("bad-request", text="Invalid max")
            limit = min(int(text), MAX_PAGE)
        after = child(rsm, "after", NS_RSM)
        before = child(rsm, "before", NS_RSM)
        if after is not None:
            after_id = str(after).strip()
        if before is not None:
            before_id = str(before).strip() or None
            from_end = before_id is None
        for archive_id in (after_id, before_id):
            if archive_id is not None and not is_archive_id(archive_id):
                raise StanzaError("item-not-found", text="No such archive id")
    return ArchiveQuery(start, end, sender, after_id, before_id, from_end, limit)


def result_message(ns: str, room_jid: str, to: str, query_id: str | None, item: ArchivedItem) -> domish.Element:
    """One archived stanza, forwarded in a MAM result message."""
    message = domish.Element((None, "message"))
    message["from"] = room_jid
    message["to"] = to
    result = message.addElement((ns, "result"))
    if query_id:
        result["queryid"] = query_id
    result["id"] = item.archive_id
    forwarded = result.addElement((NS_FORWARD, "forwarded"))
    forwarded.addElement((NS_DELAY, "delay"))["stamp"] = format_timestamp(item.timestamp)
    forwarded.addChild(parse_element(item.xml))
    return message


def fin(ns: str, page: ArchivePage) -> domish.Element:
    element = domish.Element((ns, "fin"))
    element["complete"] = "true" if page.complete else "false"
    rsm = element.addElement((NS_RSM, "set"))
    if page.items:
        rsm.addElement("first", content=page.items[0].archive_id)
        rsm.addElement("last", content=page.items[-1].archive_id)
    rsm.addElement("count", content=str(page.count))
    return element
