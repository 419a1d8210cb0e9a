"""The rules of MUC Light rooms (MongooseIM's protocol, sections 5.1 and 5.4), as pure
functions over the stored ``Room``: who may change which affiliation, who becomes owner,
and which notice each occupant gets. The handlers (``bridge.muclight.handlers``) apply
them and store the outcome. A refusal is a ``StanzaError`` with the condition to answer.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.xish import domish

from bridge.muclight.protocol import add_users
from bridge.protocol.namespaces import NS_AFFILIATIONS
from bridge.protocol.xml import to_xml
from bridge.store import MEMBER, OWNER, Room


@dataclass(frozen=True)
class RoomSettings:
    """The service-wide policy from ``[muclight]``."""

    all_can_configure: bool = False
    all_can_invite: bool = False
    max_occupants: int = 100


def new_version(clock: IReactorTime) -> str:
    """A fresh room version: unique per room, and sorting by time of change (``clock``'s)."""
    return f"{int(clock.seconds() * 1000):x}-{secrets.token_hex(4)}"


def new_room_id() -> str:
    return secrets.token_hex(8)


def creation_affiliations(creator: str, requested: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The initial occupants: the creator is owner unless the list names another owner."""
    if any(affiliation == "none" for _, affiliation in requested):
        raise StanzaError("bad-request", text="The occupant list cannot use affiliation 'none'")
    if any(jid == creator for jid, _ in requested):
        raise StanzaError("bad-request", text="The occupant list must not include the creator")
    owners = [jid for jid, affiliation in requested if affiliation == OWNER]
    if len(owners) > 1:
        raise StanzaError("bad-request", text="A room has at most one owner")
    return [(creator, MEMBER if owners else OWNER), *requested]


def check_member_changes(room: Room, sender: str, changes: list[tuple[str, str]], all_can_invite: bool) -> None:
    """A member may leave, and add members when the service lets everyone invite."""
    for jid, affiliation in changes:
        if affiliation == "none" and jid == sender:
            continue
        current = room.affiliation(jid)
        if affiliation == MEMBER and all_can_invite and current != OWNER:
            continue
        raise StanzaError("not-allowed", text="Given user does not have permission to change affiliations")


def apply_changes(room: Room, changes: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(new occupant list, the changes as announced) after ``changes``, as MongooseIM's
    MUC Light decides them (mod_muc_light_utils, ``change_aff_users``).

    Changes that change nothing are dropped. Making someone owner demotes the current
    owner. When the changes leave a room that had an owner without one, the same
    announcement names a successor, taken from, in this order: the members the request
    did not touch (the longest-standing first), the users it adds, and the owner who made
    herself a member, who then simply stays owner (her demotion is not announced).
    """
    if sum(1 for _, affiliation in changes if affiliation == OWNER) > 1:
        raise StanzaError("bad-request", text="A room has at most one owner")
    before = dict(room.affiliations)
    current = dict(before)
    announced: dict[str, str] = {}
    for jid, affiliation in changes:
        if affiliation == "none":
            if jid in current:
                del current[jid]
                announced[jid] = "none"
        elif current.get(jid) != affiliation:
            current[jid] = affiliation
            announced[jid] = affiliation
    new_owner = next((jid for jid, affiliation in announced.items() if affiliation == OWNER), None)
    if new_owner is not None:
        for jid, affiliation in list(current.items()):
            if affiliation == OWNER and jid != new_owner:
                current[jid] = MEMBER
                announced[jid] = MEMBER
    had_owner = OWNER in before.values()
    if had_owner and current and OWNER not in current.values():
        successor, kind = _successor(room, current, announced)
        current[successor] = OWNER
        if kind == "stays":
            del announced[successor]
        else:
            announced[successor] = OWNER
    # Joining order: those who stay keep their place, newcomers follow in request order.
    order = [jid for jid, _ in room.affiliations if jid in current]
    order += [jid for jid in current if jid not in order]
    return [(jid, current[jid]) for jid in order], list(announced.items())


def _successor(room: Room, current: dict[str, str], announced: dict[str, str]) -> tuple[str, str]:
    """Who becomes owner of a room left without one, and how: ("kept" an untouched
    member, a member who "joined" with this change, or the demoted owner who "stays")."""
    before = dict(room.affiliations)
    untouched = [jid for jid, _ in room.affiliations if jid in current and jid not in announced]
    if untouched:
        return untouched[0], "kept"
    joined = [jid for jid in announced if jid not in before and jid in current]
    if joined:
        return joined[0], "joined"
    demoted = [jid for jid, aff in announced.items() if aff == MEMBER and before.get(jid) == OWNER]
    if demoted:
        return demoted[0], "stays"
    # Someone still here was named, but nothing above fits (cannot happen with one owner).
    return next(iter(current)), "kept"


def affiliations_notice(
    items: list[tuple[str, str]], version: str | None = None, prev_version: str | None = None
) -> domish.Element:
    """An ``<x xmlns='urn:xmpp:muclight:0#affiliations'>`` with the given items."""
    notice = domish.Element((NS_AFFILIATIONS, "x"))
    if prev_version is not None:
        notice.addElement("prev-version", content=prev_version)
    if version is not None:
        notice.addElement("version", content=version)
    add_users(notice, items)
    return notice


def notices_for(
    old: list[str], new: list[str], changes: list[tuple[str, str]], version: str, prev_version: str
) -> dict[str, domish.Element]:
    """Each concerned user's notice: newcomers see their own affiliation and the version,
    those removed only their own removal, the others every change with both versions."""
    notices: dict[str, domish.Element] = {}
    own = dict(changes)
    for jid in dict.fromkeys([*old, *new]):
        if jid not in old:
            notices[jid] = affiliations_notice([(jid, own.get(jid, MEMBER))], version)
        elif jid not in new:
            notices[jid] = affiliations_notice([(jid, "none")])
        else:
            notices[jid] = affiliations_notice(changes, version, prev_version)
    return notices


def room_notice(room_jid: str, stanza_id: str, *payloads: domish.Element) -> domish.Element:
    """A groupchat message from the room carrying ``payloads`` (and an empty body, as
    MongooseIM's notices have); the caller sets ``to`` per recipient."""
    message = domish.Element((None, "message"))
    message["from"], message["type"], message["id"] = room_jid, "groupchat", stanza_id
    for payload in payloads:
        message.addChild(payload)
    message.addElement("body")
    return message


def archived_notice(room_jid: str, stanza_id: str, items: list[tuple[str, str]], version: str) -> str:
    """An affiliation change as the room archive keeps it: every change, the new version,
    no body and no ``to``."""
    message = domish.Element((None, "message"))
    message["from"], message["type"], message["id"] = room_jid, "groupchat", stanza_id
    message.addChild(affiliations_notice(items, version))
    return to_xml(message)
