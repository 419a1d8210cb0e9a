"""Parsing JIDs from untrusted text (RFC 7622) on top of Twisted's stringprep.

Twisted's ``JID`` raises more than ``InvalidFormat`` on hostile input (an empty domain
label such as ``a..b`` raises ``IndexError``) and does not enforce the 1023-byte limit on
each part, which servers do, and it reads "@b" and "a@b/" as valid. Every JID from a
client or a stanza goes through ``parse`` (or ``bare``, which uses it); nothing else in the
bridge reads untrusted JID text.

A domain's final dot ("a@example.com.") is stripped, as RFC 7622 3.2 requires before a
JID is compared or used for routing: "a@example.com." and "a@example.com" are the same
JID everywhere in the bridge (roster, rooms, archive filters, logins).
"""

from __future__ import annotations

import functools

from twisted.words.protocols.jabber.jid import JID

MAX_PART_BYTES = 1023
# Twisted's stringprep costs about 0.1 ms per JID, and every request parses the same few
# (its user, its recipient, every archived message's sender): results of texts up to this
# long are kept, at most CACHED_JIDS of them, so hostile input cannot grow the cache.
CACHED_TEXT = 512
CACHED_JIDS = 8192


def parse(text: object) -> JID | None:
    """The normalised JID ``text`` stands for, or None when it is not a valid JID.

    Callers share the returned JID objects: treat them as immutable, as Twisted does.
    """
    if not isinstance(text, str) or not text:
        return None
    if len(text) <= CACHED_TEXT:
        return _parse_cached(text)
    return _parse(text)


def _parse(text: str) -> JID | None:
    # Twisted reads "@b" and "a@b/" as JIDs without a localpart or resource; they are invalid.
    head, slash, resource = text.partition("/")
    local, at, _ = head.partition("@")
    if (slash and not resource) or (at and not local):
        return None
    try:
        jid = JID(text)
    except Exception:  # Twisted's stringprep raises several types on malformed input
        return None
    if jid.host.endswith("."):  # Twisted refuses empty labels, so something is left
        jid = JID(tuple=(jid.user, jid.host[:-1], jid.resource))
    for part in (jid.user, jid.host, jid.resource):
        if part is not None and (not part or len(part.encode("utf-8")) > MAX_PART_BYTES):
            return None
    return jid


_parse_cached = functools.lru_cache(maxsize=CACHED_JIDS)(_parse)


def bare(jid_text: str | None) -> str | None:
    """The bare form of a JID attribute, or None when it is absent or not a JID."""
    jid = parse(jid_text)
    return None if jid is None else jid.userhost()
