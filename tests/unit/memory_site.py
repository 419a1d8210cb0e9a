"""StubTreq through the bridge's own site: its request class, HTTP channel and access log.

``StubTreq(resource)`` serves a plain ``twisted.web.server.Site`` around the resource,
whose requests lack the state the bridge's HTTP edge keeps on its own ``BridgeRequest``
(``bridge.http.request``); here the in-memory connection is served by the ``BridgeSite``
that ``bridge.tap.build`` made, as the daemon's socket is.
"""

from __future__ import annotations

from treq.testing import StubTreq

from bridge.http.site import BridgeSite


def site_treq(site: BridgeSite) -> StubTreq:
    """A StubTreq whose requests are answered by ``site`` itself."""
    client = StubTreq(site.resource)
    # treq has no argument for the site; its RequestTraversalAgent builds each server
    # protocol from this factory.
    client._agent._serverFactory = site
    return client
