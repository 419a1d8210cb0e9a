"""A bench-only memory probe inside the bridge process: tracemalloc snapshots on SIGUSR2.

``bench.procs.Bridge(..., trace_memory=True)`` starts ``twistd`` through this module
instead of directly: it starts ``tracemalloc`` (``FRAMES`` frames per allocation) before
the bridge imports anything, and on each SIGUSR2 pickles a snapshot to
``$BENCH_TRACEMALLOC_DIR/snapshot-N.pickle`` (written under a temporary name, then
renamed, so the orchestrator never reads half a file). The bridge's own code knows
nothing of it; a normal run never loads it. tracemalloc sees what Python allocates
(objects, buffers, the expat parsers, whose allocator is Python's); what C libraries
allocate with ``malloc`` (OpenSSL's connection state and record buffers, the kernel's
socket buffers are not even in RSS) is not traced, so the bench reports that part as the
RSS growth that tracemalloc does not explain.
"""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import tracemalloc
from pathlib import Path
from typing import Any

FRAMES = 8
_numbers = itertools.count(1)


def _dump(signum: int, frame: Any) -> None:
    directory = Path(os.environ["BENCH_TRACEMALLOC_DIR"])
    number = next(_numbers)
    snapshot = tracemalloc.take_snapshot()
    partial = directory / f".snapshot-{number}.tmp"
    with partial.open("wb") as out:
        pickle.dump(snapshot, out, protocol=pickle.HIGHEST_PROTOCOL)
    partial.rename(directory / f"snapshot-{number}.pickle")


def install() -> None:
    """Start tracing and answer SIGUSR2 with a snapshot file."""
    tracemalloc.start(FRAMES)
    signal.signal(signal.SIGUSR2, _dump)


if __name__ == "__main__":
    import sys

    install()
    from twisted.scripts.twistd import run

    sys.argv[0] = "twistd"
    run()
