"""Summaries of py-spy's collapsed stacks (``py-spy record -f raw``): where the time goes.

Each line of the input is ``frame;frame;...;frame COUNT``, outermost first, a frame being
``function (file:line)``. The summary lists functions by self time (samples where the
function was the innermost frame) and by inclusive time (samples with it anywhere on the
stack), as shares of the busy samples (py-spy leaves out the reactor idling in epoll).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _function(frame: str) -> str:
    """``function (file)`` without the line number, with site-packages paths shortened."""
    match = FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['function']} ({path})"


# Where a sample's innermost frames run, first match from the leaf outwards: what pays.
COMPONENTS = [
    (
        "access log (twisted.logger to file)",
        ("BridgeSite.log", "twisted/logger/", "logfile.py", "bridge/logs.py", "_tzhelper"),
    ),
    ("TLS (pyOpenSSL, twisted.protocols.tls)", ("OpenSSL/", "twisted/protocols/tls.py")),
    ("XML parse + XPath dispatch (xish)", ("ExpatElementStream", "xish/utility.py", "xish/xpath.py", "onElement")),
    ("XML build + serialise (domish)", ("xish/domish.py",)),
    ("JID stringprep", ("stringprep", "jabber/jid.py", "idna.py")),
    ("HTTP Content-Type parse (email)", ("email/",)),
    ("routing (klein, werkzeug)", ("werkzeug/", "klein/")),
    ("HTTP protocol (twisted.web)", ("twisted/web/",)),
    ("wokkel", ("wokkel/",)),
    ("bridge code", ("bridge/",)),
    ("Deferreds, coroutines", ("twisted/internet/defer.py",)),
    ("reactor, sockets, timers", ("twisted/internet/", "twisted/python/")),
]


def component(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, markers in COMPONENTS:
            if any(marker in frame for marker in markers):
                return name
    return "other"


def summarise_profile(path: Path, top: int = 60) -> str:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    components: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        if "Thread._bootstrap" in stack:
            continue
        total += count
        frames = [_function(frame) for frame in stack.split(";")]
        components[component(frames)] += count
        self_time[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    lines = [f"{total} busy samples", "\n-- by component (innermost frame that matches) --"]
    for name, count in components.most_common():
        lines.append(f"{100 * count / max(total, 1):6.1f}%  {name}")
    for title, counter in (("self", self_time), ("inclusive", inclusive)):
        lines.append(f"\n-- top {top} by {title} time --")
        for name, count in counter.most_common(top):
            lines.append(f"{100 * count / max(total, 1):6.1f}%  {name}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(summarise_profile(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 60))
