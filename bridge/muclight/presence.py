"""Which full JIDs of each user are available, learnt from presence (RFC 6121 section 4).

Servers refuse ``groupchat`` messages to a bare JID (RFC 6121 8.5.2.1.1), so the room
delivers to full JIDs, and needs to know them. Two sources feed this table, and the
component cannot tell them apart, nor needs to:

* XEP-0356 privileged entity, presence permission ``managed_entity``: the server forwards
  every user's broadcast presence to the component, and all current ones when it connects.
* Directed presence: a client (the bridge's own sessions among them) sends
  ``<presence to='muclight.example.com'/>`` when it goes available; the server then sends
  the component its unavailable presence when it goes away.

A delivery that bounces (a message error from a full JID) removes that JID too.
"""

from __future__ import annotations

from twisted.words.xish import domish

from bridge.protocol.jid import parse


class AvailableResources:
    """The available full JIDs of each bare JID, in the order they appeared."""

    def __init__(self) -> None:
        self._by_user: dict[str, dict[str, None]] = {}

    def __len__(self) -> int:
        return sum(len(resources) for resources in self._by_user.values())

    def resources(self, user: str) -> list[str]:
        return list(self._by_user.get(user, ()))

    def add(self, full: str) -> None:
        user = full.split("/", 1)[0]
        self._by_user.setdefault(user, {})[full] = None

    def remove(self, full: str) -> None:
        user = full.split("/", 1)[0]
        resources = self._by_user.get(user)
        if resources is not None:
            resources.pop(full, None)
            if not resources:
                del self._by_user[user]

    def observe(self, presence: domish.Element) -> None:
        """Update the table from a presence stanza the component received."""
        sender = parse(presence.getAttribute("from"))
        if sender is None or not sender.user or not sender.resource:
            return
        presence_type = presence.getAttribute("type")
        if presence_type is None:
            self.add(sender.full())
        elif presence_type in ("unavailable", "error"):
            self.remove(sender.full())
