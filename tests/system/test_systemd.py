"""systemd/bridge.service as systemd itself reads it (``systemd-analyze verify``).

No systemd runs in a container or on CI, so the unit is verified offline: in a scratch root
(``--root``) holding this machine's own unit files (so ``network-online.target`` and
``multi-user.target`` resolve), the unit under ``/etc/systemd/system`` and an executable
stub where ``ExecStart=`` expects ``twistd`` (where pip puts it differs by machine).
``systemd-analyze verify`` then parses every line, loads the dependencies and checks the
command; it must print nothing at all, since an unknown key or a bad value is only a
warning. With ``SYSTEMD_LOG_LEVEL=debug`` it also dumps the unit as parsed, which is how
the sandboxing values are checked.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from twisted.trial import unittest

from bridge.config import LimitsConfig

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "bridge.service"
SYSUSERS = ROOT / "systemd" / "bridge.sysusers"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def unit_value(text: str, key: str) -> list[str]:
    return re.findall(rf"(?m)^{key}=(.*)$", text)


class SystemdUnitTests(unittest.TestCase):
    def setUp(self) -> None:
        if shutil.which("systemd-analyze") is None:
            self.fail("systemd-analyze is missing: apt-get install systemd (.ci/run does)")
        self.text = UNIT.read_text()

    def scratch_root(self, unit_text: str) -> Path:
        root = Path(self.mktemp()).resolve()
        shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
        units = root / "etc/systemd/system"
        units.mkdir(parents=True)
        (units / "bridge.service").write_text(unit_text)
        program = root / shlex.split(unit_value(unit_text, "ExecStart")[0])[0].lstrip("/")
        program.parent.mkdir(parents=True, exist_ok=True)
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(0o755)
        return root

    def verify(self, unit_text: str, debug: bool = False) -> subprocess.CompletedProcess[str]:
        environment = {**os.environ, "SYSTEMD_LOG_LEVEL": "debug" if debug else "notice"}
        return subprocess.run(
            ["systemd-analyze", "verify", f"--root={self.scratch_root(unit_text)}", "bridge.service"],
            capture_output=True,
            text=True,
            env=environment,
            timeout=60,
        )

    def test_verify_passes_without_a_single_warning(self) -> None:
        """systemd-analyze verify accepts the unit and prints no warning."""
        result = self.verify(self.text)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout + result.stderr, "")

    def test_verify_catches_mistakes(self) -> None:
        """The same check fails on a misspelt key, a bad value or a missing program, so it proves something."""
        for broken in (
            self.text.replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"),
            self.text.replace("ProtectSystem=strict", "ProtectSystem=very"),
            self.text.replace("Restart=on-failure", "Restart=sometimes"),
        ):
            result = self.verify(broken)
            self.assertNotEqual(result.stdout + result.stderr, "")
        missing = self.text.replace("/usr/local/bin/twistd", "/opt/none/twistd")
        root = self.scratch_root(self.text)
        (root / "etc/systemd/system/bridge.service").write_text(missing)
        result = subprocess.run(
            ["systemd-analyze", "verify", f"--root={root}", "bridge.service"], capture_output=True, text=True
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("not executable", result.stderr)

    def test_parsed_unit_runs_twistd_as_a_sandboxed_dedicated_user(self) -> None:
        """As systemd parses it, the unit runs the documented command as 'bridge', sandboxed, restarting on failure."""
        result = self.verify(self.text, debug=True)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        dump = result.stdout + result.stderr
        section = dump[dump.index("-> Unit bridge.service:") :].split("\n\t-> Unit ", 1)[0]
        parsed = dict(re.findall(r"(?m)^\t\t(\w+): (.*)$", section))
        expected = {
            "User": "bridge",
            "Group": "bridge",
            "Restart": "on-failure",
            "ProtectSystem": "strict",
            "ProtectHome": "yes",
            "PrivateTmp": "yes",
            "PrivateDevices": "yes",
            "StateDirectory": "bridge",
            "MemoryDenyWriteExecute": "yes",
            "RestrictSUIDSGID": "yes",
            "LockPersonality": "yes",
            "KillSignal": "SIGTERM",
        }
        for key, value in expected.items():
            self.assertEqual(parsed.get(key), value, key)
        self.assertIn(
            "Command Line: /usr/local/bin/twistd --nodaemon --pidfile= bridge --config /etc/bridge/bridge.toml",
            section,
        )
        limits = LimitsConfig()
        self.assertGreater(int(parsed["LimitNOFILE"]), limits.max_sessions + limits.max_streams)
        # systemd 252 leaves these out of its dump; the unit file states them.
        self.assertEqual(unit_value(self.text, "NoNewPrivileges"), ["yes"])
        self.assertEqual(unit_value(self.text, "LoadCredential"), ["muclight-secret:/etc/bridge/muclight-secret"])

    def test_shutdown_fits_in_the_stop_timeout(self) -> None:
        """TimeoutStopSec leaves room for the drain (http.shutdown_timeout) and closing sessions."""
        (timeout,) = unit_value(self.text, "TimeoutStopSec")
        self.assertGreaterEqual(int(timeout), 10 + 5 + 5)

    def test_sysusers_snippet_creates_the_user(self) -> None:
        """systemd/bridge.sysusers is valid for systemd-sysusers and creates the 'bridge' user."""
        if shutil.which("systemd-sysusers") is None:
            self.fail("systemd-sysusers is missing: apt-get install systemd")
        root = Path(self.mktemp()).resolve()
        (root / "etc").mkdir(parents=True)
        result = subprocess.run(
            ["systemd-sysusers", f"--root={root}", str(SYSUSERS)], capture_output=True, text=True, timeout=60
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        passwd = (root / "etc/passwd").read_text()
        self.assertRegex(passwd, r"(?m)^bridge:x:\d+:\d+:xmpp-rest-bridge:/var/lib/bridge:/usr/sbin/nologin$")
