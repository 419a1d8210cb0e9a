"""The HTTP edge (RFC 9110, RFC 9112): everything between the socket and the REST routes.

The request class and its typed state (``request``), the connection's deadlines and size
limits (``channel``), CORS (``cors``), checks before routing (``checks``), rate limits and
caps (``limits``), request metrics (``metrics``), the site that stacks them (``site``),
``/readyz``'s checks (``readiness``), and the one renderer of JSON answers (``errors``).

The layering is one-way: this package imports from ``bridge.xmpp``, ``bridge.protocol``,
``bridge.config``, ``bridge.throttle`` and ``bridge.metrics``, never from ``bridge.api``;
the REST resource groups in ``bridge.api`` build on it, and ``bridge.tap`` wires the two.
"""
