"""``POST /api/uploads`` (XEP-0363 slots) and ``oob_url`` on ``POST /api/messages``: the REST contract.

The upload service behind the fake session is a few canned IQ answers; what real servers
do is tests/integration/test_uploads.py's.
"""

from __future__ import annotations

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from tests.rest.fakes import BOB, RestTestCase, ServerTimeout, StanzaError

NS_UPLOAD = "urn:xmpp:http:upload:0"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
DISCO_INFO = "http://jabber.org/protocol/disco#info"


def _result(payload: domish.Element | None = None) -> domish.Element:
    iq = domish.Element((None, "iq"))
    iq["type"] = "result"
    if payload is not None:
        iq.addChild(payload)
    return iq


class FakeUploadServer:
    """Answers discovery (one ``upload.localhost`` item, ``max-file-size`` ``limit``) and slot requests."""

    def __init__(self, limit: int | None = 1000, refuse: StanzaError | None = None) -> None:
        self.limit = limit
        self.refuse = refuse
        self.requests: list[dict[str, str]] = []

    def __call__(self, stanza_type: str, payload: domish.Element, to: JID | None) -> domish.Element:
        if payload.uri == DISCO_ITEMS:
            query = domish.Element((DISCO_ITEMS, "query"))
            query.addElement("item")["jid"] = "upload.localhost"
            return _result(query)
        if payload.uri == DISCO_INFO:
            query = domish.Element((DISCO_INFO, "query"))
            query.addElement("feature")["var"] = NS_UPLOAD
            if self.limit is not None:
                form = query.addElement(("jabber:x:data", "x"))
                hidden = form.addElement("field")
                hidden["var"] = "FORM_TYPE"
                hidden.addElement("value", content=NS_UPLOAD)
                size = form.addElement("field")
                size["var"] = "max-file-size"
                size.addElement("value", content=str(self.limit))
            return _result(query)
        self.requests.append(dict(payload.attributes))
        if self.refuse is not None:
            raise self.refuse
        slot = domish.Element((NS_UPLOAD, "slot"))
        put = slot.addElement("put")
        put["url"] = "https://upload.localhost/put/" + payload["filename"]
        put.addElement("header", content="Basic abc")["name"] = "Authorization"
        put.addElement("header", content="upload.localhost")["name"] = "Host"
        slot.addElement("get")["url"] = "https://upload.localhost/get/" + payload["filename"]
        return _result(slot)


class UploadTests(RestTestCase):
    def serve(self, server: FakeUploadServer) -> FakeUploadServer:
        self.bridge.session().iq_answer = server
        return server

    async def test_slot_is_201_with_urls_and_allowed_headers(self) -> None:
        """POST /api/uploads answers 201 {put_url, get_url, headers} from the service's slot."""
        server = self.serve(FakeUploadServer())
        answer = await self.request(
            "POST", "/api/uploads", {"filename": "a.txt", "size": 5, "content_type": "text/plain"}
        )
        self.assertAnswer(
            answer,
            201,
            {
                "put_url": "https://upload.localhost/put/a.txt",
                "get_url": "https://upload.localhost/get/a.txt",
                "headers": {"Authorization": "Basic abc"},
            },
        )
        self.assertEqual(server.requests, [{"filename": "a.txt", "size": "5", "content-type": "text/plain"}])

    async def test_invalid_fields_are_400_naming_the_field(self) -> None:
        """Each missing or malformed field is 400 with its own string, and no slot is asked for."""
        server = self.serve(FakeUploadServer())
        cases = [
            ({"size": 5}, "Missing filename"),
            ({"filename": "", "size": 5}, "Missing filename"),
            ({"filename": 5, "size": 5}, "Invalid filename"),
            ({"filename": "../etc/passwd", "size": 5}, "Invalid filename"),
            ({"filename": "a\x00b", "size": 5}, "Invalid filename"),
            ({"filename": "a"}, "Invalid size"),
            ({"filename": "a", "size": -1}, "Invalid size"),
            ({"filename": "a", "size": "5"}, "Invalid size"),
            ({"filename": "a", "size": True}, "Invalid size"),
            ({"filename": "a", "size": 1.5}, "Invalid size"),
            ({"filename": "a", "size": 2**64}, "Invalid size"),
            ({"filename": "a", "size": 5, "content_type": "text"}, "Invalid content_type"),
            ({"filename": "a", "size": 5, "content_type": 7}, "Invalid content_type"),
            ({"filename": "a", "size": 5, "content_type": "text/plain\r\nX: y"}, "Invalid content_type"),
        ]
        for body, message in cases:
            self.assertAnswer(await self.request("POST", "/api/uploads", body), 400, message)
        self.assertEqual(server.requests, [])

    async def test_over_the_advertised_limit_is_413_without_asking(self) -> None:
        """A size over the service's max-file-size is 413 "File too large" and no slot request goes out."""
        server = self.serve(FakeUploadServer(limit=1000))
        self.assertAnswer(
            await self.request("POST", "/api/uploads", {"filename": "a", "size": 1001}), 413, "File too large"
        )
        self.assertEqual(server.requests, [])

    async def test_service_file_too_large_is_413(self) -> None:
        """The service's own <file-too-large/> refusal is 413 "File too large"."""
        too_large = StanzaError("not-acceptable", appCondition=domish.Element((NS_UPLOAD, "file-too-large")))
        self.serve(FakeUploadServer(limit=None, refuse=too_large))
        self.assertAnswer(
            await self.request("POST", "/api/uploads", {"filename": "a", "size": 5}), 413, "File too large"
        )

    async def test_service_refusal_is_mapped_like_other_stanza_errors(self) -> None:
        """A forbidden from the service is 403, as every stanza error is mapped."""
        self.serve(FakeUploadServer(refuse=StanzaError("forbidden")))
        self.assertAnswer(await self.request("POST", "/api/uploads", {"filename": "a", "size": 5}), 403, "Forbidden")

    async def test_no_service_is_501(self) -> None:
        """A server whose items offer no upload is 501 with the contract string."""
        self.bridge.session()  # every IQ refused with service-unavailable
        answer = await self.request("POST", "/api/uploads", {"filename": "a", "size": 5})
        self.assertAnswer(answer, 501, "the XMPP server has no file upload (XEP-0363)")

    async def test_timeout_is_504(self) -> None:
        """A server that does not answer discovery in time is 504, as elsewhere."""
        self.bridge.session().failure = ServerTimeout("slow")
        self.assertAnswer(await self.request("POST", "/api/uploads", {"filename": "a", "size": 5}), 504)

    async def test_needs_credentials(self) -> None:
        """Without credentials POST /api/uploads is 401."""
        self.assertAnswer(await self.request("POST", "/api/uploads", {"filename": "a", "size": 5}, auth=None), 401)


class OobUrlTests(RestTestCase):
    async def test_oob_url_is_sent_and_the_body_defaults_to_it(self) -> None:
        """POST /api/messages with oob_url adds <x xmlns='jabber:x:oob'><url/></x> and uses the URL as body."""
        url = "https://upload.localhost/get/a.txt"
        self.assertAnswer(await self.request("POST", "/api/messages", {"to": BOB, "oob_url": url}), 200)
        (sent,) = self.bridge.session().sent
        self.assertEqual(str(sent.body), url)
        (oob,) = list(sent.elements("jabber:x:oob", "x"))
        self.assertEqual(str(next(oob.elements("jabber:x:oob", "url"))), url)

    async def test_explicit_body_is_kept(self) -> None:
        """A body given with oob_url is sent as it is."""
        body = {"to": BOB, "body": "look", "oob_url": "http://127.0.0.1:1/x"}
        self.assertAnswer(await self.request("POST", "/api/messages", body), 200)
        self.assertEqual(str(self.bridge.session().sent[0].body), "look")

    async def test_invalid_oob_url_is_400(self) -> None:
        """An oob_url that is not an absolute http(s) URL, too long or not text XML carries is 400 "Invalid oob_url"."""
        for bad in (
            "",
            "ftp://h/x",
            "javascript:alert(1)",
            "/relative",
            5,
            "https://h/" + "a" * 2048,
            "https://h/\x00",
        ):
            answer = await self.request("POST", "/api/messages", {"to": BOB, "body": "x", "oob_url": bad})
            self.assertAnswer(answer, 400, "Invalid oob_url")
        self.assertEqual(self.bridge.session().sent, [])
