-- Register xmpp-rest-bridge's MUC Light component with Prosody 0.12 (Debian: prosody,
-- prosody-modules). Paste into /etc/prosody/prosody.cfg.lua, or drop this file into
-- /etc/prosody/conf.d/ and adjust the names. The secret must match muclight.secret
-- (or BRIDGE_MUCLIGHT_SECRET) in the bridge's config.

-- Modules the bridge relies on for user sessions (global modules_enabled):
--   "roster", "saslauth", "tls", "disco", "ping"  (Prosody's defaults)
--   "carbons"   live events see messages sent to the user's other devices (XEP-0280)
--   "mam"       GET /api/messages reads the user's archive (XEP-0313); without it that
--               call answers 501
--   "privilege" (prosody-modules) lets the component see every user's presence, so room
--               messages reach all available clients of each occupant (XEP-0356)
-- Prosody's default archive store is slow (about 60 messages/s); SQL is much faster:
--   storage = { archive = "sql" }  sql = { driver = "SQLite3", database = "prosody.sqlite" }

component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }

-- Room delivery. Prosody (like every RFC 6121 server) refuses groupchat messages to a bare
-- JID, so the component sends room messages to each occupant's available full JIDs and
-- learns them from presence, in one of two set-ups:
--   1. With XEP-0356 (recommended): "privilege" in the global modules_enabled, the
--      privileged_entities line below, and modules_enabled = { "privilege" } inside the
--      Component section. The component then sees every user's presence.
--   2. Without it: drop those three lines. Only clients that send directed presence to the
--      service (<presence to="muclight.localhost"/>) get room messages live; the bridge's
--      own sessions do this when they go available (live events). Everyone else, and
--      everyone offline, reads the room archive (GET /api/rooms/{id}/messages, or XEP-0313
--      on the room JID). Directed presence is lost when the bridge restarts, until the
--      client sends it again.

VirtualHost "localhost"
  -- XEP-0356: the component may see users' presence (set-up 1 above).
  privileged_entities = {
    ["muclight.localhost"] = { presence = "managed_entity" };
  }

Component "muclight.localhost"
  component_secret = "change me"
  -- Without this line the component is never told its privileges.
  modules_enabled = { "privilege" }
