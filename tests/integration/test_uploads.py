"""Attachments through the bridge and the real server's upload service (XEP-0363) sent as XEP-0066 URLs.

Prosody serves uploads with ``mod_http_file_share`` (component ``upload.<domain>``),
ejabberd with ``mod_http_upload``; both harnesses (``bridge.demo.prosody``,
``tests.servers.ejabberd``) put the files on loopback HTTP and cap them at
``upload_limit`` bytes.
"""

from __future__ import annotations

import secrets

from twisted.internet import defer, reactor
from twisted.words.protocols.jabber.jid import JID

from bridge.protocol.upload import UploadService
from bridge.xmpp.upload import FileTooLarge, request_slot
from tests.integration.base import BridgeTestCase, Reply, basic
from tests.servers.fixture import RunningBridge, bridge_config
from tests.servers.prosody import ProsodyServer


class UploadTests(BridgeTestCase):
    async def put(self, slot: dict[str, object], data: bytes, content_type: str) -> int:
        """PUT ``data`` to a slot's URL with its headers, as a client does; the HTTP status."""
        headers = {name: [value] for name, value in slot["headers"].items()}  # type: ignore[attr-defined]
        headers["Content-Type"] = [content_type]
        response = await self.bridge.http.put(slot["put_url"], data=data, headers=headers)
        await response.content()
        return int(response.code)

    async def test_upload_send_as_oob_and_fetch_back(self) -> None:
        """A slot from POST /api/uploads takes the PUT, its get_url goes out as oob_url and serves the same bytes."""
        alice, bob = self.new_user("alice"), self.new_user("bob")
        data = secrets.token_bytes(3000)
        reply = await self.call(
            "POST", "/api/uploads", alice, {"filename": "notes é.txt", "size": len(data), "content_type": "text/plain"}
        )
        self.assertEqual(reply.code, 201, reply)
        slot = reply.json
        self.assertEqual(set(slot), {"put_url", "get_url", "headers"})
        self.assertTrue(slot["get_url"].startswith("http://127.0.0.1:"), slot)
        self.assertLessEqual(set(slot["headers"]), {"Authorization", "Cookie", "Expires"})
        self.assertIn(await self.put(slot, data, "text/plain"), (200, 201))

        sent = await self.call("POST", "/api/messages", alice, {"to": bob[0], "oob_url": slot["get_url"]})
        self.assertEqual(sent.code, 200, sent)
        history = await self.call("GET", f"/api/messages/{alice[0]}", bob)
        self.assertEqual(history.code, 200, history)
        (item,) = [m for m in history.json if m["id"] == sent.json["id"]]
        self.assertEqual((item["oob_url"], item["body"]), (slot["get_url"], slot["get_url"]))

        response = await self.bridge.http.get(item["oob_url"])
        self.assertEqual(response.code, 200)
        self.assertEqual(await response.content(), data)

    async def test_too_large_is_413(self) -> None:
        """A size over the server's upload limit is 413 "File too large"."""
        alice = self.new_user("alice")
        too_big = self.server.upload_limit + 1
        reply = await self.call("POST", "/api/uploads", alice, {"filename": "big.bin", "size": too_big})
        self.assertEqual((reply.code, reply.json), (413, "File too large"), reply)

    async def test_put_of_another_size_is_refused_by_the_server(self) -> None:
        """The slot is for the declared size: the server refuses a PUT of a different length."""
        alice = self.new_user("alice")
        reply = await self.call(
            "POST", "/api/uploads", alice, {"filename": "a.txt", "size": 10, "content_type": "text/plain"}
        )
        self.assertEqual(reply.code, 201, reply)
        self.assertGreaterEqual(await self.put(reply.json, b"x" * 11, "text/plain"), 400)

    async def test_server_own_file_too_large_error_is_recognised(self) -> None:
        """Asked past its limit, the server's own refusal carries <file-too-large/>, which the bridge maps to 413."""
        alice = self.new_user("alice")
        session = await self.bridge.parts.pool.session(JID(alice[0]), alice[1])
        unknown_limit = UploadService(JID(self.server.upload_host), None)
        with self.assertRaises(FileTooLarge):
            await request_slot(session, unknown_limit, "big.bin", self.server.upload_limit + 1, None)

    async def test_server_without_upload_is_501(self) -> None:
        """A Prosody without an upload component: 501 with the contract string, on every try."""
        own = ProsodyServer(upload=False)
        own.start()
        self.addCleanup(own.cleanup)
        own.register("alice", "pw")
        config = bridge_config(self.mktemp(), xmpp={"port": own.c2s_port, "ca_file": str(own.ca_file)})
        running = RunningBridge(reactor, config)
        await running.start()
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(running.stop()))
        for _ in range(2):  # the second answer comes from the per-domain cache
            response = await running.http.post(
                running.url("/api/uploads"),
                json={"filename": "a.txt", "size": 1},
                headers={"Authorization": [basic("alice@localhost", "pw")]},
            )
            reply = Reply(response.code, response.headers, await response.content())
            self.assertEqual((reply.code, reply.json), (501, "the XMPP server has no file upload (XEP-0363)"))
