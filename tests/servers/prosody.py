"""Debian's Prosody on free loopback ports for tests and benchmarks: the demo's launcher.

``bridge.demo.prosody.Prosody`` writes the configuration, makes the certificate, runs the
server (as the ``prosody`` user under root) and registers accounts; the tests only add the
choice of another Prosody (``BRIDGE_PROSODY``) and XEP-0357 push (``push``, on by default:
``etc/prosody-push.cfg.lua``'s settings, harmless to tests that register no webhook).
"""

from __future__ import annotations

import os
from pathlib import Path

from bridge.demo.prosody import Prosody

# BRIDGE_PROSODY: another Prosody's launcher, e.g. a backports package unpacked with
# ``dpkg-deb -x`` whose CFG_SOURCEDIR points into it; its own modules directory is used.
PROSODY = os.environ.get("BRIDGE_PROSODY", "prosody")

# XEP-0357 as etc/prosody-push.cfg.lua enables it: mod_cloud_notify (prosody-modules for
# 0.12; in core from 13), with the sender and the body in the summary.
PUSH_MODULE = '"cloud_notify",'
PUSH_OPTIONS = "push_notification_with_body = true\npush_notification_with_sender = true\n"


class ProsodyServer(Prosody):
    """One Prosody process with one user domain and one declared component."""

    def __init__(
        self,
        domain: str = "localhost",
        component: str = "muclight.localhost",
        privileges: bool = True,
        archive: str = "sql",
        c2s_port: int | None = None,
        component_port: int | None = None,
        workdir: Path | None = None,
        launcher: str | None = None,
        upload: bool = True,
        push: bool = True,
    ) -> None:
        super().__init__(
            domain, component, privileges, archive, c2s_port, component_port, workdir, launcher or PROSODY, upload
        )
        self.push = push

    def config(self) -> str:
        """The demo's configuration, with mod_cloud_notify when ``push``."""
        text = super().config()
        if not self.push:
            return text
        marker = "modules_enabled = {\n"
        assert marker in text
        return PUSH_OPTIONS + text.replace(marker, marker + "  " + PUSH_MODULE + "\n", 1)
