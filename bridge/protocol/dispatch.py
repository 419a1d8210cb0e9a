"""Stanza dispatch that asks only the observers whose XPath can match the stanza's name.

xish's ``EventDispatcher`` matches every received element against every XPath observer of
the stream. A user session has 11 to 13 of them (IQ answers, roster pushes, presence,
messages, archive results, bounces), and most name another top-level element than the one
received: a ``<message>`` was tried against the ``/iq`` and ``/presence`` queries too, and
``/iq[@type='result']`` against each of the 50 messages of an archive page. Queries are
parsed once per process (``xpath.internQuery``), so their top-level element name is known:
``NameIndexedDispatch`` keeps, per name, the observers that may match it, in xish's order
(higher priority first, then in the order they were added), and rebuilds that index when
observers change. Which observers run, in which order, and the queueing of observer
changes made during a dispatch are xish's.
"""

from __future__ import annotations

from typing import Any

from twisted.words.xish import domish, utility, xpath

_Entry = tuple[int, xpath.XPathQuery, utility.CallbackList]


def _top_name(query: xpath.XPathQuery) -> str | None:
    """The element name a query's top level must have, or None when it may match any."""
    location = query.baseLocation
    if type(location) is xpath._Location:  # "/name..."; not "//name" (any depth) or "/*"
        name: str | None = location.elementName
        return name
    return None


class NameIndexedDispatch(utility.EventDispatcher):
    """An ``EventDispatcher`` (a mixin for ``XmlStream``) that indexes XPath observers by name."""

    # Top-level element name -> the observers that may match it; None: to be rebuilt.
    _by_name: dict[str | None, list[_Entry]] | None = None

    def _addObserver(self, onetime: bool, event: Any, observerfn: Any, priority: int, *args: Any, **kw: Any) -> None:
        self._by_name = None
        super()._addObserver(onetime, event, observerfn, priority, *args, **kw)

    def removeObserver(self, event: Any, observerfn: Any) -> None:
        self._by_name = None
        super().removeObserver(event, observerfn)

    def _index(self) -> dict[str | None, list[_Entry]]:
        entries = [
            (priority, query, callbacks)
            for priority in sorted(self._xpathObservers, reverse=True)
            for query, callbacks in self._xpathObservers[priority].items()
        ]
        names = {_top_name(query) for _, query, _ in entries}
        return {name: [entry for entry in entries if _top_name(entry[1]) in (name, None)] for name in names | {None}}

    def dispatch(self, obj: Any, event: str | None = None) -> bool:
        if event is not None or not isinstance(obj, domish.Element):
            found: bool = super().dispatch(obj, event)
            return found
        index = self._by_name
        if index is None:
            index = self._by_name = self._index()
        candidates = index.get(obj.name) or index[None]
        found = False
        emptied = []
        self._dispatchDepth += 1
        for priority, query, callbacks in candidates:
            if query.matches(obj):
                callbacks.callback(obj)
                found = True
                if callbacks.isEmpty():
                    emptied.append((priority, query))
        for priority, query in emptied:
            self._xpathObservers[priority].pop(query, None)
            self._by_name = None
        self._dispatchDepth -= 1
        if self._dispatchDepth == 0 and self._updateQueue:
            queued, self._updateQueue = self._updateQueue, []
            for update in queued:
                update()
        return found
