"""The bridge's TOML configuration, parsed once into frozen objects, one per section.

Every validation error names the key path (``muclight.port: expected an integer``) so an
admin can fix the file from the one line the daemon prints. Secrets may come from the
environment or a file; they are never part of an error message or a log line.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from twisted.internet import ssl


class ConfigError(Exception):
    """A configuration problem, worded as ``key.path: what is wrong``."""


@dataclass(frozen=True)
class HttpConfig:
    endpoint: str = "tcp:8089:interface=127.0.0.1"
    cors_origins: list[str] = field(default_factory=lambda: ["*"])
    # Seconds a connection may stay idle (Twisted's default is 12 h).
    idle_timeout: float = 60.0
    # Largest request body accepted, in bytes; larger ones get 413.
    max_body: int = 65536
    # Realm sent in WWW-Authenticate.
    realm: str = "xmpp-rest-bridge"
    # Seconds a client has to send a request's headers, and then its body; the idle timeout
    # restarts with every byte, so only these deadlines stop a slow-loris client.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    # Seconds in-flight requests get to finish on shutdown (SIGTERM).
    shutdown_timeout: float = 10.0
    # Pending connections the kernel queues for the listener (Twisted's default is 50);
    # added to the endpoint unless it sets backlog= itself.
    backlog: int = 1024
    # One log line per request (method, path, status, duration, user). Behind a proxy that
    # logs requests itself it can go (9-20 % of the CPU of a message sent, measured before
    # the line's formatting was halved; README, Logs).
    access_log: bool = True

    def check(self) -> None:
        for key in ("idle_timeout", "max_body", "backlog"):
            _positive(f"http.{key}", getattr(self, key))
        for key in ("header_timeout", "body_timeout", "shutdown_timeout"):
            _positive(f"http.{key}", getattr(self, key))
            if not math.isfinite(getattr(self, key)):
                raise ConfigError(f"http.{key}: expected a finite number, 0 or more")


@dataclass(frozen=True)
class XmppConfig:
    host: str = "127.0.0.1"
    port: int = 5222
    domains: list[str] = field(default_factory=lambda: ["localhost"])
    tls: str = "required"
    ca_file: str = ""
    # Seconds a user session stays open after its last request.
    idle_timeout: float = 300.0
    # Seconds allowed for connecting and logging in, and for each round trip.
    timeout: float = 5.0

    def check(self) -> None:
        if self.tls not in ("required", "optional", "disabled"):
            raise ConfigError('xmpp.tls: expected "required", "optional" or "disabled"')
        if not self.domains:
            raise ConfigError("xmpp.domains: at least one domain is needed")
        _port("xmpp.port", self.port)
        _positive("xmpp.idle_timeout", self.idle_timeout)
        _positive("xmpp.timeout", self.timeout)
        if self.ca_file:
            try:
                ssl.Certificate.loadPEM(Path(self.ca_file).read_bytes())
            except OSError as e:
                raise ConfigError(f"xmpp.ca_file: cannot read {self.ca_file}: {e.strerror}") from None
            except Exception:
                raise ConfigError(f"xmpp.ca_file: {self.ca_file} is not a PEM certificate") from None


@dataclass(frozen=True)
class MucLightConfig:
    service: str = "muclight.localhost"
    component: bool = True
    host: str = "127.0.0.1"
    port: int = 5347
    secret: str = field(default="", repr=False)
    # A file holding the secret (e.g. a systemd credential); the environment wins over both.
    secret_file: str = ""
    all_can_configure: bool = False
    all_can_invite: bool = False
    max_occupants: int = 100

    def check(self) -> None:
        _port("muclight.port", self.port)
        _positive("muclight.max_occupants", self.max_occupants)


@dataclass(frozen=True)
class StorageConfig:
    url: str = "sqlite:///var/lib/bridge/bridge.sqlite3"

    def check(self) -> None:
        if not self.url.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ConfigError("storage.url: expected sqlite:///path or postgresql://...")


@dataclass(frozen=True)
class ThrottleConfig:
    # Failed logins allowed per JID, and per client address, within `window` seconds.
    failures_per_jid: int = 5
    failures_per_address: int = 50
    window: float = 60.0
    # Failed logins of one JID from one address before that pair waits `window` seconds,
    # doubling with each further failure; below failures_per_jid so that one address
    # alone cannot throttle a JID for its other clients.
    failures_per_pair: int = 3

    def check(self) -> None:
        for key in ("failures_per_jid", "failures_per_address", "failures_per_pair", "window"):
            _positive(f"throttle.{key}", getattr(self, key))


@dataclass(frozen=True)
class SseConfig:
    # Seconds between keep-alive comments on an otherwise idle event stream.
    keepalive: float = 15.0
    # Bytes an event stream may queue for a client that stops reading before it is cut off.
    max_queued_bytes: int = 1048576
    # Recent events kept per user for Last-Event-ID replay: at most this many (0: no
    # replay), no older than replay_seconds, no more than replay_bytes of JSON in all.
    replay_events: int = 100
    replay_seconds: float = 300.0
    replay_bytes: int = 1048576
    # Seconds a stream token from POST /api/sse/token stays valid.
    token_lifetime: int = 60
    # Presence priority of a session that serves event streams (RFC 6121: -128..127).
    priority: int = 0
    # Unit of event timestamps: "ms" (Unix milliseconds, as everywhere in the API) or "us"
    # (microseconds, as MongooseIM's SSE stamped them; archive entries stay in ms).
    timestamp_unit: str = "ms"

    def check(self) -> None:
        for key in ("keepalive", "max_queued_bytes", "replay_seconds", "replay_bytes", "token_lifetime"):
            _positive(f"sse.{key}", getattr(self, key))
        _finite("sse.keepalive", self.keepalive)
        _finite("sse.replay_seconds", self.replay_seconds)
        if self.replay_events < 0:
            raise ConfigError("sse.replay_events: must not be negative")
        if self.timestamp_unit not in ("ms", "us"):
            raise ConfigError('sse.timestamp_unit: expected "ms" or "us"')
        if not -128 <= self.priority <= 127:
            raise ConfigError("sse.priority: expected a presence priority (-128..127)")


@dataclass(frozen=True)
class LimitsConfig:
    # Requests per second (sustained) and burst per authenticated user, and per client
    # address; past them: 429 with Retry-After. A rate of 0 turns that limit off.
    user_rate: float = 20.0
    user_burst: int = 100
    address_rate: float = 2000.0
    address_burst: int = 10000
    # Live XMPP sessions (users logged in) and open event streams; past them: 503. 0: no cap.
    max_sessions: int = 10000
    max_streams: int = 10000
    # Open event streams of one user; past it: 429. 0: no cap.
    max_streams_per_user: int = 10

    def check(self) -> None:
        _positive("limits.user_burst", self.user_burst)
        _positive("limits.address_burst", self.address_burst)
        for key in ("user_rate", "address_rate", "max_sessions", "max_streams", "max_streams_per_user"):
            value = getattr(self, key)
            if value < 0 or not math.isfinite(value):
                raise ConfigError(f"limits.{key}: expected a finite number, 0 or more")


@dataclass(frozen=True)
class MetricsConfig:
    # Where /metrics (Prometheus text format) listens: an endpoint string; "" turns it off.
    endpoint: str = ""

    def check(self) -> None:
        """Nothing to check beyond types: the endpoint is parsed when the daemon starts."""


# A node name: what log lines, metrics and the leader lock's holder name carry.
_NODE_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
MAX_NODE_LENGTH = 63


@dataclass(frozen=True)
class ClusterConfig:
    # This process's name, unique among the bridges that share one PostgreSQL storage.url
    # (DESIGN.md, "Several processes"); "" = the only process.
    node: str = ""

    def check(self) -> None:
        if len(self.node) > MAX_NODE_LENGTH or not set(self.node) <= _NODE_CHARACTERS:
            raise ConfigError(f"cluster.node: expected at most {MAX_NODE_LENGTH} characters of [A-Za-z0-9._-]")


@dataclass(frozen=True)
class PushConfig:
    # Offline push (XEP-0357): the bridge is its users' app server and POSTs to webhooks.
    enabled: bool = False
    # The push service JID the user's server publishes to; "" = the MUC Light component's
    # domain (the only value that works: the component is the service that receives them).
    service: str = ""
    # Webhook hosts users may register, exact names (no wildcards); [] = none.
    allowed_hosts: list[str] = field(default_factory=list)
    # Concurrent deliveries to one webhook host, and seconds allowed to connect and to answer.
    per_host: int = 4
    connect_timeout: float = 5.0
    response_timeout: float = 10.0
    # Webhooks one user may register (Prosody keeps at most push_max_devices = 5 per user).
    max_webhooks: int = 5

    def check(self) -> None:
        for key in ("per_host", "connect_timeout", "response_timeout", "max_webhooks"):
            _positive(f"push.{key}", getattr(self, key))
            _finite(f"push.{key}", getattr(self, key))
        for i, host in enumerate(self.allowed_hosts):
            if not host or host != host.strip().lower() or any(c in host for c in "/:@?#*[] "):
                raise ConfigError(f"push.allowed_hosts[{i}]: expected a lower-case host name, no wildcards or ports")

    def service_for(self, muclight: MucLightConfig) -> str:
        """The push service JID: ``service``, or the component's domain when that is empty."""
        return self.service or muclight.service


@dataclass(frozen=True)
class Config:
    http: HttpConfig = field(default_factory=HttpConfig)
    xmpp: XmppConfig = field(default_factory=XmppConfig)
    muclight: MucLightConfig = field(default_factory=MucLightConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)
    sse: SseConfig = field(default_factory=SseConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    push: PushConfig = field(default_factory=PushConfig)

    def check(self) -> None:
        """Each section checks its own values; the first problem is the one reported."""
        for section in (self.http, self.xmpp, self.muclight, self.storage, self.throttle, self.sse, self.limits):
            section.check()
        self.cluster.check()
        self.push.check()
        self._check_push()

    def _check_push(self) -> None:
        """Push needs the built-in component: it is the app server the user's server publishes to."""
        if not self.push.enabled:
            return
        if not self.muclight.component:
            raise ConfigError(
                "push.enabled: offline push needs the built-in component (muclight.component = true), "
                "which receives the server's notifications"
            )
        if self.push.service and self.push.service != self.muclight.service:
            raise ConfigError(
                f"push.service: must be empty or the component's domain ({self.muclight.service}); "
                "another push service JID would need a second component"
            )


_TYPE_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _check_value(path: str, value: Any, expected: Any) -> Any:
    if get_origin(expected) is list:
        (item_type,) = get_args(expected)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list of {_TYPE_WORDS[item_type][2:]}s")
        return [_check_value(f"{path}[{i}]", item, item_type) for i, item in enumerate(value)]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and expected is not bool:
        raise ConfigError(f"{path}: expected {_TYPE_WORDS[expected]}")
    if not isinstance(value, expected):
        raise ConfigError(f"{path}: expected {_TYPE_WORDS[expected]}")
    return value


def _section(name: str, cls: type, table: Any) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{name}: expected a table")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown key")
        values[key] = _check_value(f"{name}.{key}", value, hints[key])
    return cls(**values)


def _positive(path: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{path}: must be greater than 0")


def _finite(path: str, value: float) -> None:
    if not math.isfinite(value):
        raise ConfigError(f"{path}: expected a finite number")


def _port(path: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ConfigError(f"{path}: expected a port number (1-65535)")


def _with_secret(config: Config, environ: dict[str, str]) -> Config:
    """Take the component secret from the environment, else from secret_file, else the file."""
    muclight = config.muclight
    secret = environ.get("BRIDGE_MUCLIGHT_SECRET")
    if secret is None and muclight.secret_file:
        try:
            secret = Path(muclight.secret_file).read_text().strip()
        except OSError as e:
            raise ConfigError(f"muclight.secret_file: cannot read {muclight.secret_file}: {e.strerror}") from None
    if secret is None:
        return config
    return replace(config, muclight=replace(muclight, secret=secret))


def parse_config(text: str, environ: dict[str, str] | None = None) -> Config:
    """Parse and validate the TOML text of a configuration file."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}") from None
    hints = get_type_hints(Config)
    values = {}
    for name, table in document.items():
        if name not in hints:
            raise ConfigError(f"{name}: unknown section")
        values[name] = _section(name, hints[name], table)
    config = _with_secret(Config(**values), dict(os.environ) if environ is None else environ)
    config.check()
    return config


def load_config(path: str, environ: dict[str, str] | None = None) -> Config:
    """Read and parse the configuration file at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8") from None
    return parse_config(text, environ)


def check_startup(config: Config) -> None:
    """What the daemon needs to start beyond a valid file: the component's secret.

    Kept apart from ``parse_config`` so that a config without a secret can still be parsed
    and inspected (tests, ``--help``); starting the component with no secret cannot work.
    """
    if config.muclight.component and not config.muclight.secret:
        raise ConfigError(
            "muclight.secret: the component needs the secret of the server's component listener "
            "(or BRIDGE_MUCLIGHT_SECRET, or muclight.secret_file); or set muclight.component = false"
        )
