"""What the user's server offers, found by XEP-0030 service discovery at login.

The bridge relies on XEP-0313 MAM (``GET /api/messages``) and XEP-0280 carbons (live
events see what the user sends from other clients). Servers advertise them in different
places: carbons on the server's domain (XEP-0280 section 3), MAM on the user's bare JID
(XEP-0313 section 7.1). ejabberd 23.01 lists MAM on both; Prosody 0.12 only on the bare
JID. So the first session of each domain asks both, once per process, and the bridge logs
one line naming what is missing and what that costs. A failed discovery (timeout,
error) is logged and tried again with the next session of that domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bridge.protocol.namespaces import NS_CARBONS, NS_DISCO_INFO, NS_MAM
from bridge.xmpp.errors import XmppError

# What each feature is, and what the bridge cannot do without it.
CONSEQUENCES = {
    NS_MAM: "XEP-0313 message archive: GET /api/messages answers 501",
    NS_CARBONS: "XEP-0280 carbons: live events miss messages the user sends from other clients",
}

log = Logger()


@dataclass(frozen=True)
class ServerFeatures:
    """The disco#info features of one user domain (server and account together)."""

    domain: str
    features: frozenset[str]

    @property
    def mam(self) -> bool:
        return NS_MAM in self.features

    @property
    def carbons(self) -> bool:
        return NS_CARBONS in self.features

    @property
    def missing(self) -> list[str]:
        return [feature for feature in CONSEQUENCES if feature not in self.features]


def features_of(result: domish.Element) -> set[str]:
    """The ``<feature var>`` values of a disco#info result IQ."""
    for query in result.elements(NS_DISCO_INFO, "query"):
        return {f["var"] for f in query.elements(NS_DISCO_INFO, "feature") if f.getAttribute("var")}
    return set()


async def _disco_info(session: Any, target: JID) -> set[str]:
    """Features of ``target``; an entity that answers with an error offers none."""
    try:
        result = await session.iq("get", domish.Element((NS_DISCO_INFO, "query")), to=target)
    except StanzaError:
        return set()
    return features_of(result)


async def discover(session: Any) -> ServerFeatures:
    """Ask the session's server and the user's own account what they offer."""
    jid: JID = session.jid
    server, account = await defer.gatherResults(
        [
            defer.Deferred.fromCoroutine(_disco_info(session, JID(tuple=(None, jid.host, None)))),
            defer.Deferred.fromCoroutine(_disco_info(session, JID(tuple=(jid.user, jid.host, None)))),
        ],
        consumeErrors=True,
    )
    return ServerFeatures(jid.host, frozenset(server | account))


class CapabilityCheck:
    """Discovers each user domain's features once per process, from its first session."""

    def __init__(self) -> None:
        self._known: dict[str, ServerFeatures] = {}
        self._checking: set[str] = set()

    def features(self, domain: str) -> ServerFeatures | None:
        """What ``domain`` offers, or None while it is not known yet."""
        return self._known.get(domain)

    def session_opened(self, session: Any) -> None:
        """A ``SessionPool.session_opened`` hook: start discovery if this domain needs it."""
        domain = session.jid.host
        if domain in self._known or domain in self._checking:
            return
        self._checking.add(domain)
        defer.Deferred.fromCoroutine(self._check(session, domain))

    async def _check(self, session: Any, domain: str) -> None:
        try:
            found = await discover(session)
        except (XmppError, defer.FirstError) as e:
            reason = e.subFailure.value if isinstance(e, defer.FirstError) else e
            log.warn(
                "Could not discover what the XMPP server of {domain} offers: {reason}", domain=domain, reason=reason
            )
            return
        except Exception:
            log.failure("Discovering what the XMPP server of {domain} offers failed", domain=domain)
            return
        finally:
            self._checking.discard(domain)
        self._known[domain] = found
        if not found.missing:
            log.info("XMPP server of {domain} offers MAM and carbons", domain=domain)
            return
        log.warn(
            "XMPP server of {domain} does not offer {missing}",
            domain=domain,
            missing="; ".join(f"{feature} ({CONSEQUENCES[feature]})" for feature in found.missing),
        )
