"""XEP-0313 Message Archive Management (urn:xmpp:mam:2) queries, with XEP-0059 paging.

The REST API asks for "the latest ``limit`` messages before a time": one MAM query with an
``end`` filter and an empty RSM ``<before/>`` (the last page), whose results the server
sends in chronological order.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from bridge.convert import bare, child, delay_timestamp, format_timestamp
from bridge.xmpp.errors import FeatureUnavailable

NS_MAM = "urn:xmpp:mam:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_DATA = "jabber:x:data"
RESULT = f"/message/result[@xmlns='{NS_MAM}']"


@dataclass(frozen=True)
class ArchivedMessage:
    archive_id: str
    timestamp: int  # Unix milliseconds
    message: domish.Element


def _field(form: domish.Element, var: str, value: str, field_type: str | None = None) -> None:
    element = form.addElement("field")
    element["var"] = var
    if field_type:
        element["type"] = field_type
    element.addElement("value", content=value)


def build_query(query_id: str, with_jid: JID | None, end: int | None, limit: int) -> domish.Element:
    """A MAM query for the last ``limit`` messages (with ``with_jid``, at or before ``end`` ms)."""
    query = domish.Element((NS_MAM, "query"))
    query["queryid"] = query_id
    form = query.addElement((NS_DATA, "x"))
    form["type"] = "submit"
    _field(form, "FORM_TYPE", NS_MAM, "hidden")
    if with_jid is not None:
        _field(form, "with", with_jid.userhost())
    if end is not None:
        _field(form, "end", format_timestamp(end))
    rsm = query.addElement((NS_RSM, "set"))
    rsm.addElement("max", content=str(limit))
    rsm.addElement("before")
    return query


def parse_result(message: domish.Element) -> tuple[str, ArchivedMessage] | None:
    """(query id, archived message) from a MAM result message, None if it is malformed."""
    result = message.result
    forwarded = child(result, "forwarded", NS_FORWARD)
    if forwarded is None or not result.getAttribute("id"):
        return None
    inner = child(forwarded, "message")
    timestamp = delay_timestamp(forwarded)
    if inner is None or timestamp is None:
        return None
    return result.getAttribute("queryid", ""), ArchivedMessage(result["id"], timestamp, inner)


class ArchiveClient(XMPPHandler):
    """Runs MAM queries on the session's stream and collects their result messages."""

    def __init__(self) -> None:
        super().__init__()
        self._results: dict[str, tuple[str | None, list[ArchivedMessage]]] = {}

    def connectionInitialized(self) -> None:
        self.xmlstream.addObserver(RESULT, self._on_result)

    def _on_result(self, message: domish.Element) -> None:
        parsed = parse_result(message)
        if parsed is None or parsed[0] not in self._results:
            return
        archive, results = self._results[parsed[0]]
        # Results must come from the archive we asked (a user's own archive: no 'from').
        sender = message.getAttribute("from")
        if sender and bare(sender) != (archive or self.parent.jid.userhost()):
            return
        message.handled = True  # type: ignore[attr-defined]  # xish's convention
        results.append(parsed[1])

    async def query(
        self, with_jid: JID | None, end: int | None, limit: int, archive: JID | None = None
    ) -> list[ArchivedMessage]:
        """The last ``limit`` messages of ``archive`` (default: the user's own), oldest first."""
        query_id = secrets.token_hex(8)
        self._results[query_id] = (archive.userhost() if archive else None, [])
        try:
            await self.parent.iq("set", build_query(query_id, with_jid, end, limit), to=archive)
            return self._results[query_id][1]
        except StanzaError as e:
            if archive is None and e.condition in ("service-unavailable", "feature-not-implemented"):
                raise FeatureUnavailable("the XMPP server has no message archive (XEP-0313)") from None
            raise
        finally:
            del self._results[query_id]
