"""Try the bridge on one machine: ``python3 -m bridge.demo`` starts a throw-away Prosody with
two users and runs the bridge in front of it (see ``bridge.demo.__main__``).

Needs Debian's ``prosody``, ``prosody-modules`` and ``lua-dbi-sqlite3``; nothing of the
source checkout, so it works from ``pip install .``. The tests start their Prosody with the
same launcher (``bridge.demo.prosody``).
"""
