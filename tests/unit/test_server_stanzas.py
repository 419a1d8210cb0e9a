"""XEP-0313 stanzas as Prosody 0.12 and ejabberd 23.01 really send them (recorded on Debian).

The integration tests run the same paths against both servers; these pin the exact shapes
that differ, so a regression shows here first.
"""

from __future__ import annotations

from twisted.trial import unittest
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.generic import parseXml

from bridge.protocol.convert import message_to_json
from bridge.xmpp.archive import MAX_END, ArchiveClient, build_query, format_end, parse_result, server_end

# Prosody: no 'from', <delay> before the message, whole-second stamp, UUID archive ids.
PROSODY_RESULT = """<message xmlns='jabber:client' to='alice@localhost/phone'>
<result id='74d11da4-2127-4dcf-9d9a-63277d6bbab4' queryid='q1' xmlns='urn:xmpp:mam:2'>
<forwarded xmlns='urn:xmpp:forward:0'><delay stamp='2026-11-26T08:26:41Z' xmlns='urn:xmpp:delay'/>
<message type='chat' id='m1' xmlns='jabber:client' from='alice@localhost/phone' xml:lang='en' to='bob@localhost'>
<body>hello</body></message></forwarded></result></message>"""

# ejabberd: from the user's bare JID, <delay> after the message, microsecond stamp, numeric
# archive ids, and the archived copy keeps its <stanza-id/> and legacy <archived/>.
EJABBERD_RESULT = """<message xmlns='jabber:client' to='alice@localhost/phone' from='alice@localhost'>
<result id='1795681597912932' queryid='q1' xmlns='urn:xmpp:mam:2'><forwarded xmlns='urn:xmpp:forward:0'>
<message xml:lang='en' to='bob@localhost' from='alice@localhost/phone' type='chat' id='m1' xmlns='jabber:client'>
<archived by='alice@localhost' id='1795681597912932' xmlns='urn:xmpp:mam:tmp'/>
<stanza-id by='alice@localhost' id='1795681597912932' xmlns='urn:xmpp:sid:0'/><body>hello</body></message>
<delay from='localhost' stamp='2026-11-26T08:26:37.912932Z' xmlns='urn:xmpp:delay'/></forwarded></result></message>"""


class ArchiveResultTests(unittest.TestCase):
    def test_prosody_result(self) -> None:
        """Prosody's result (no sender, delay first, second resolution) becomes the API's JSON."""
        query_id, item = parse_result(parseXml(PROSODY_RESULT))  # type: ignore[misc]
        self.assertEqual((query_id, item.archive_id), ("q1", "74d11da4-2127-4dcf-9d9a-63277d6bbab4"))
        self.assertEqual(item.timestamp, 1795681601000)
        self.assertEqual(
            message_to_json(item.message, item.timestamp),
            {"id": "m1", "from": "alice@localhost", "to": "bob@localhost", "timestamp": 1795681601000, "body": "hello"},
        )

    def test_ejabberd_result(self) -> None:
        """ejabberd's result (bare-JID sender, delay last, microseconds) becomes the same JSON, in milliseconds."""
        query_id, item = parse_result(parseXml(EJABBERD_RESULT))  # type: ignore[misc]
        self.assertEqual((query_id, item.archive_id), ("q1", "1795681597912932"))
        self.assertEqual(item.timestamp, 1795681597912)
        self.assertEqual(
            message_to_json(item.message, item.timestamp),
            {"id": "m1", "from": "alice@localhost", "to": "bob@localhost", "timestamp": 1795681597912, "body": "hello"},
        )


class ArchiveEndTests(unittest.TestCase):
    def test_end_is_the_last_microsecond_of_the_millisecond(self) -> None:
        """The end filter covers sub-millisecond stamps (ejabberd) of the last millisecond asked for."""
        self.assertEqual(format_end(1795681597912), "2026-11-26T08:26:37.912999Z")
        self.assertEqual(format_end(0), "1970-01-01T00:00:00.000999Z")

    def test_server_end_is_past_the_next_whole_second(self) -> None:
        """The end sent to the server survives Prosody 13 flooring it to seconds (results are filtered after)."""
        query = build_query("q", None, 1795681597912, 5)
        values = {str(f["var"]): str(f.value) for f in query.x.elements() if f.name == "field"}
        self.assertEqual(values["end"], "2026-11-26T08:26:38.999999Z")
        self.assertEqual(server_end(1795681597000), 1795681598999)
        self.assertEqual(server_end(MAX_END), MAX_END)


class CappedArchive:
    """Stands in for a session whose server holds ``total`` messages and caps pages at ``cap``."""

    def __init__(self, client: ArchiveClient, total: int, cap: int) -> None:
        # Message n is stamped n seconds after 2026-01-01T00:00:00Z; the server ignores ``end``.
        self.jid = JID("alice@localhost/rest-1")
        self.client = client
        self.ids = [str(1000 + n) for n in range(total)]
        self.cap = cap
        self.queries: list[tuple[str, str]] = []

    async def iq(self, stanza_type: str, payload: domish.Element, to: JID | None = None) -> domish.Element:
        rsm = payload.set
        limit, before = int(str(rsm.max)), str(rsm.before)
        self.queries.append((str(rsm.max), before))
        older = self.ids[: self.ids.index(before)] if before else self.ids
        page = older[-min(limit, self.cap) :] if limit else []
        for archive_id in page:
            stamp = f"2026-01-01T00:{(int(archive_id) - 1000) // 60:02d}:{(int(archive_id) - 1000) % 60:02d}Z"
            self.client._on_result(
                parseXml(
                    f"<message xmlns='jabber:client'><result xmlns='urn:xmpp:mam:2' queryid='{payload['queryid']}'"
                    f" id='{archive_id}'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay'"
                    f" stamp='{stamp}'/><message id='{archive_id}'/></forwarded></result></message>"
                )
            )
        complete = "true" if len(page) == len(older) else "false"
        first = f"<first>{page[0]}</first>" if page else ""
        return parseXml(
            f"<iq type='result'><fin xmlns='urn:xmpp:mam:2' complete='{complete}'>"
            f"<set xmlns='http://jabber.org/protocol/rsm'>{first}</set></fin></iq>"
        )


class PagingTests(unittest.TestCase):
    def setUp(self) -> None:
        self.client = ArchiveClient()

    async def query(self, total: int, cap: int, limit: int, end: int | None = None) -> tuple[list[str], CappedArchive]:
        server = CappedArchive(self.client, total, cap)
        self.client.parent = server  # type: ignore[assignment]
        found = await self.client.query(None, end, limit)
        return [item.archive_id for item in found], server

    async def test_drops_results_newer_than_end(self) -> None:
        """Results past ``end`` that a coarse server filter let through are dropped, and paging fills the limit."""
        start = 1767225600000  # 2026-01-01T00:00:00Z
        ids, server = await self.query(total=100, cap=20, limit=30, end=start + 89_000)
        self.assertEqual(ids, [str(1000 + n) for n in range(60, 90)])
        self.assertEqual(server.queries[0], ("30", ""))

    async def test_pages_back_until_limit(self) -> None:
        """A server capping pages at 250 (ejabberd) is asked for earlier pages until the limit is reached."""
        ids, server = await self.query(total=600, cap=250, limit=500)
        self.assertEqual(ids, [str(1000 + n) for n in range(100, 600)])
        self.assertEqual(server.queries, [("500", ""), ("250", "1350")])

    async def test_stops_when_the_archive_is_complete(self) -> None:
        """A smaller archive than the limit ends at the server's complete='true'."""
        ids, server = await self.query(total=30, cap=10, limit=500)
        self.assertEqual(ids, [str(1000 + n) for n in range(30)])
        self.assertEqual([before for _, before in server.queries], ["", "1020", "1010"])

    async def test_one_page_when_it_is_enough(self) -> None:
        """A page that holds the limit is the only query (Prosody with a high enough cap)."""
        ids, server = await self.query(total=100, cap=500, limit=50)
        self.assertEqual(ids, [str(1000 + n) for n in range(50, 100)])
        self.assertEqual(len(server.queries), 1)
