"""rooms: one message to a room of M members, until every member's stream has it."""

from __future__ import annotations

import time

from bench.measure import call, has_route, now_us, percentile
from bench.model import Row, Run
from bench.procs import BenchError, Bridge, Worker


def scenario_rooms(run: Run) -> None:
    """One message to a room of M members, until every member's stream has it."""
    sizes = run.sizes
    server = run.prosody("off")
    bridge = Bridge(server, run.workdir, "bridge-rooms")
    bridge.start()
    readers: Worker | None = None
    try:
        missing = [path for path in ("/api/rooms", "/api/sse") if not has_route(bridge, path)]
        if missing:
            run.skipped.append(f"rooms: the bridge has no {' or '.join(missing)}")
            return
        members = run.accounts(server, "member", sizes.room_members)
        owner = members[0]
        status, created = call(bridge.url, "POST", "/api/rooms", owner, {"name": "bench", "subject": "bench"})
        if status != 201:
            raise BenchError(f"POST /api/rooms answered {status} {created}")
        room = created["id"]
        for member in members[1:]:
            status, answer = call(bridge.url, "POST", f"/api/rooms/{room}/users", owner, {"user": member[0]})
            if status != 204:
                raise BenchError(f"POST /api/rooms/{room}/users answered {status} {answer}")
        readers = run.worker(server, "room-readers", [])
        opened = readers.command("streams", port=bridge.port, accounts=members, timeout=600)
        if opened["failed"]:
            raise BenchError(f"{opened['failed']} room streams failed: {opened['first_failure']}")
        time.sleep(1)
        fan_out: list[float] = []
        incomplete = 0
        for _ in range(sizes.room_messages):
            stamp = now_us()
            status, answer = call(
                bridge.url, "POST", f"/api/rooms/{room}/messages", owner, {"body": f"bench:{stamp}:room"}
            )
            if status != 200:
                raise BenchError(f"POST /api/rooms/{room}/messages answered {status} {answer}")
            deadline = time.monotonic() + 10
            while True:
                groups = readers.command("report", since=stamp, until=stamp + 1, group=True)["groups"]
                if groups and groups[0][0] >= len(members):
                    fan_out.append(groups[0][1])
                    break
                if time.monotonic() > deadline:
                    incomplete += 1
                    break
                time.sleep(0.01)
    finally:
        if readers is not None:
            readers.close()
        bridge.stop()
    fan_out.sort()
    run.add(
        Row(
            "rooms",
            f"room of {len(members)}, message to all streams",
            f"{sizes.room_messages} messages",
            None,
            percentile(fan_out, 0.5) if fan_out else None,
            fan_out[-1] if fan_out else None,
            f"time until the last member's stream has it (p99 column: max); incomplete {incomplete}",
        )
    )
