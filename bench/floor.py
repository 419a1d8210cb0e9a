"""The framework's floor: the smallest Klein JSON endpoint, in a process of its own.

``POST /api/messages`` parses the JSON body and answers a little JSON, on Twisted's
default Site and reactor (its access log lines go to Twisted's log, which nothing
observes here): what any Klein service pays per request.
Run as ``python3 -m bench.floor PORT``.
"""

from __future__ import annotations

import json
import sys
import uuid

from klein import Klein
from twisted.internet import reactor
from twisted.web.server import Request, Site

app = Klein()


@app.route("/api/messages", methods=["POST"])
def send(request: Request) -> bytes:
    body = json.loads(request.content.read())
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps({"id": uuid.uuid4().hex, "to": body.get("to")}).encode()


def main() -> None:
    site = Site(app.resource())
    site.noisy = False
    reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
