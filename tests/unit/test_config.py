"""Parsing and validating the TOML configuration."""

from __future__ import annotations

import os

from twisted.trial import unittest

from bridge.config import ConfigError, load_config, parse_config
from bridge.tap import Options, build, with_backlog


class ParseTests(unittest.TestCase):
    def assertConfigError(self, text: str, message: str, environ: dict[str, str] | None = None) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config(text, environ or {})
        self.assertEqual(str(caught.exception), message)

    def test_defaults_match_design(self) -> None:
        """An empty file gives DESIGN.md's defaults."""
        config = parse_config("", {})
        self.assertEqual(config.http.endpoint, "tcp:8089:interface=127.0.0.1")
        self.assertEqual(config.http.cors_origins, ["*"])
        self.assertEqual((config.xmpp.host, config.xmpp.port, config.xmpp.domains), ("127.0.0.1", 5222, ["localhost"]))
        self.assertEqual((config.xmpp.tls, config.xmpp.ca_file), ("required", ""))
        self.assertEqual(config.muclight.service, "muclight.localhost")
        self.assertEqual(
            (config.muclight.component, config.muclight.port, config.muclight.max_occupants), (True, 5347, 100)
        )
        self.assertEqual(config.storage.url, "sqlite:///var/lib/bridge/bridge.sqlite3")
        throttle = config.throttle
        self.assertEqual((throttle.failures_per_jid, throttle.failures_per_address, throttle.window), (5, 50, 60.0))
        self.assertEqual(throttle.failures_per_pair, 3)
        self.assertEqual((config.http.backlog, config.http.access_log), (1024, True))

    def test_example_file_is_valid_and_complete(self) -> None:
        """etc/bridge.toml parses and shows every key of every section."""
        path = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "bridge.toml")
        config = load_config(path, {})
        with open(path) as f:
            text = f.read()
        for section in ("http", "xmpp", "muclight", "storage", "throttle", "cluster"):
            self.assertIn(f"[{section}]", text)
            for key in getattr(config, section).__dataclass_fields__:
                self.assertRegex(text, rf"(?m)^{key} = ", f"{section}.{key} is not in etc/bridge.toml")

    def test_unknown_key_is_named(self) -> None:
        """An unknown key is reported with its section."""
        self.assertConfigError("[http]\nport = 1", "http.port: unknown key")

    def test_unknown_section_is_named(self) -> None:
        """An unknown section is reported."""
        self.assertConfigError("[database]\nurl = 'x'", "database: unknown section")

    def test_wrong_types_are_named(self) -> None:
        """Wrong value types name the key and the expected type."""
        self.assertConfigError('[muclight]\nport = "5347"', "muclight.port: expected an integer")
        self.assertConfigError("[xmpp]\nport = true", "xmpp.port: expected an integer")
        self.assertConfigError('[xmpp]\ndomains = "localhost"', "xmpp.domains: expected a list of strings")
        self.assertConfigError("[xmpp]\ndomains = [1]", "xmpp.domains[0]: expected a string")
        self.assertConfigError('[muclight]\ncomponent = "yes"', "muclight.component: expected true or false")
        self.assertConfigError("http = 1", "http: expected a table")
        self.assertConfigError('[http]\naccess_log = "off"', "http.access_log: expected true or false")

    def test_bad_values_are_named(self) -> None:
        """Out-of-range values name the key."""
        self.assertConfigError('[xmpp]\ntls = "maybe"', 'xmpp.tls: expected "required", "optional" or "disabled"')
        self.assertConfigError("[xmpp]\nport = 70000", "xmpp.port: expected a port number (1-65535)")
        self.assertConfigError("[xmpp]\ntimeout = 0", "xmpp.timeout: must be greater than 0")
        self.assertConfigError("[xmpp]\ndomains = []", "xmpp.domains: at least one domain is needed")
        self.assertConfigError(
            "[throttle]\nfailures_per_pair = 0", "throttle.failures_per_pair: must be greater than 0"
        )
        self.assertConfigError("[http]\nbacklog = 0", "http.backlog: must be greater than 0")
        self.assertConfigError(
            '[storage]\nurl = "mysql://x"', "storage.url: expected sqlite:///path or postgresql://..."
        )

    def test_cluster_node(self) -> None:
        """cluster.node defaults to "" (the only process), takes a sane name, and names the key on a bad one."""
        self.assertEqual(parse_config("", {}).cluster.node, "")
        self.assertEqual(parse_config('[cluster]\nnode = "bridge-1.eu"', {}).cluster.node, "bridge-1.eu")
        message = "cluster.node: expected at most 63 characters of [A-Za-z0-9._-]"
        for bad in ("a b", "x" * 64, "n\u00e9", "a/b"):
            self.assertConfigError(f"[cluster]\nnode = {bad!r}", message)
        self.assertConfigError("[cluster]\nnode = 1", "cluster.node: expected a string")
        self.assertConfigError("[cluster]\nname = 'x'", "cluster.name: unknown key")

    def test_integers_are_accepted_for_numbers(self) -> None:
        """A whole number is fine where seconds are expected."""
        self.assertEqual(parse_config("[xmpp]\ntimeout = 2", {}).xmpp.timeout, 2.0)

    def test_invalid_toml(self) -> None:
        """A syntax error says so."""
        with self.assertRaises(ConfigError) as caught:
            parse_config("[xmpp\n", {})
        self.assertIn("not valid TOML", str(caught.exception))

    def test_unreadable_ca_file(self) -> None:
        """A missing or non-PEM CA file is named."""
        self.assertConfigError(
            '[xmpp]\nca_file = "/nonexistent/ca.pem"',
            "xmpp.ca_file: cannot read /nonexistent/ca.pem: No such file or directory",
        )
        junk = self.mktemp()
        with open(junk, "w") as f:
            f.write("not a certificate")
        self.assertConfigError(f'[xmpp]\nca_file = "{junk}"', f"xmpp.ca_file: {junk} is not a PEM certificate")

    def test_secret_from_environment_wins(self) -> None:
        """BRIDGE_MUCLIGHT_SECRET overrides the file's secret and secret_file."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("from-file\n")
        text = f'[muclight]\nsecret = "in-config"\nsecret_file = "{path}"'
        self.assertEqual(parse_config(text, {}).muclight.secret, "from-file")
        self.assertEqual(parse_config(text, {"BRIDGE_MUCLIGHT_SECRET": "env"}).muclight.secret, "env")
        self.assertEqual(parse_config('[muclight]\nsecret = "in-config"', {}).muclight.secret, "in-config")

    def test_secret_never_in_repr(self) -> None:
        """The secret does not show in the config's repr (and so not in logs)."""
        config = parse_config('[muclight]\nsecret = "hunter2"', {})
        self.assertNotIn("hunter2", repr(config))

    def test_missing_file(self) -> None:
        """A missing config file is named."""
        with self.assertRaises(ConfigError) as caught:
            load_config("/nonexistent/bridge.toml", {})
        self.assertIn("/nonexistent/bridge.toml", str(caught.exception))


class OptionsTests(unittest.TestCase):
    def test_bad_config_exits_with_one_line(self) -> None:
        """twistd's option parsing stops with one line naming the key."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[xmpp]\nport = "x"\n')
        with self.assertRaises(SystemExit) as caught:
            Options().parseOptions(["--config", path])
        self.assertEqual(str(caught.exception), "bridge: xmpp.port: expected an integer")

    def test_listen_backlog_is_applied(self) -> None:
        """http.backlog (default 1024) is the HTTP listener's backlog unless the endpoint string sets its own."""
        from twisted.internet.testing import MemoryReactorClock

        for text, expected in (
            ("", 1024),
            ("[http]\nbacklog = 300", 300),
            ('[http]\nendpoint = "tcp:8089:backlog=7:interface=127.0.0.1"', 7),
        ):
            reactor = MemoryReactorClock()
            _, parts = build(parse_config("[muclight]\ncomponent = false\n" + text, {}), reactor)
            parts.http.startService()
            self.addCleanup(parts.http.stopService)
            (listener,) = reactor.tcpServers
            self.assertEqual(listener[2], expected, text)

    def test_access_log_switch_reaches_the_site(self) -> None:
        """http.access_log (default true) is the site's: false makes BridgeSite.log a no-op."""
        from twisted.internet.testing import MemoryReactorClock

        for text, expected in (("", True), ("[http]\naccess_log = false", False)):
            _, parts = build(parse_config("[muclight]\ncomponent = false\n" + text, {}), MemoryReactorClock())
            self.assertIs(parts.site.access_log, expected, text)

    def test_with_backlog(self) -> None:
        """backlog= is added to endpoint types that take it, and only when the string has none."""
        self.assertEqual(with_backlog("tcp:8089:interface=127.0.0.1", 9), "tcp:8089:interface=127.0.0.1:backlog=9")
        self.assertEqual(with_backlog("ssl:8443:privateKey=k.pem", 9), "ssl:8443:privateKey=k.pem:backlog=9")
        self.assertEqual(with_backlog("unix:/run/bridge.sock", 9), "unix:/run/bridge.sock:backlog=9")
        self.assertEqual(with_backlog("tcp:8089:backlog=5", 9), "tcp:8089:backlog=5")
        self.assertEqual(with_backlog("systemd:domain=INET:index=0", 9), "systemd:domain=INET:index=0")

    def test_bad_endpoint_is_named(self) -> None:
        """An endpoint string Twisted cannot parse is reported as http.endpoint."""
        from twisted.internet.testing import MemoryReactorClock

        config = parse_config('[http]\nendpoint = "tcp:notaport"', {})
        with self.assertRaises(ConfigError) as caught:
            build(config, MemoryReactorClock())
        self.assertTrue(str(caught.exception).startswith("http.endpoint: not a valid endpoint description"))
