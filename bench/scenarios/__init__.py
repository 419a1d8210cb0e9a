"""The benchmark scenarios; each appends rows (figures) and targets (verdicts) to a Run.

Servers, deliberately configured per scenario (tests.servers.prosody.ProsodyServer):
* ``archive="off"``: no mod_mam at all, so routing is all Prosody does (send, sse, cold);
* ``archive="sql"``: mod_mam with ``storage = { archive = "sql" }`` in SQLite (archive,
  and the send baselines "archive on").
Every timing is judged against a baseline from the same run, never an absolute figure.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.model import Run
from bench.scenarios.archive import scenario_archive
from bench.scenarios.cluster import scenario_cluster
from bench.scenarios.cold import scenario_cold
from bench.scenarios.modrest import scenario_modrest
from bench.scenarios.rooms import scenario_rooms
from bench.scenarios.send import scenario_send
from bench.scenarios.sse import scenario_sse
from bench.scenarios.streams import scenario_memory, scenario_streams

SCENARIOS: dict[str, Callable[[Run], None]] = {
    "send": scenario_send,
    "archive": scenario_archive,
    "sse": scenario_sse,
    "rooms": scenario_rooms,
    "cold": scenario_cold,
    "streams": scenario_streams,
    "memory": scenario_memory,
    "modrest": scenario_modrest,
    "cluster": scenario_cluster,
}
