"""A plain XMPP client for tests: Twisted's own client stack, none of the bridge's code.

It stands for a user's phone or desktop client (Smack, Conversations, ...): it logs in,
goes available, collects every message stanza it receives, and sends raw stanzas.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, ssl
from twisted.internet.endpoints import HostnameEndpoint
from twisted.words.protocols.jabber import client, xmlstream
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

NS_PROPERTIES = "http://www.jivesoftware.com/xmlns/xmpp/properties"


def smack_message(to: str, body: str, stanza_id: str = "smack-1") -> domish.Element:
    """A chat message as Smack sends it: thread with parent, and typed jivesoftware properties."""
    message = domish.Element((None, "message"))
    message["to"], message["type"], message["id"] = to, "chat", stanza_id
    message.addElement("body", content=body)
    message.addElement("thread", content="e0ff")["parent"] = "7edac"
    props = message.addElement((NS_PROPERTIES, "properties"))
    for name, kind, value in (("some_number", "integer", "123"), ("some_string", "string", "abc")):
        prop = props.addElement("property")
        prop.addElement("name", content=name)
        prop.addElement("value", content=value)["type"] = kind
    return message


class PlainClient:
    """One logged-in client stream with an inbox of received message stanzas."""

    def __init__(self, xs: xmlstream.XmlStream, jid: JID) -> None:
        self.xmlstream = xs
        self.jid = jid
        self.inbox: defer.DeferredQueue[domish.Element] = defer.DeferredQueue()
        self.presences: defer.DeferredQueue[domish.Element] = defer.DeferredQueue()
        self.iqs: defer.DeferredQueue[domish.Element] = defer.DeferredQueue()
        xs.addObserver("/message", self.inbox.put)
        xs.addObserver("/presence", self.presences.put)
        xs.addObserver("/iq[@type='set']", self.iqs.put)
        self.closed: defer.Deferred[None] = defer.Deferred()
        xs.addObserver(xmlstream.STREAM_END_EVENT, lambda _: self.closed.called or self.closed.callback(None))
        xmlstream.upgradeWithIQResponseTracker(xs)

    def send(self, element: domish.Element | str) -> None:
        self.xmlstream.send(element)

    def available(self, priority: int = 0) -> None:
        presence = domish.Element((None, "presence"))
        presence.addElement("priority", content=str(priority))
        self.send(presence)

    def iq(self, stanza_type: str, payload: domish.Element, to: str | None = None) -> defer.Deferred[Any]:
        iq = xmlstream.IQ(self.xmlstream, stanza_type)
        iq.addChild(payload)
        if to:
            iq["to"] = to
        iq.timeout = 10
        return iq.send()

    async def next_message(self, timeout: float = 10.0) -> domish.Element:
        """The next received message that has a body (servers send others too)."""
        from twisted.internet import reactor

        while True:
            message = await self.inbox.get().addTimeout(timeout, reactor)
            if message.body is not None:
                return message

    def close(self) -> defer.Deferred[None]:
        """End the stream; the Deferred fires once the connection is gone."""
        if not self.closed.called and self.xmlstream.transport is not None:
            self.xmlstream.sendFooter()
            self.xmlstream.transport.loseConnection()
        return self.closed


async def connect_client(
    reactor: Any, host: str, port: int, jid: str, password: str, ca_file: str, resource: str = "phone"
) -> PlainClient:
    """Log ``jid`` in with STARTTLS verified against ``ca_file``; return once bound."""
    full = JID(f"{jid}/{resource}")
    trust = ssl.Certificate.loadPEM(open(ca_file, "rb").read())  # noqa: SIM115
    factory = client.XMPPClientFactory(full, password, ssl.optionsForClientTLS(full.host, trust))
    factory.maxRetries = 0
    ready: defer.Deferred[xmlstream.XmlStream] = defer.Deferred()
    factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, ready.callback)
    factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, ready.errback)
    await HostnameEndpoint(reactor, host, port).connect(factory)
    xs = await ready.addTimeout(10, reactor)
    return PlainClient(xs, xs.authenticator.jid)
