"""Parsing JIDs from untrusted text (RFC 7622) on top of Twisted's stringprep.

Twisted's ``JID`` raises more than ``InvalidFormat`` on hostile input (an empty domain
label such as ``a..b`` raises ``IndexError``) and does not enforce the 1023-byte limit on
each part, which servers do, and it reads "@b" and "a@b/" as valid. Every JID from a
client or a stanza goes through ``parse``.
"""

from __future__ import annotations

from twisted.words.protocols.jabber.jid import JID

MAX_PART_BYTES = 1023


def parse(text: object) -> JID | None:
    """The normalised JID ``text`` stands for, or None when it is not a valid JID."""
    if not isinstance(text, str) or not text:
        return None
    # Twisted reads "@b" and "a@b/" as JIDs without a localpart or resource; they are invalid.
    head, slash, resource = text.partition("/")
    local, at, _ = head.partition("@")
    if (slash and not resource) or (at and not local):
        return None
    try:
        jid = JID(text)
    except Exception:  # Twisted's stringprep raises several types on malformed input
        return None
    for part in (jid.user, jid.host, jid.resource):
        if part is not None and (not part or len(part.encode("utf-8")) > MAX_PART_BYTES):
            return None
    return jid
