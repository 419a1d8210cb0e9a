"""Every XML namespace the bridge speaks, declared once.

Grouped by the specification that defines it; the MUC Light names are MongooseIM's
(``urn:xmpp:muclight:0``, documented with its mod_muc_light).
"""

from __future__ import annotations

# RFC 6120 / RFC 6121: streams, stanza errors, the roster.
NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_ROSTER = "jabber:iq:roster"

# XEP-0030 service discovery, XEP-0199 ping, XEP-0004 data forms, XEP-0059 result sets.
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_PING = "urn:xmpp:ping"
NS_DATA = "jabber:x:data"
NS_RSM = "http://jabber.org/protocol/rsm"

# Messages: XEP-0313 MAM (and its older version 1), XEP-0297 forwarding, XEP-0203 delay,
# XEP-0280 carbons, XEP-0359 stanza ids, XEP-0333 chat markers, XEP-0085 chat states,
# XEP-0334 processing hints, Smack's properties.
NS_MAM = "urn:xmpp:mam:2"
NS_MAM_1 = "urn:xmpp:mam:1"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_SID = "urn:xmpp:sid:0"
NS_CHAT_MARKERS = "urn:xmpp:chat-markers:0"
NS_CHAT_STATES = "http://jabber.org/protocol/chatstates"
NS_HINTS = "urn:xmpp:hints"
NS_PROPERTIES = "http://www.jivesoftware.com/xmlns/xmpp/properties"

# Attachments: XEP-0363 HTTP File Upload, XEP-0066 out-of-band data (a message's URL).
NS_UPLOAD = "urn:xmpp:http:upload:0"
NS_OOB = "jabber:x:oob"

# XEP-0356 privileged entities (the component's presence permission).
NS_PRIVILEGE = "urn:xmpp:privilege:2"

# MongooseIM's MUC Light.
NS_MUCLIGHT = "urn:xmpp:muclight:0"
NS_CREATE = NS_MUCLIGHT + "#create"
NS_INFO = NS_MUCLIGHT + "#info"
NS_CONFIGURATION = NS_MUCLIGHT + "#configuration"
NS_AFFILIATIONS = NS_MUCLIGHT + "#affiliations"
NS_DESTROY = NS_MUCLIGHT + "#destroy"
NS_BLOCKING = NS_MUCLIGHT + "#blocking"
# The bridge's own application-specific error conditions (RFC 6120 8.3.4) for MUC Light.
NS_BRIDGE_ERRORS = "urn:xmpp-rest-bridge:muclight:0"
