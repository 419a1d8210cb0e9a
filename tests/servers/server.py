"""What every XMPP server the tests run has in common (Prosody, ejabberd).

The base class and the port helpers are the demo's (``bridge.demo.prosody``), so the demo
and the tests start their servers with the same code; ``XmppTestServer`` is its name here.
"""

from __future__ import annotations

from bridge.demo.prosody import LocalServer as XmppTestServer
from bridge.demo.prosody import free_port, wait_for_port

__all__ = ["XmppTestServer", "free_port", "wait_for_port"]
