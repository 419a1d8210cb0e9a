"""Raising the open-files limit at start (DESIGN.md Guarantees).

Every event stream holds an HTTP socket and an XMPP session, and Debian's ``su`` and
``runuser`` reset the soft limit to 1,024: the daemon raises its soft limit to the hard one
so thousands of streams fit, and says so when it cannot.
"""

from __future__ import annotations

import resource

from twisted.logger import Logger

log = Logger()


def raise_open_files_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        log.warn("Could not raise the open-files limit from {soft}", soft=soft)
        return soft
    return hard
