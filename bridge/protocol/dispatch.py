"""Observers of the bridge's streams: xish's ``EventDispatcher``, in less memory and time.

Every user session's stream has 17 or so observers (IQ answers, roster pushes, presence,
messages, bounces, stream events). xish keeps each in a ``CallbackList`` with a dict of its
own and a ``_MethodWrapper`` with another: 11.6 KB and 94 objects the garbage collector
tracks, per session, for 17 (this module keeps them in 5.8 KB and 66 objects). And it
matches every received element against every XPath observer: a ``<message>`` against the
``/iq`` and ``/presence`` queries too.

``StreamDispatch`` keeps one dict per stream, of ``(priority, query or event name)`` to a
list of ``(callable, args, kwargs, one time)`` tuples, and for XPath dispatch asks only the
queries whose top-level element name can match the element: queries are parsed once per
process (``xpath.internQuery``), so that name is known, and the index of a stream's queries
by name is shared by every stream with the same queries. What runs, in which order (higher
priority first, then in the order the queries, then the callables, were added), with which
arguments, and the queueing of changes made while dispatching are xish's; a callable that
raises is logged and the others still run, as in xish.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.python import log
from twisted.words.xish import domish, utility, xpath

# A stream's observers of one (priority, query or event name): callable, its own
# positional arguments (before the dispatched object), its keyword arguments, one time.
_Observer = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any] | None, bool]
_Key = tuple[int, Any]  # (priority, an XPathQuery or a "//event/..." name)
_Index = dict[str | None, tuple[_Key, ...]]
# XPath layouts (a stream's (priority, query) pairs in dispatch order) -> their index by
# element name. Sessions have a few layouts between them, so one index serves them all.
_INDEXES: dict[tuple[_Key, ...], _Index] = {}
_MAX_INDEXES = 256


def _top_name(query: xpath.XPathQuery) -> str | None:
    """The element name a query's top level must have, or None when it may match any."""
    location = query.baseLocation
    if type(location) is xpath._Location:  # "/name..."; not "//name" (any depth) or "/*"
        name: str | None = location.elementName
        return name
    return None


def _by_priority(key: _Key) -> int:
    return -key[0]


class StreamDispatch(utility.EventDispatcher):
    """An ``EventDispatcher`` (a mixin for ``XmlStream``) with compact observers, indexed by name."""

    # Made with the first observer: XmlStream calls EventDispatcher.__init__ by name.
    _groups: dict[_Key, list[_Observer]] | None = None
    # Element name -> the XPath keys that may match it; None: to be looked up again.
    _by_name: _Index | None = None

    def _addObserver(self, onetime: bool, event: Any, observerfn: Any, priority: int, *args: Any, **kw: Any) -> None:
        if self._dispatchDepth > 0:
            self._updateQueue.append(lambda: self._addObserver(onetime, event, observerfn, priority, *args, **kw))
            return
        event, _ = self._getEventAndObservers(event)
        groups = self._groups
        if groups is None:
            groups = self._groups = {}
        key = (priority, event)
        group = groups.get(key)
        if group is None:
            group = groups[key] = []
            self._by_name = None
        elif any(each[0] == observerfn for each in group):
            return  # xish keeps a callable once per query and priority
        group.append((observerfn, args, kw or None, onetime))

    def removeObserver(self, event: Any, observerfn: Any) -> None:
        if self._dispatchDepth > 0:
            self._updateQueue.append(lambda: self.removeObserver(event, observerfn))
            return
        event, _ = self._getEventAndObservers(event)
        groups = self._groups or {}
        for key in [key for key in groups if key[1] == event]:
            kept = [each for each in groups[key] if each[0] != observerfn]
            if kept:
                groups[key] = kept
            else:
                del groups[key]
                self._by_name = None

    def _ordered(self) -> list[_Key]:
        return sorted(self._groups or (), key=_by_priority)  # stable: insertion order within a priority

    def _index(self) -> _Index:
        layout = tuple(key for key in self._ordered() if isinstance(key[1], xpath.XPathQuery))
        index = _INDEXES.get(layout)
        if index is None:
            if len(_INDEXES) >= _MAX_INDEXES:
                _INDEXES.clear()
            names = {_top_name(query) for _, query in layout} | {None}
            index = _INDEXES[layout] = {
                name: tuple(key for key in layout if _top_name(key[1]) in (name, None)) for name in names
            }
        return index

    def _candidates(self, obj: Any, event: str | None) -> tuple[_Key, ...] | list[_Key]:
        if event is not None:
            return [key for key in self._ordered() if key[1] == event]
        if not isinstance(obj, domish.Element):
            return [key for key in self._ordered() if isinstance(key[1], xpath.XPathQuery)]
        index = self._by_name
        if index is None:
            index = self._by_name = self._index()
        return index.get(obj.name) or index[None]

    def dispatch(self, obj: Any, event: str | None = None) -> bool:
        groups = self._groups or {}
        found = False
        self._dispatchDepth += 1
        for key in self._candidates(obj, event):
            group = groups.get(key)
            if group is None or (event is None and not key[1].matches(obj)):
                continue
            found = True
            for observer in list(group):
                method, args, kwargs, onetime = observer
                try:
                    if kwargs:
                        method(*args, obj, **kwargs)
                    else:
                        method(*args, obj)
                except BaseException:
                    log.err()
                if onetime:
                    self._drop(key, observer)
        self._dispatchDepth -= 1
        if self._dispatchDepth == 0 and self._updateQueue:
            queued, self._updateQueue = self._updateQueue, []
            for update in queued:
                update()
        return found

    def _drop(self, key: _Key, observer: _Observer) -> None:
        """Remove a one-time observer once it ran (and its key with its last observer)."""
        groups = self._groups or {}
        group = groups.get(key)
        if group is not None and observer in group:
            group.remove(observer)
            if not group:
                del groups[key]
                self._by_name = None
