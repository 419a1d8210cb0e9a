"""XEP-0363 stanzas (bridge.protocol.upload), service discovery and its cache (bridge.xmpp.upload),
and XEP-0066 ``oob_url`` in message conversion (bridge.protocol.convert)."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.protocol.convert import build_message, message_to_json
from bridge.protocol.namespaces import NS_DATA, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_OOB, NS_UPLOAD
from bridge.protocol.upload import (
    UploadService,
    build_request,
    file_too_large,
    item_jids,
    parse_slot,
    upload_service,
    valid_content_type,
    valid_filename,
    valid_http_url,
)
from bridge.xmpp.errors import FeatureUnavailable, ServerTimeout
from bridge.xmpp.upload import FileTooLarge, InvalidSlot, UploadServices, discover, request_slot


def iq_result(*children: domish.Element) -> domish.Element:
    iq = domish.Element((None, "iq"))
    iq["type"] = "result"
    for each in children:
        iq.addChild(each)
    return iq


def items_result(*jids: str, node: str | None = None) -> domish.Element:
    query = domish.Element((NS_DISCO_ITEMS, "query"))
    for jid in jids:
        item = query.addElement("item")
        item["jid"] = jid
        if node:
            item["node"] = node
    return iq_result(query)


def info_result(features: list[str], max_size: str | None = None, form_type: str = NS_UPLOAD) -> domish.Element:
    query = domish.Element((NS_DISCO_INFO, "query"))
    for feature in features:
        query.addElement("feature")["var"] = feature
    if max_size is not None:
        form = query.addElement((NS_DATA, "x"))
        form["type"] = "result"
        hidden = form.addElement("field")
        hidden["var"], hidden["type"] = "FORM_TYPE", "hidden"
        hidden.addElement("value", content=form_type)
        size = form.addElement("field")
        size["var"] = "max-file-size"
        size.addElement("value", content=max_size)
    return iq_result(query)


def slot_result(put: str, get: str, headers: list[tuple[str, str]] = ()) -> domish.Element:  # type: ignore[assignment]
    slot = domish.Element((NS_UPLOAD, "slot"))
    put_element = slot.addElement("put")
    put_element["url"] = put
    for name, value in headers:
        put_element.addElement("header", content=value)["name"] = name
    slot.addElement("get")["url"] = get
    return iq_result(slot)


class FakeSession:
    """A session whose IQs are answered by ``answers`` (target JID -> result or exception)."""

    def __init__(self, answers: dict[str, Any], jid: str = "alice@localhost/r") -> None:
        self.jid = JID(jid)
        self.answers = answers
        self.asked: list[tuple[str, str]] = []

    async def iq(self, stanza_type: str, payload: domish.Element, to: JID | None = None) -> domish.Element:
        target = to.full() if to is not None else ""
        self.asked.append((payload.uri, target))
        answer = self.answers.get((payload.uri, target), self.answers.get(target))
        if answer is None:
            raise StanzaError("service-unavailable")
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]


def run(coroutine: Any) -> Any:
    """The result of a coroutine that needs no reactor (every fake answers at once)."""
    return defer.Deferred.fromCoroutine(coroutine)


class StanzaTests(unittest.TestCase):
    def test_request_carries_filename_size_and_type(self) -> None:
        """A slot request is <request xmlns='urn:xmpp:http:upload:0' filename size content-type/>."""
        request = build_request("a b.jpg", 123, "image/jpeg")
        self.assertEqual((request.uri, request.name), (NS_UPLOAD, "request"))
        self.assertEqual(
            (request["filename"], request["size"], request["content-type"]), ("a b.jpg", "123", "image/jpeg")
        )
        self.assertFalse(build_request("a", 1).hasAttribute("content-type"))

    def test_slot_keeps_only_the_allowed_headers(self) -> None:
        """A slot's headers are Authorization, Cookie and Expires only, without newlines."""
        slot = parse_slot(
            slot_result(
                "https://up.example/put/1",
                "https://up.example/get/1",
                [
                    ("authorization", "Basic x\r\n=="),
                    ("Cookie", "a=b"),
                    ("Host", "evil"),
                    ("X-Foo", "1"),
                    ("Expires", ""),
                ],
            )
        )
        assert slot is not None
        self.assertEqual(slot.as_json()["headers"], {"Authorization": "Basic x==", "Cookie": "a=b"})
        self.assertEqual((slot.put_url, slot.get_url), ("https://up.example/put/1", "https://up.example/get/1"))

    def test_slot_without_usable_urls_is_none(self) -> None:
        """A slot whose URLs are missing or not http(s) is no slot."""
        self.assertIsNone(parse_slot(iq_result()))
        self.assertIsNone(parse_slot(slot_result("javascript:alert(1)", "https://up.example/g")))
        self.assertIsNone(parse_slot(slot_result("https://up.example/p", "file:///etc/passwd")))
        self.assertIsNone(parse_slot(slot_result("https://up.example/p", "https://")))

    def test_service_and_its_max_file_size_come_from_disco_info(self) -> None:
        """disco#info with the upload feature is a service; the XEP-0128 form gives max-file-size."""
        jid = JID("upload.localhost")
        self.assertEqual(upload_service(jid, info_result([NS_UPLOAD], "1048576")), UploadService(jid, 1048576))
        self.assertEqual(upload_service(jid, info_result([NS_UPLOAD])), UploadService(jid, None))
        self.assertEqual(upload_service(jid, info_result([NS_UPLOAD], "-5")), UploadService(jid, None))
        self.assertEqual(upload_service(jid, info_result([NS_UPLOAD], "9", form_type="urn:other")).max_size, None)
        self.assertIsNone(upload_service(jid, info_result(["urn:xmpp:mam:2"], "10")))

    def test_items_without_node_are_listed_once(self) -> None:
        """disco#items gives each item JID once; items with a node and bad JIDs are skipped."""
        self.assertEqual(item_jids(items_result("a.localhost", "a.localhost", "b@@x")), [JID("a.localhost")])
        self.assertEqual(item_jids(items_result("a.localhost", node="n")), [])

    def test_file_too_large_condition(self) -> None:
        """<file-too-large xmlns='urn:xmpp:http:upload:0'/> is recognised, other conditions are not."""
        self.assertTrue(file_too_large(domish.Element((NS_UPLOAD, "file-too-large"))))
        self.assertFalse(file_too_large(domish.Element(("urn:other", "file-too-large"))))
        self.assertFalse(file_too_large(None))

    def test_input_checks(self) -> None:
        """File names have no directory part; MIME types are type/subtype; URLs are absolute http(s)."""
        self.assertTrue(valid_filename("très cool.jpg"))
        for bad in ("", "a/b", "a\\b", "..", "a\x00", "a\nb", "x" * 256):
            self.assertFalse(valid_filename(bad), bad)
        self.assertTrue(valid_content_type("image/jpeg"))
        self.assertTrue(valid_content_type('text/plain; charset="utf-8"'))
        for bad in ("image", "image/", "a b/c", "text/plain\r\nX: y"):
            self.assertFalse(valid_content_type(bad), bad)
        self.assertTrue(valid_http_url("http://127.0.0.1:8080/a?b=c"))
        for bad in (
            "ftp://x/a",
            "http:///a",
            "/relative",
            "http://x/a b",
            "http://x:99999/",
            "https://x/" + "a" * 2048,
        ):
            self.assertFalse(valid_http_url(bad), bad)


class DiscoveryTests(unittest.TestCase):
    def test_first_item_with_the_feature_is_the_service(self) -> None:
        """Discovery asks the domain's items and picks the one advertising urn:xmpp:http:upload:0."""
        session = FakeSession(
            {
                (NS_DISCO_ITEMS, "localhost"): items_result("muclight.localhost", "upload.localhost"),
                (NS_DISCO_INFO, "muclight.localhost"): info_result(["urn:xmpp:muclight:0"]),
                (NS_DISCO_INFO, "upload.localhost"): info_result([NS_UPLOAD], "100"),
            }
        )
        found = self.successResultOf(run(discover(session)))
        self.assertEqual(found, UploadService(JID("upload.localhost"), 100))

    def test_no_service_and_errors_are_none(self) -> None:
        """A domain whose items refuse disco#info, or that lists none, has no upload service."""
        session = FakeSession({(NS_DISCO_ITEMS, "localhost"): items_result("gone.localhost")})
        self.assertIsNone(self.successResultOf(run(discover(session))))
        self.assertIsNone(self.successResultOf(run(discover(FakeSession({})))))

    def test_timeout_without_a_service_is_not_an_answer(self) -> None:
        """When no item offers upload and one did not answer in time, discovery fails with ServerTimeout."""
        session = FakeSession(
            {
                (NS_DISCO_ITEMS, "localhost"): items_result("slow.localhost"),
                (NS_DISCO_INFO, "slow.localhost"): ServerTimeout("slow"),
            }
        )
        self.failureResultOf(run(discover(session)), ServerTimeout)

    def test_cache_keeps_a_service_and_forgets_none_after_a_while(self) -> None:
        """A found service is cached per domain; "no service" is cached for NEGATIVE_TTL seconds only."""
        clock = Clock()
        services = UploadServices(clock)
        empty = FakeSession({(NS_DISCO_ITEMS, "localhost"): items_result()})
        self.failureResultOf(run(services.service(empty)), FeatureUnavailable)
        self.failureResultOf(run(services.service(empty)), FeatureUnavailable)
        self.assertEqual(len(empty.asked), 1)
        clock.advance(301)
        full = FakeSession(
            {
                (NS_DISCO_ITEMS, "localhost"): items_result("upload.localhost"),
                (NS_DISCO_INFO, "upload.localhost"): info_result([NS_UPLOAD]),
            }
        )
        self.successResultOf(run(services.service(full)))
        self.successResultOf(run(services.service(full)))
        self.assertEqual(len(full.asked), 2)

    def test_none_message_is_the_contract_string(self) -> None:
        """A domain without upload is FeatureUnavailable with DESIGN.md's 501 string."""
        failure = self.failureResultOf(run(UploadServices(Clock()).service(FakeSession({}))), FeatureUnavailable)
        self.assertEqual(str(failure.value), "the XMPP server has no file upload (XEP-0363)")


class SlotTests(unittest.TestCase):
    service = UploadService(JID("upload.localhost"), 1000)

    def test_size_over_the_known_limit_is_refused_without_asking(self) -> None:
        """A size over the advertised max-file-size is FileTooLarge before any IQ."""
        session = FakeSession({})
        self.failureResultOf(run(request_slot(session, self.service, "a", 1001, None)), FileTooLarge)
        self.assertEqual(session.asked, [])

    def test_service_file_too_large_error_is_file_too_large(self) -> None:
        """The service's <file-too-large/> application condition becomes FileTooLarge."""
        error = StanzaError("not-acceptable", appCondition=domish.Element((NS_UPLOAD, "file-too-large")))
        session = FakeSession({"upload.localhost": error})
        unlimited = UploadService(JID("upload.localhost"), None)
        self.failureResultOf(run(request_slot(session, unlimited, "a", 5, None)), FileTooLarge)

    def test_other_refusals_stay_stanza_errors_and_bad_slots_are_invalid(self) -> None:
        """A forbidden is passed on as StanzaError; an answer without a slot is InvalidSlot."""
        session = FakeSession({"upload.localhost": StanzaError("forbidden")})
        self.failureResultOf(run(request_slot(session, self.service, "a", 5, None)), StanzaError)
        session = FakeSession({"upload.localhost": iq_result()})
        self.failureResultOf(run(request_slot(session, self.service, "a", 5, None)), InvalidSlot)

    def test_slot_is_returned(self) -> None:
        """A slot answer gives its PUT and GET URLs."""
        session = FakeSession({"upload.localhost": slot_result("http://h/p", "http://h/g")})
        slot = self.successResultOf(run(request_slot(session, self.service, "a", 5, "text/plain")))
        self.assertEqual((slot.put_url, slot.get_url, slot.headers), ("http://h/p", "http://h/g", {}))


class OobTests(unittest.TestCase):
    def test_oob_url_is_sent_and_read_back(self) -> None:
        """build_message adds <x xmlns='jabber:x:oob'><url/></x>; message_to_json reports it as oob_url."""
        message = build_message(JID("bob@localhost"), "https://h/f.jpg", oob_url="https://h/f.jpg")
        (oob,) = list(message.elements(NS_OOB, "x"))
        self.assertEqual(str(next(oob.elements(NS_OOB, "url"))), "https://h/f.jpg")
        message["from"] = "alice@localhost/r"
        self.assertEqual(message_to_json(message, 1)["oob_url"], "https://h/f.jpg")

    def test_received_non_http_urls_are_left_out(self) -> None:
        """A received oob URL that is not http(s) (javascript:, file:) does not appear, nor does a missing one."""
        message = build_message(JID("bob@localhost"), "x", oob_url="javascript:alert(1)")
        self.assertNotIn("oob_url", message_to_json(message, 1))
        self.assertNotIn("oob_url", message_to_json(build_message(JID("bob@localhost"), "x"), 1))
