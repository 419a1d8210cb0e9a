"""XEP-0059 Result Set Management over a sorted list of item keys (the service's
disco#items of a user's rooms, keyed by room JID, as MongooseIM's MUC Light paged them).

A request may give ``<max>``, and ``<after>`` (the key the previous page ended with),
``<before>`` (the key the next page started with; empty: the last page) or ``<index>``.
An ``after`` or ``before`` key that is not in the list is ``item-not-found`` (XEP-0059
section 2.6); the answer's ``<set>`` names the page's first key (with its index), last
key, and the ``<count>`` of the whole list.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.xish import domish

from bridge.protocol.namespaces import NS_RSM
from bridge.protocol.xml import child

# Most items in one page, whatever the client asks for.
MAX_PAGE = 500


@dataclass(frozen=True)
class PageRequest:
    maximum: int | None = None
    after: str | None = None
    before: str | None = None  # "" asks for the last page
    index: int | None = None


def _number(rsm: domish.Element, name: str) -> int | None:
    element = child(rsm, name, NS_RSM)
    if element is None:
        return None
    text = str(element).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise StanzaError("bad-request", text=f"Invalid {name}")
    return int(text)


def parse_request(rsm: domish.Element | None) -> PageRequest | None:
    """The page a ``<set xmlns='http://jabber.org/protocol/rsm'>`` asks for; None without one."""
    if rsm is None:
        return None
    after = child(rsm, "after", NS_RSM)
    before = child(rsm, "before", NS_RSM)
    return PageRequest(
        maximum=_number(rsm, "max"),
        after=None if after is None else str(after).strip(),
        before=None if before is None else str(before).strip(),
        index=_number(rsm, "index"),
    )


def _position(keys: list[str], key: str) -> int:
    try:
        return keys.index(key)
    except ValueError:
        raise StanzaError("item-not-found", text="No such item in the result set") from None


def select(keys: list[str], page: PageRequest | None) -> tuple[list[str], int]:
    """(the page's keys, index of its first key in ``keys``)."""
    if page is None:
        return keys, 0
    limit = MAX_PAGE if page.maximum is None else min(page.maximum, MAX_PAGE)
    if page.before is not None:
        end = len(keys) if page.before == "" else _position(keys, page.before)
        start = max(0, end - limit)
        return keys[start:end], start
    start = _position(keys, page.after) + 1 if page.after is not None else min(page.index or 0, len(keys))
    return keys[start : start + limit], start


def answer(chosen: list[str], first_index: int, count: int) -> domish.Element:
    """The ``<set>`` that describes a page."""
    rsm = domish.Element((NS_RSM, "set"))
    if chosen:
        first = rsm.addElement("first", content=chosen[0])
        first["index"] = str(first_index)
        rsm.addElement("last", content=chosen[-1])
    rsm.addElement("count", content=str(count))
    return rsm
