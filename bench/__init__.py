"""The bridge's benchmark suite: ``python3 -m bench`` (see bench/README.md).

Every figure is compared with a baseline measured in the same run on the same machine:
a minimal Klein endpoint (the HTTP framework's floor) and plain XMPP clients talking to
the same Prosody. Load is generated outside the bridge's process: Debian's ``wrk`` for
HTTP, and ``bench.worker`` processes (Twisted, their own reactor) for XMPP and SSE.
"""
