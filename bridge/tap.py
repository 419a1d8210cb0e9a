"""``twistd bridge``: command-line options and the wiring of the whole service tree.

Nothing happens at import. ``make_service`` builds every part from the parsed config, with
the reactor as a parameter so tests can run the same wiring on a fake clock.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Any

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import ssl
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage

from bridge.api.auth import Authenticator
from bridge.api.messages import MessagesApi
from bridge.api.site import ApiGroups, BridgeSite, build_site
from bridge.config import Config, ConfigError, load_config
from bridge.throttle import FailureThrottle
from bridge.xmpp.pool import SessionPool
from bridge.xmpp.session import ConnectSettings

log = Logger()

DEFAULT_CONFIG = "/etc/bridge/bridge.toml"


class Options(usage.Options):
    optParameters = [["config", "c", DEFAULT_CONFIG, "Path to the TOML configuration file."]]

    def postOptions(self) -> None:
        # One line naming the key and the problem, and a non-zero exit, on a bad config.
        try:
            self.bridge_config = load_config(self["config"])
        except ConfigError as e:
            raise SystemExit(f"bridge: {e}") from None


@dataclass
class BridgeParts:
    """The pieces tests and other services reach into."""

    pool: SessionPool
    site: BridgeSite
    http: StreamServerEndpointService


def raise_open_files_limit() -> None:
    """Every SSE stream holds a socket and an XMPP session: allow as many files as we may."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            log.warn("Could not raise the open-files limit from {soft}", soft=soft)


def connect_settings(config: Config) -> ConnectSettings:
    xmpp = config.xmpp
    if xmpp.ca_file:
        with open(xmpp.ca_file, "rb") as pem:
            trust = ssl.Certificate.loadPEM(pem.read())
    else:
        trust = ssl.platformTrust()
    return ConnectSettings(xmpp.host, xmpp.port, xmpp.tls, trust, xmpp.timeout)


def build(config: Config, reactor: Any) -> tuple[service.MultiService, BridgeParts]:
    """The whole service tree for ``config``, and its parts."""
    root = service.MultiService()
    pool = SessionPool(reactor, connect_settings(config), config.xmpp.idle_timeout)
    pool.setServiceParent(root)
    throttle = config.throttle
    auth = Authenticator(
        pool,
        config.xmpp.domains,
        config.http.realm,
        FailureThrottle(reactor, throttle.failures_per_jid, throttle.window),
        FailureThrottle(reactor, throttle.failures_per_address, throttle.window),
    )
    groups = ApiGroups(messages=MessagesApi(auth))
    site = build_site(groups, config.http.cors_origins, config.http.max_body, config.http.idle_timeout, reactor)
    try:
        endpoint = serverFromString(reactor, config.http.endpoint)
    except (ValueError, TypeError, KeyError, IndexError, OSError) as e:
        raise ConfigError(f"http.endpoint: not a valid endpoint description ({e})") from None
    http = StreamServerEndpointService(endpoint, site)
    # Fail start-up (and twistd) at once when the port cannot be bound.
    http._raiseSynchronously = True
    http.setServiceParent(root)
    return root, BridgeParts(pool=pool, site=site, http=http)


def makeService(options: Options, reactor: Any = None) -> service.MultiService:
    if reactor is None:
        from twisted.internet import reactor
    raise_open_files_limit()
    try:
        root, _ = build(options.bridge_config, reactor)
    except ConfigError as e:
        raise SystemExit(f"bridge: {e}") from None
    return root
