"""The ejabberd test harness builds its configuration from the shipped admin snippet."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from twisted.trial import unittest

from tests.servers.ejabberd import EjabberdServer


class ConfigTests(unittest.TestCase):
    def server(self, **options: object) -> EjabberdServer:
        workdir = Path(tempfile.mkdtemp(prefix="bridge-ejabberd-test-"))
        self.addCleanup(shutil.rmtree, workdir, True)
        return EjabberdServer(component="rooms.example.org", workdir=workdir, **options)  # type: ignore[arg-type]

    def test_component_listener_comes_from_the_snippet(self) -> None:
        """etc/ejabberd-component.yml's listener is used with the run's port, host and secret."""
        server = self.server()
        config = server.config()
        (service,) = [each for each in config["listen"] if each["module"] == "ejabberd_service"]
        self.assertEqual(service["port"], server.component_port)
        self.assertIs(service["global_routes"], False)
        self.assertEqual(service["hosts"], {"rooms.example.org": {"password": server.component_secret}})
        self.assertEqual(config["acl"]["bridge_component"], {"server": "rooms.example.org"})
        for module in ("mod_mam", "mod_carboncopy", "mod_roster", "mod_ping", "mod_stream_mgmt", "mod_privilege"):
            self.assertIn(module, config["modules"])
        self.assertEqual(config["sql_type"], "sqlite")

    def test_options_drop_modules(self) -> None:
        """archive='off' removes MAM, privileges=False removes mod_privilege, archive='internal' keeps Mnesia."""
        config = self.server(archive="off", privileges=False).config()
        self.assertNotIn("mod_mam", config["modules"])
        self.assertNotIn("mod_privilege", config["modules"])
        internal = self.server(archive="internal").config()
        self.assertEqual(internal["modules"]["mod_mam"]["db_type"], "mnesia")
        self.assertNotIn("sql_type", internal)
        self.assertRaises(ValueError, self.server, archive="files")
