"""XEP-0313 Message Archive Management (urn:xmpp:mam:2) queries, with XEP-0059 paging.

The REST API asks for "the latest ``limit`` messages before a time": a MAM query with an
``end`` filter and an empty RSM ``<before/>`` (the last page), whose results the server
sends in chronological order. Servers cap a page below the API's 500: ejabberd 23.01 at
250, Prosody 0.12 at ``max_archive_query_results`` (50 unless raised). While the server
says the archive holds more (no ``<fin complete='true'/>``), the client asks for the page
before the first result (RSM ``<before>id</before>``) until ``limit`` messages are in.

Servers stamp archived messages at different resolutions: Prosody 0.12 in whole seconds,
ejabberd 23.01 in microseconds (``2026-11-26T08:26:37.912932Z``). The API speaks
milliseconds, so a message stamped ``.912932`` is reported as ``...912`` and must count as
"at or before ...912 ms". Prosody 13 stamps in microseconds too, but its SQL store compares
``end`` in whole seconds (it floors the filter), so it would leave out a message stamped
``.500`` when asked for everything up to ``.501``. The query therefore asks the server for a
little more (up to the end of the next whole second) and the client drops what is newer
than the millisecond asked for, paging on until ``limit`` messages are in.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from bridge.protocol.convert import delay_timestamp
from bridge.protocol.events import is_chat_state_only
from bridge.protocol.jid import bare
from bridge.protocol.namespaces import NS_DATA, NS_FORWARD, NS_MAM, NS_RSM
from bridge.protocol.xml import child
from bridge.xmpp.errors import FeatureUnavailable

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The last millisecond XEP-0082 times can carry (9999-12-31T23:59:59.999Z).
MAX_END = 253402300799999


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


def format_end(milliseconds: int) -> str:
    """The XEP-0082 time of the last microsecond within Unix millisecond ``milliseconds``."""
    moment = EPOCH + timedelta(milliseconds=milliseconds, microseconds=999)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def server_end(milliseconds: int) -> int:
    """The ``end`` (Unix ms) to ask a server for, so that one flooring it to seconds loses nothing.

    ``floor(server_end / 1000)`` is past every instant of ``milliseconds``; results newer than
    ``milliseconds`` are dropped by ``ArchiveClient.query``.
    """
    return min((milliseconds // 1000 + 2) * 1000 - 1, MAX_END)


def build_query(
    query_id: str, with_jid: JID | None, end: int | None, limit: int, before_id: str = ""
) -> domish.Element:
    """A MAM query for the last ``limit`` messages (with ``with_jid``, at or before ``end`` ms).

    ``before_id`` pages back: only messages archived before the result with that id.
    """
    query = domish.Element((NS_MAM, "query"))
    query["queryid"] = query_id
    form = query.addElement((NS_DATA, "x"))
    form["type"] = "submit"
    _field(form, "FORM_TYPE", NS_MAM, "hidden")
    if with_jid is not None:
        _field(form, "with", with_jid.userhost())
    if end is not None:
        _field(form, "end", format_end(server_end(end)))
    rsm = query.addElement((NS_RSM, "set"))
    rsm.addElement("max", content=str(limit))
    rsm.addElement("before", content=before_id or None)
    return query


@dataclass(frozen=True)
class PageEnd:
    """What a MAM ``<fin/>`` says: whether the archive has nothing more, and the page's first id."""

    complete: bool
    first: str | None


def parse_fin(result: domish.Element) -> PageEnd:
    """The ``<fin/>`` of a MAM query's result IQ; a missing one counts as complete."""
    fin = child(result, "fin", NS_MAM)
    if fin is None:
        return PageEnd(True, None)
    rsm = child(fin, "set", NS_RSM)
    first = None if rsm is None else child(rsm, "first", NS_RSM)
    return PageEnd(fin.getAttribute("complete") in ("true", "1"), str(first) if first is not None else None)


def parse_result(message: domish.Element) -> tuple[str, ArchivedMessage] | None:
    """(query id, archived message) from a MAM result message, None if it is malformed."""
    result = child(message, "result", NS_MAM)
    forwarded = None if result is None else child(result, "forwarded", NS_FORWARD)
    if result is None or forwarded is None or not result.getAttribute("id"):
        return None
    inner = child(forwarded, "message")
    timestamp = delay_timestamp(forwarded)
    if inner is None or timestamp is None:
        return None
    return result.getAttribute("queryid", ""), ArchivedMessage(result["id"], timestamp, inner)


def is_bounce(message: domish.Element) -> bool:
    """Whether an archived stanza is an error message (a bounce), which is no message of the API.

    Servers archive bounces (Prosody 0.12 keeps the ``type='error'`` answer to a message
    for an unreachable domain); shown as messages they would look like empty messages
    "from" the recipient.
    """
    return message.getAttribute("type") == "error"


class ArchiveClient(XMPPHandler):
    """Runs MAM queries on the session's stream and collects their result messages."""

    def __init__(self) -> None:
        super().__init__()
        self._results: dict[str, tuple[str | None, list[ArchivedMessage]]] = {}

    def connectionInitialized(self) -> None:
        # Every message, not an XPath naming the result: parse_result looks for it anyway,
        # and xish would have walked each message's children through interface checks first.
        self.xmlstream.addObserver("/message", self._on_result)

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
        found: list[ArchivedMessage] = []
        before_id = ""
        while True:
            page, page_end = await self._page(with_jid, end, limit - len(found), before_id, archive)
            # Paging follows what the server sent; bounces, bare chat states (a server may
            # archive them despite <no-store/>) and results past ``end`` (which a server
            # flooring the filter to seconds lets through) only drop out of the answer.
            found[:0] = [
                m
                for m in page
                if not is_bounce(m.message)
                and not is_chat_state_only(m.message)
                and (end is None or m.timestamp <= end)
            ]
            before_id = page_end.first or (page[0].archive_id if page else "")
            if page_end.complete or not page or not before_id or len(found) >= limit:
                break
        return found[-limit:] if limit > 0 else []

    async def _page(
        self, with_jid: JID | None, end: int | None, limit: int, before_id: str, archive: JID | None
    ) -> tuple[list[ArchivedMessage], PageEnd]:
        """One MAM query: up to ``limit`` results before ``before_id``, and its ``<fin/>``."""
        query_id = secrets.token_hex(8)
        self._results[query_id] = (archive.userhost() if archive else None, [])
        try:
            result = await self.parent.iq("set", build_query(query_id, with_jid, end, limit, before_id), to=archive)
            return self._results[query_id][1], parse_fin(result)
        except StanzaError as e:
            if archive is None and e.condition in ("service-unavailable", "feature-not-implemented"):
                raise FeatureUnavailable("the XMPP server has no message archive (XEP-0313)") from None
            raise
        finally:
            del self._results[query_id]
