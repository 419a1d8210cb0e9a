"""XEP-0363 HTTP File Upload for a user session: find the server's upload service, get a slot.

The service is found by XEP-0030 discovery (section 3): the user's domain lists its items,
and the item whose disco#info carries ``urn:xmpp:http:upload:0`` is the service (Prosody's
``http_file_share`` component, ejabberd's ``mod_http_upload`` at ``upload.<domain>``).
What a domain offers is cached once per process like its MAM and carbons
(``bridge.xmpp.capabilities``): a found service for good, "none" for ``NEGATIVE_TTL``
seconds, so a server that gains upload is seen without a restart. A discovery that timed
out on an item is not cached: the next request asks again.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID

from bridge.protocol.upload import (
    Slot,
    UploadService,
    build_request,
    disco_info_query,
    disco_items_query,
    file_too_large,
    item_jids,
    parse_slot,
    upload_service,
)
from bridge.xmpp.errors import FeatureUnavailable, ServerTimeout, XmppError

NO_UPLOAD = "the XMPP server has no file upload (XEP-0363)"
# How long "this domain has no upload service" is believed (seconds).
NEGATIVE_TTL = 300.0
# Items of the user's domain asked at most (a domain lists its components; a few at most).
MAX_ITEMS = 32


class FileTooLarge(XmppError):
    """The upload service refused the size (XEP-0363 ``<file-too-large/>``), or it is over its limit."""


class InvalidSlot(XmppError):
    """The upload service answered a slot request with nothing a client could use."""


async def _service_of(session: Any, jid: JID) -> UploadService | ServerTimeout | None:
    """``jid`` as an upload service, or None; an item that answers with an error is none,
    one that does not answer in time is the ``ServerTimeout`` (returned, not raised, so the
    other items still count)."""
    try:
        result = await session.iq("get", disco_info_query(), to=jid)
    except StanzaError:
        return None
    except ServerTimeout as e:
        return e
    return upload_service(jid, result)


async def discover(session: Any) -> UploadService | None:
    """The first upload service among the items of the session's domain, or None.

    Raises ``ServerTimeout`` when none was found and an item did not answer: the answer
    is then not known.
    """
    domain = JID(tuple=(None, session.jid.host, None))
    try:
        items = item_jids(await session.iq("get", disco_items_query(), to=domain))[:MAX_ITEMS]
    except StanzaError:
        return None
    found = await defer.gatherResults(
        [defer.Deferred.fromCoroutine(_service_of(session, jid)) for jid in items], consumeErrors=True
    )
    services = [each for each in found if isinstance(each, UploadService)]
    if services:
        return services[0]
    for each in found:
        if isinstance(each, ServerTimeout):
            raise each
    return None


class UploadServices:
    """Each user domain's upload service, discovered by the first request that needs it."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._found: dict[str, UploadService] = {}
        self._none_until: dict[str, float] = {}

    async def service(self, session: Any) -> UploadService:
        """The upload service of the session's domain; ``FeatureUnavailable`` when it has none."""
        domain = session.jid.host
        if domain in self._found:
            return self._found[domain]
        if self._none_until.get(domain, 0.0) > self._clock.seconds():
            raise FeatureUnavailable(NO_UPLOAD)
        found = await discover(session)
        if found is None:
            self._none_until[domain] = self._clock.seconds() + NEGATIVE_TTL
            raise FeatureUnavailable(NO_UPLOAD)
        self._none_until.pop(domain, None)
        self._found[domain] = found
        return found


async def request_slot(
    session: Any, service: UploadService, filename: str, size: int, content_type: str | None
) -> Slot:
    """A slot for one file from ``service`` (XEP-0363 section 5).

    ``FileTooLarge`` for the service's ``<file-too-large/>``; other refusals are the
    service's ``StanzaError``; ``InvalidSlot`` when its answer holds no usable slot.
    """
    if service.max_size is not None and size > service.max_size:
        raise FileTooLarge("File too large")
    try:
        result = await session.iq("get", build_request(filename, size, content_type), to=service.jid)
    except StanzaError as e:
        if file_too_large(e.appCondition):
            raise FileTooLarge("File too large") from None
        raise
    slot = parse_slot(result)
    if slot is None:
        raise InvalidSlot("the upload service answered without a usable slot")
    return slot
