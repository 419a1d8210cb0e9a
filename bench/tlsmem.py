"""What one client TLS connection costs in memory: ``python3 -m bench.tlsmem [--connections N]``.

The ``memory`` scenario finds about 43 KB a stream that tracemalloc cannot see: OpenSSL's.
This measures that part alone, in one process, with the library the bridge uses (pyOpenSSL
over memory BIOs, as Twisted's TLS does): N client connections each complete a handshake
with a server connection, read 100 bytes and write 2, and only the client ends are kept.
The growth of the resident set, divided by N, is what a client connection holds. Variants:
the bridge's settings (TLS 1.3, OpenSSL's default key exchange, ``SSL_MODE_RELEASE_BUFFERS``
as Twisted sets it), a classic P-256 key exchange, TLS 1.2, and without released buffers.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from bridge.demo.tls import make_certificates


def _rss_kb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4


def _pump(one: SSL.Connection, other: SSL.Connection) -> None:
    moved = True
    while moved:
        moved = False
        for source, sink in ((one, other), (other, one)):
            try:
                data = source.bio_read(65536)
            except SSL.WantReadError:
                continue
            if data:
                sink.bio_write(data)
                moved = True


def _step(connection: SSL.Connection) -> None:
    with contextlib.suppress(SSL.WantReadError):
        connection.do_handshake()


def _read(connection: SSL.Connection) -> None:
    with contextlib.suppress(SSL.WantReadError):
        connection.recv(65536)


def _connect(client_context: SSL.Context, server_context: SSL.Context) -> tuple[SSL.Connection, SSL.Connection]:
    client = SSL.Connection(client_context, None)
    client.set_connect_state()
    server = SSL.Connection(server_context, None)
    server.set_accept_state()
    for _ in range(6):
        _step(client)
        _step(server)
        _pump(client, server)
    server.send(b"x" * 100)
    _pump(client, server)
    _read(client)
    client.send(b"ok")
    _pump(client, server)
    _read(server)
    return client, server


def _variants() -> dict[str, Callable[[SSL.Context], None]]:
    def p256(context: SSL.Context) -> None:
        context.set_tmp_ecdh(ec.SECP256R1())

    return {
        "the bridge's (TLS 1.3, default key exchange)": lambda context: None,
        "TLS 1.3, P-256 key exchange": p256,
        "TLS 1.2": lambda context: context.set_max_proto_version(SSL.TLS1_2_VERSION),
        "TLS 1.3, buffers not released": lambda context: context.clear_mode(SSL.MODE_RELEASE_BUFFERS),
    }


def measure(files_dir: Path, variant: str, connections: int) -> str:
    """One variant's line; run alone in its process, so no variant reuses another's heap."""
    files = make_certificates(files_dir, ["localhost"])
    server_context = SSL.Context(SSL.TLS_METHOD)
    server_context.use_certificate_file(str(files.cert_file))
    server_context.use_privatekey_file(str(files.key_file))
    server_context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    client_context = SSL.Context(SSL.TLS_METHOD)
    client_context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    _variants()[variant](client_context)
    warm = [_connect(client_context, server_context) for _ in range(50)]
    gc.collect()
    before = _rss_kb()
    clients = [_connect(client_context, server_context)[0] for _ in range(connections)]
    gc.collect()
    grown = _rss_kb() - before
    del warm
    return (
        f"{variant:46} {grown / connections:6.1f} KB a client connection "
        f"({clients[0].get_protocol_version_name()}, {clients[0].get_group_name() or '-'})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one variant, in a child process
    args = parser.parse_args(argv)
    if args.variant is not None:
        with tempfile.TemporaryDirectory() as directory:
            print(measure(Path(directory), args.variant, args.connections), flush=True)
        return 0
    print(f"{SSL.SSLeay_version(SSL.SSLEAY_VERSION).decode()}; {args.connections} connections a variant", flush=True)
    for variant in _variants():
        command = [sys.executable, "-m", "bench.tlsmem", "--connections", str(args.connections), "--variant", variant]
        subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
