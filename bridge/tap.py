"""``twistd bridge``: command-line options and the wiring of the whole service tree.

Nothing happens at import. ``make_service`` builds every part from the parsed config, with
the reactor as a parameter so tests can run the same wiring on a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, ssl
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage

import bridge
from bridge.api.auth import Authenticator
from bridge.api.contacts import ContactsApi
from bridge.api.docs import load_spec
from bridge.api.messages import MessagesApi
from bridge.api.presence import PresenceApi
from bridge.api.push import PushApi
from bridge.api.rooms import RoomsApi
from bridge.api.root import ApiGroups, BridgeApi
from bridge.api.sse import SseApi
from bridge.api.tokens import StreamTokens
from bridge.api.uploads import UploadsApi
from bridge.config import Config, ConfigError, check_startup, load_config
from bridge.events import EventHub, ReplayLimits
from bridge.http.limits import EventStreams, RequestLimits
from bridge.http.readiness import Readiness, store_check
from bridge.http.site import BridgeSite, build_site
from bridge.metrics import BridgeMetrics, MetricsResource, MetricsSite
from bridge.muclight import build_component
from bridge.muclight.component import ComponentConnection
from bridge.muclight.handlers.base import MucLightHandler
from bridge.muclight.leader import Leader, PostgresLock, component_state, lock_key
from bridge.push.appserver import PushPublishHandler
from bridge.push.client import WebhookClient
from bridge.push.registry import PushRegistry
from bridge.push.rooms import RoomNotifier
from bridge.push.worker import PushWorker
from bridge.rlimit import raise_open_files_limit
from bridge.shutdown import DrainingHttpService, StagedService
from bridge.store import Store, StoreService, open_store
from bridge.throttle import LoginThrottle
from bridge.xmpp.archive import ArchiveClient
from bridge.xmpp.capabilities import CapabilityCheck
from bridge.xmpp.muclight_client import MucLightClient
from bridge.xmpp.pool import SessionPool
from bridge.xmpp.presence import PresenceTracker, ServicePresence
from bridge.xmpp.roster import RosterClient
from bridge.xmpp.session import ConnectSettings, Session

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
    # What each user domain's server offers (MAM, carbons), learnt from its first session.
    capabilities: CapabilityCheck | None = None
    # Live events (SSE): the per-user fan-out and the browsers' stream tokens.
    events: EventHub | None = None
    tokens: StreamTokens | None = None
    # Production concerns (bridge.http.limits, bridge.metrics, bridge.http.readiness).
    limits: RequestLimits | None = None
    streams: EventStreams | None = None
    metrics: BridgeMetrics | None = None
    readiness: Readiness | None = None
    metrics_http: StreamServerEndpointService | None = None
    # The MUC Light component (None when muclight.component is false), and with a
    # PostgreSQL store the leader that decides whether this process runs it.
    component: ComponentConnection | None = None
    leader: Leader | None = None
    # Offline push (None unless push.enabled): webhooks and the delivery queue's worker.
    push: PushRegistry | None = None
    push_worker: PushWorker | None = None


@dataclass
class RoomParts:
    """What ``build_rooms`` makes: the store, the component and (PostgreSQL) its leader."""

    store: StoreService
    component: ComponentConnection
    leader: Leader | None = None

    def state(self) -> str:
        """The component as ``/readyz`` reports it: ok, standby or failed."""
        return component_state(self.component.alive, self.leader)


def connect_settings(config: Config) -> ConnectSettings:
    xmpp = config.xmpp
    if xmpp.ca_file:
        with open(xmpp.ca_file, "rb") as pem:
            trust = ssl.Certificate.loadPEM(pem.read())
    else:
        trust = ssl.platformTrust()
    return ConnectSettings(xmpp.host, xmpp.port, xmpp.tls, trust, xmpp.timeout)


def attach_handlers(session: Session) -> None:
    """A ``session_opened`` hook: the protocol handlers the REST calls use on every session.

    Attached before any presence goes out, so the roster handler sees the subscription
    requests the server re-sends then (``bridge.xmpp.roster``) and the presence tracker
    every contact presence the server sends a newly available session
    (``bridge.xmpp.presence``), and directed presence a service bounces is sent again
    (``ServicePresence``). Live events are attached by the event hub when the session's
    first stream opens (``bridge.events``).
    """
    archive = session.attach(ArchiveClient())
    session.attach(RosterClient())
    session.attach(MucLightClient(archive))
    session.attach(PresenceTracker())
    session.attach(ServicePresence())


def _endpoint(reactor: Any, description: str, key: str) -> Any:
    try:
        return serverFromString(reactor, description)
    except (ValueError, TypeError, KeyError, IndexError, OSError) as e:
        raise ConfigError(f"{key}: not a valid endpoint description ({e})") from None


# Endpoint types whose Twisted parser takes a listen backlog.
_BACKLOG_TYPES = {"tcp", "tcp6", "ssl", "unix"}


def with_backlog(description: str, backlog: int) -> str:
    """``description`` with ``backlog=`` added, unless it sets one or its type takes none.

    Twisted listens with a backlog of 50: a burst of connections (200 users logging in at
    once) overflows it and the kernel drops or delays the rest.
    """
    kind = description.split(":", 1)[0].strip().lower()
    options = description.split(":")[1:]
    if kind not in _BACKLOG_TYPES or any(option.strip().startswith("backlog=") for option in options):
        return description
    return f"{description}:backlog={backlog}"


def metrics_service(reactor: Any, config: Config, metrics: BridgeMetrics) -> StreamServerEndpointService | None:
    """``/metrics`` on ``metrics.endpoint``, or None when that is empty."""
    if not config.metrics.endpoint:
        return None
    site = MetricsSite(MetricsResource(metrics), timeout=config.http.idle_timeout, reactor=reactor)
    listener = StreamServerEndpointService(_endpoint(reactor, config.metrics.endpoint, "metrics.endpoint"), site)
    listener._raiseSynchronously = True
    return listener


@dataclass
class HttpParts:
    """What ``build_http`` makes: the site and the request-level limits it consults."""

    site: BridgeSite
    limits: RequestLimits
    streams: EventStreams


def build_http(
    config: Config,
    reactor: Any,
    pool: SessionPool,
    events: EventHub,
    tokens: StreamTokens,
    readiness: Readiness,
    metrics: BridgeMetrics | None = None,
    push: PushRegistry | None = None,
) -> HttpParts:
    """The REST site over ``pool``: authentication, the resource groups and the HTTP edge.

    Separate from ``build`` so that the REST tier of the tests serves this very wiring in
    front of fake sessions.
    """
    throttle = LoginThrottle(reactor, config.throttle)
    auth = Authenticator(pool, config.xmpp.domains, config.http.realm, throttle)
    streams = EventStreams(config.limits.max_streams, config.limits.max_streams_per_user)
    groups = ApiGroups(
        messages=MessagesApi(auth),
        contacts=ContactsApi(auth),
        sse=SseApi(auth, events, tokens, reactor, config.sse, config.http.realm, streams),
        rooms=RoomsApi(auth, config.muclight.service),
        presence=PresenceApi(auth, config.muclight.service, config.sse.priority),
        uploads=UploadsApi(auth, reactor),
        push=PushApi(auth, push),
    )
    limits = RequestLimits(reactor, config.limits, pool, throttle)
    site = build_site(
        BridgeApi(groups, readiness).resource(),
        config.http.cors_origins,
        config.http.max_body,
        config.http.idle_timeout,
        reactor,
        limits=limits,
        metrics=metrics,
    )
    site.header_timeout = config.http.header_timeout
    site.access_log = config.http.access_log
    site.body_timeout = config.http.body_timeout
    return HttpParts(site, limits, streams)


def build_rooms(config: Config, reactor: Any, root: service.MultiService) -> RoomParts:
    """The MUC Light component and its store, started under ``root``.

    With a PostgreSQL store several processes may share the rooms (DESIGN.md, "Several
    processes"): the component is then run by a ``Leader`` only while this process holds
    the cluster's lock. With SQLite (one process) it runs from the start.
    """
    store = StoreService(open_store(config.storage.url, reactor))
    store.setServiceParent(root)
    component = build_component(config.muclight, store.store, reactor)
    if not config.storage.url.startswith(("postgresql://", "postgres://")):
        component.setServiceParent(root)
        return RoomParts(store, component)
    lock = PostgresLock(reactor, config.storage.url, lock_key(config.muclight.service), config.cluster.node)
    leader = Leader(reactor, lock, component, config.cluster.node)
    leader.setServiceParent(root)
    return RoomParts(store, component, leader)


@dataclass
class PushParts:
    registry: PushRegistry
    worker: PushWorker


def build_push(
    config: Config,
    reactor: Any,
    root: service.MultiService,
    store: Store,
    component: ComponentConnection,
    metrics: BridgeMetrics,
) -> PushParts:
    """Offline push: the registry the REST side uses, the publish handler on the component
    (the app server's XMPP side) and the worker that drains the queue, started under ``root``."""
    service_jid = config.push.service_for(config.muclight)
    registry = PushRegistry(store, config.push, service_jid)
    client = WebhookClient(reactor, config.push)
    worker = PushWorker(store, client, reactor, on_gone=registry.gone, count=metrics.push_delivery)
    worker.setServiceParent(root)
    # The MUC Light handlers' shared state: room messages tell offline occupants' webhooks.
    state = next(handler.state for handler in component if isinstance(handler, MucLightHandler))
    state.offline_hooks.append(RoomNotifier(store, worker.wake, state.track))
    PushPublishHandler(state, worker.wake).setHandlerParent(component)

    def oldest_age() -> float:
        return 0.0 if worker.oldest_ms is None else max(0.0, reactor.seconds() - worker.oldest_ms / 1000)

    metrics.watch_push_queue(lambda: float(worker.depth), oldest_age)
    return PushParts(registry, worker)


def build_readiness(config: Config, reactor: Any, pool: SessionPool, rooms: RoomParts | None) -> Readiness:
    """``/readyz``: the XMPP server, and with the component its store (required) and link
    (reported: ok, standby on a process that does not hold the component lock, failed)."""
    readiness = Readiness(reactor, config.xmpp.host, config.xmpp.port, pool, config.xmpp.timeout)
    if rooms is not None:
        readiness.add_check("store", store_check(rooms.store.store))
        # Without the component only rooms fail: reported by /readyz, not a reason to take
        # the bridge out of a load balancer.
        readiness.add_check("component", lambda: defer.succeed(rooms.state()), required=False)
    return readiness


def build(config: Config, reactor: Any) -> tuple[service.MultiService, BridgeParts]:
    """The whole service tree for ``config``, and its parts."""
    # Stops its children one by one, the last added first: the HTTP listener drains before
    # the event streams end, and they end before the sessions close (bridge.shutdown).
    root = StagedService()
    metrics = BridgeMetrics(bridge.__version__, load_spec()["paths"])
    metrics_http = metrics_service(reactor, config, metrics)
    if metrics_http is not None:
        metrics_http.setServiceParent(root)
    pool = SessionPool(reactor, connect_settings(config), config.xmpp.idle_timeout)
    pool.setServiceParent(root)
    # The MUC Light component and its store (stopped after the HTTP side, store last).
    rooms = build_rooms(config, reactor, root) if config.muclight.component else None
    component = rooms.component if rooms is not None else None
    if rooms is not None:
        metrics.watch_component(lambda: float(rooms.component.alive))
        states = {"ok": "active", "standby": "standby", "failed": "failed"}
        metrics.watch_component_state(config.cluster.node, lambda: states[rooms.state()])
    metrics.watch_sessions(lambda: len(pool))
    capabilities = CapabilityCheck()
    pool.session_opened.append(capabilities.session_opened)
    pool.session_opened.append(attach_handlers)
    push = None
    if config.push.enabled and rooms is not None:
        push = build_push(config, reactor, root, rooms.store.store, rooms.component, metrics)
    if push is not None:
        pool.session_opened.append(push.registry.session_opened)
    # Added after the pool, so stopped before it: streams end with "shutdown", not "session_ended".
    sse = config.sse
    replay = ReplayLimits(sse.replay_events, sse.replay_seconds, sse.replay_bytes)
    events = EventHub(reactor, pool, config.muclight.service, replay, sse.priority, sse.timestamp_unit)
    events.setServiceParent(root)
    # Stream tokens are signed with a key kept in the store, when there is one, so that every
    # process sharing it accepts them; without a store the key is this process's own.
    token_store = rooms.store.store if rooms is not None else None
    tokens = StreamTokens(reactor, pool, config.sse.token_lifetime, token_store)
    tokens.setServiceParent(root)
    readiness = build_readiness(config, reactor, pool, rooms)
    edge = build_http(config, reactor, pool, events, tokens, readiness, metrics, push.registry if push else None)
    metrics.watch_streams(lambda: edge.streams.open_streams)
    readiness.site = edge.site
    endpoint = _endpoint(reactor, with_backlog(config.http.endpoint, config.http.backlog), "http.endpoint")
    http = DrainingHttpService(endpoint, edge.site, reactor, config.http.shutdown_timeout)
    # Fail start-up (and twistd) at once when the port cannot be bound.
    http._raiseSynchronously = True
    http.setServiceParent(root)
    return root, BridgeParts(
        pool=pool,
        site=edge.site,
        http=http,
        capabilities=capabilities,
        events=events,
        tokens=tokens,
        limits=edge.limits,
        streams=edge.streams,
        metrics=metrics,
        readiness=readiness,
        metrics_http=metrics_http,
        component=component,
        leader=rooms.leader if rooms is not None else None,
        push=push.registry if push else None,
        push_worker=push.worker if push else None,
    )


def makeService(options: Options, reactor: Any = None) -> service.MultiService:
    if reactor is None:
        from twisted.internet import reactor
    raise_open_files_limit()
    try:
        root, _ = build(options.bridge_config, reactor)
        check_startup(options.bridge_config)
    except ConfigError as e:
        raise SystemExit(f"bridge: {e}") from None
    return root
