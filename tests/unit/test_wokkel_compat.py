"""wokkel 18 imports on current Twisted once bridge.wokkel_compat has run."""

import importlib

from twisted.trial import unittest

import bridge  # noqa: F401  (applies the compatibility names)

# Every wokkel module the bridge uses, and the ones it may use next.
WOKKEL_MODULES = [
    "wokkel.client",
    "wokkel.component",
    "wokkel.data_form",
    "wokkel.delay",
    "wokkel.disco",
    "wokkel.generic",
    "wokkel.iwokkel",
    "wokkel.muc",
    "wokkel.ping",
    "wokkel.pubsub",
    "wokkel.server",
    "wokkel.shim",
    "wokkel.subprotocols",
    "wokkel.xmppim",
]


class WokkelImportTests(unittest.TestCase):
    def test_every_wokkel_module_imports(self) -> None:
        """Each wokkel module imports without ImportError on the installed Twisted."""
        for name in WOKKEL_MODULES:
            importlib.import_module(name)

    def test_constants_come_from_constantly(self) -> None:
        """twisted.python.constants resolves to the maintained constantly package."""
        import constantly
        from twisted.python import constants  # type: ignore[attr-defined]

        self.assertIs(constants.Values, constantly.Values)
