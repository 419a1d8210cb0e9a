"""Debian's Prosody on free loopback ports for tests and benchmarks: the demo's launcher.

``bridge.demo.prosody.Prosody`` writes the configuration, makes the certificate, runs the
server (as the ``prosody`` user under root) and registers accounts; the tests only add the
choice of another Prosody (``BRIDGE_PROSODY``).
"""

from __future__ import annotations

import os
from pathlib import Path

from bridge.demo.prosody import Prosody

# BRIDGE_PROSODY: another Prosody's launcher, e.g. a backports package unpacked with
# ``dpkg-deb -x`` whose CFG_SOURCEDIR points into it; its own modules directory is used.
PROSODY = os.environ.get("BRIDGE_PROSODY", "prosody")


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
    ) -> None:
        super().__init__(
            domain, component, privileges, archive, c2s_port, component_port, workdir, launcher or PROSODY, upload
        )
