"""Stanza dispatch that asks only the observers whose XPath can match the stanza's name.

xish's ``EventDispatcher`` matches every received element against every XPath observer of
the stream. A user session has 11 to 13 of them (IQ answers, roster pushes, presence,
messages, archive results, bounces), and most name another top-level element than the one
received: a ``<message>`` was tried against the ``/iq`` and ``/presence`` queries too, and
``/iq[@type='result']`` against each of the 50 messages of an archive page. Queries are
parsed once per process (``xpath.internQuery``), so their top-level element name is known:
``NameIndexedDispatch`` keeps, per name, the observers that may match it, in xish's order
(higher priority first, then in the order they were added), and rebuilds that index when
observers change; streams with the same observers share one index. Which observers run,
in which order, and the queueing of observer changes made during a dispatch are xish's.
"""

from __future__ import annotations

from typing import Any

from twisted.words.xish import domish, utility, xpath

# An observer of the stream: (priority, query); its callbacks are the stream's own.
_Key = tuple[int, xpath.XPathQuery]
_Index = dict[str | None, tuple[_Key, ...]]
# Observer layouts -> their index. Sessions all have the same few layouts, so one index
# serves them all (an index of its own cost a session 1.5 KB).
_INDEXES: dict[tuple[_Key, ...], _Index] = {}
_MAX_INDEXES = 256


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
    _by_name: _Index | None = None

    def _addObserver(self, onetime: bool, event: Any, observerfn: Any, priority: int, *args: Any, **kw: Any) -> None:
        self._by_name = None
        super()._addObserver(onetime, event, observerfn, priority, *args, **kw)

    def removeObserver(self, event: Any, observerfn: Any) -> None:
        self._by_name = None
        super().removeObserver(event, observerfn)

    def _index(self) -> _Index:
        layout = tuple(
            (priority, query)
            for priority in sorted(self._xpathObservers, reverse=True)
            for query in self._xpathObservers[priority]
        )
        index = _INDEXES.get(layout)
        if index is None:
            if len(_INDEXES) >= _MAX_INDEXES:
                _INDEXES.clear()
            names = {_top_name(query) for _, query in layout} | {None}
            index = _INDEXES[layout] = {
                name: tuple(key for key in layout if _top_name(key[1]) in (name, None)) for name in names
            }
        return index

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
        observers = self._xpathObservers
        for priority, query in candidates:
            callbacks = observers[priority].get(query)
            if callbacks is not None and query.matches(obj):
                callbacks.callback(obj)
                found = True
                if callbacks.isEmpty():
                    emptied.append((priority, query))
        for priority, query in emptied:
            observers[priority].pop(query, None)
            self._by_name = None
        self._dispatchDepth -= 1
        if self._dispatchDepth == 0 and self._updateQueue:
            queued, self._updateQueue = self._updateQueue, []
            for update in queued:
                update()
        return found
