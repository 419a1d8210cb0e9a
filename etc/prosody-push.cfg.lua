-- Offline push (XEP-0357) for xmpp-rest-bridge's webhooks, with Prosody 0.12 (Debian:
-- prosody-modules; Prosody 13 ships mod_cloud_notify in core). Paste into
-- /etc/prosody/prosody.cfg.lua beside etc/prosody-component.cfg.lua, or drop into
-- /etc/prosody/conf.d/, then set [push] enabled = true (and allowed_hosts) in the bridge.
--
-- The bridge's MUC Light component is the push "app server": POST /api/push sends
-- <enable jid="muclight.localhost" node="..."/> from the user's session, and whenever a
-- message reaches the user while she has no session (or only hibernated smacks sessions),
-- Prosody publishes a summary to the component, which POSTs it to her webhook. Prosody
-- decides when; the bridge delivers. The test harness (tests/servers/prosody.py) runs
-- every test with these settings.

-- Global section:
modules_enabled = {
  -- ... your modules, plus:
  "cloud_notify";
}
-- Without these the summary carries only a message count (Prosody's defaults keep the
-- sender and the body off the push service); the webhook then gets {user, id, count}.
push_notification_with_body = true
push_notification_with_sender = true
-- Prosody disables a node after this many errors from the app server (the bridge answers
-- item-not-found for a removed webhook): 16 by default.
-- push_max_errors = 16
