"""XEP-0357 Push Notifications: the stanzas of both sides, built and parsed without I/O.

The user's session enables and disables push on her server (section 5:
``<enable xmlns='urn:xmpp:push:0' jid=... node=.../>``, ``<disable/>``); her server then
publishes to the push service (section 5, "Publishing"):

    <iq type='set' from='example.com' to='push.example.net'>
      <pubsub xmlns='http://jabber.org/protocol/pubsub'>
        <publish node='yxs32uqsflafdk3iuqo'>
          <item><notification xmlns='urn:xmpp:push:0'>
            <x xmlns='jabber:x:data' type='submit'>
              <field var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field>
              <field var='message-count'><value>1</value></field>
              <field var='last-message-sender'><value>juliet@capulet.example/balcony</value></field>
              <field var='last-message-body'><value>Wherefore art thou, Romeo?</value></field>
            </x></notification></item>
        </publish>
        <publish-options>...</publish-options>
      </pubsub>
    </iq>

Seen on this machine: Prosody's mod_cloud_notify and ejabberd's mod_push both publish
from the user's *domain*; the XEP also allows the user's bare JID.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.words.xish import domish

NS_PUSH = "urn:xmpp:push:0"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_DATA = "jabber:x:data"
SUMMARY = "urn:xmpp:push:summary"
# Field values longer than this are cut (a body can be long; a notification is a hint).
MAX_FIELD = 4096


def enable(service: str, node: str) -> domish.Element:
    """The payload of the IQ set that turns push on for ``node`` at ``service``."""
    element = domish.Element((NS_PUSH, "enable"))
    element["jid"] = service
    element["node"] = node
    return element


def disable(service: str, node: str) -> domish.Element:
    """The payload of the IQ set that turns push off for ``node`` at ``service``."""
    element = domish.Element((NS_PUSH, "disable"))
    element["jid"] = service
    element["node"] = node
    return element


@dataclass(frozen=True)
class Publish:
    """A notification the server published: its node and what its summary form says."""

    node: str
    count: int | None = None
    sender: str | None = None
    body: str | None = None


def _text(element: domish.Element, name: str) -> str | None:
    for child in element.elements(NS_DATA, name):
        return str(child)[:MAX_FIELD]
    return None


def summary(notification: domish.Element | None) -> dict[str, str]:
    """The fields of the ``urn:xmpp:push:summary`` form in ``notification`` (var -> first value)."""
    if notification is None:
        return {}
    for form in notification.elements(NS_DATA, "x"):
        fields: dict[str, str] = {}
        for field in form.elements(NS_DATA, "field"):
            var, value = field.getAttribute("var"), _text(field, "value")
            if var and value is not None and var not in fields:
                fields[var] = value
        if fields.get("FORM_TYPE", SUMMARY) == SUMMARY:
            return fields
    return {}


def parse_publish(pubsub: domish.Element) -> Publish | None:
    """The publish in a ``<pubsub>`` payload, or None when it holds none with a node."""
    for publish in pubsub.elements(NS_PUBSUB, "publish"):
        node = publish.getAttribute("node")
        if not node:
            return None
        notification = None
        for item in publish.elements(NS_PUBSUB, "item"):
            notification = next(item.elements(NS_PUSH, "notification"), None)
            break
        fields = summary(notification)
        count_text = fields.get("message-count")
        count = int(count_text) if count_text and count_text.isascii() and count_text.isdigit() else None
        if count is not None and count > 2**31:
            count = None
        sender = fields.get("last-message-sender") or None
        body = fields.get("last-message-body")
        return Publish(node, count, sender, body)
    return None
