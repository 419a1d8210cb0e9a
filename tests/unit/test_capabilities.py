"""The login capability check (XEP-0030 disco#info for XEP-0313 MAM and XEP-0280 carbons)."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.protocol.namespaces import NS_CARBONS, NS_DISCO_INFO, NS_MAM
from bridge.xmpp.capabilities import CapabilityCheck, discover, features_of
from bridge.xmpp.errors import ServerTimeout


def disco_result(*features: str) -> domish.Element:
    iq = domish.Element((None, "iq"))
    iq["type"] = "result"
    query = iq.addElement((NS_DISCO_INFO, "query"))
    query.addElement("identity")["category"] = "server"
    for feature in features:
        query.addElement("feature")["var"] = feature
    query.addElement("feature")  # no var: ignored
    return iq


class FakeSession:
    """Answers disco#info per target with what the test put in ``answers`` (or raises it)."""

    def __init__(self, jid: str, answers: dict[str, Any]) -> None:
        self.jid = JID(jid)
        self.answers = answers
        self.asked: list[str] = []

    async def iq(self, stanza_type: str, payload: domish.Element, to: JID | None = None) -> domish.Element:
        assert stanza_type == "get" and payload.uri == NS_DISCO_INFO and to is not None
        self.asked.append(to.full())
        answer = self.answers[to.full()]
        if isinstance(answer, defer.Deferred):
            answer = await answer
        if isinstance(answer, Exception):
            raise answer
        return answer


class LogEvents(list):  # type: ignore[type-arg]
    def __init__(self, test: unittest.TestCase) -> None:
        super().__init__()
        globalLogPublisher.addObserver(self._observe)
        test.addCleanup(globalLogPublisher.removeObserver, self._observe)

    def _observe(self, event: dict[str, Any]) -> None:
        if event.get("log_namespace") == "bridge.xmpp.capabilities":
            self.append(event)


class DiscoverTests(unittest.TestCase):
    def test_features_of_reads_feature_vars(self) -> None:
        """Only the var attributes of disco#info features count."""
        self.assertEqual(features_of(disco_result(NS_MAM, "x")), {NS_MAM, "x"})
        self.assertEqual(features_of(domish.Element((None, "iq"))), set())

    async def test_prosody_lists_mam_only_on_the_account(self) -> None:
        """Prosody 0.12 lists MAM on the bare JID and carbons on the server: both are found."""
        session = FakeSession(
            "alice@localhost/rest-1",
            {"localhost": disco_result(NS_CARBONS, "urn:xmpp:ping"), "alice@localhost": disco_result(NS_MAM)},
        )
        found = await discover(session)
        self.assertEqual(sorted(session.asked), ["alice@localhost", "localhost"])
        self.assertTrue(found.mam and found.carbons)
        self.assertEqual((found.domain, found.missing), ("localhost", []))

    async def test_error_answer_means_no_features(self) -> None:
        """An entity that answers disco#info with an error offers nothing, but discovery goes on."""
        session = FakeSession(
            "alice@localhost", {"localhost": disco_result(NS_CARBONS), "alice@localhost": StanzaError("forbidden")}
        )
        found = await discover(session)
        self.assertEqual(found.missing, [NS_MAM])


class CapabilityCheckTests(unittest.TestCase):
    def test_logs_once_per_domain_what_is_missing(self) -> None:
        """The first session of a domain is asked; one warning names each missing feature and its cost."""
        events = LogEvents(self)
        check = CapabilityCheck()
        answers = {"localhost": disco_result(), "alice@localhost": disco_result()}
        first = FakeSession("alice@localhost", answers)
        check.session_opened(first)
        check.session_opened(FakeSession("bob@localhost", {}))  # not asked: known now
        found = check.features("localhost")
        assert found is not None
        self.assertEqual(found.missing, [NS_MAM, NS_CARBONS])
        (event,) = events
        self.assertEqual(event["log_level"].name, "warn")
        self.assertIn("GET /api/messages answers 501", event["missing"])
        self.assertIn("carbons", event["missing"])
        self.assertIsNone(check.features("example.com"))

    def test_one_discovery_at_a_time_and_retry_after_failure(self) -> None:
        """Sessions opened during discovery do not start another; a failed one is retried next time."""
        events = LogEvents(self)
        check = CapabilityCheck()
        slow: defer.Deferred[Any] = defer.Deferred()
        first = FakeSession("alice@localhost", {"localhost": slow, "alice@localhost": disco_result(NS_MAM)})
        check.session_opened(first)
        second = FakeSession("bob@localhost", {})
        check.session_opened(second)
        self.assertEqual(second.asked, [])
        slow.callback(ServerTimeout("no answer"))
        self.assertIsNone(check.features("localhost"))
        (event,) = events
        self.assertEqual(event["log_level"].name, "warn")
        self.assertIsInstance(event["reason"], ServerTimeout)
        third = FakeSession(
            "carol@localhost", {"localhost": disco_result(NS_CARBONS), "carol@localhost": disco_result(NS_MAM)}
        )
        check.session_opened(third)
        found = check.features("localhost")
        assert found is not None
        self.assertEqual(found.missing, [])
        self.assertEqual(events[-1]["log_level"].name, "info")
