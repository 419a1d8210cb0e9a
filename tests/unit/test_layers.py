"""The protocol layer stays at the bottom: importing it pulls in no other part of the bridge."""

from __future__ import annotations

import subprocess
import sys

from twisted.trial import unittest

FORBIDDEN = ("bridge.xmpp", "bridge.muclight", "bridge.api", "bridge.http", "bridge.store", "bridge.config")


def loaded_after(module: str) -> set[str]:
    """The bridge modules a fresh interpreter has loaded after importing ``module``."""
    code = f"import sys, {module}; print('\\n'.join(m for m in sys.modules if m.startswith('bridge')))"
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(output.split())


class LayerTests(unittest.TestCase):
    def test_protocol_layer_imports_no_other_layer(self) -> None:
        """bridge.protocol's modules load nothing from sessions, component, API, HTTP, store or config."""
        for module in ("convert", "jid", "muclight", "namespaces", "xml"):
            loaded = loaded_after(f"bridge.protocol.{module}")
            self.assertEqual({m for m in loaded if m.startswith(FORBIDDEN)}, set(), module)

    def test_muclight_client_does_not_load_the_component(self) -> None:
        """The MUC Light client side imports the protocol layer, not the component package (its store, its config)."""
        loaded = loaded_after("bridge.xmpp.muclight_client")
        self.assertEqual(
            {m for m in loaded if m.startswith(("bridge.muclight", "bridge.store", "bridge.config"))}, set()
        )
