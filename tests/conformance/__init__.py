"""Conformance: our own port of MongooseIM's client REST and MUC Light test scenarios.

Each test ports one scenario of MongooseIM's ``big_tests/tests/rest_client_SUITE.erl`` (the
client REST API: messages, contacts, rooms, live events) or ``muc_light_SUITE.erl`` (the
MUC Light protocol as a client sees it), is named after it and says so in its docstring.
They run like ``tests/integration``: a fresh bridge per test in front of the run's real XMPP
server (``BRIDGE_TEST_SERVER=prosody|ejabberd``); REST where the API covers the scenario,
otherwise raw MUC Light stanzas from a plain XMPP client to the bridge's own component.

Modules: ``test_messages`` (rest_client_SUITE groups messages, messages_with_props,
messages_with_thread), ``test_contacts`` (roster), ``test_rooms`` (muc, muc_config,
muc_disabled), ``test_muclight`` (muc_light_SUITE groups entity, occupant, owner, limits,
blocking).

Where MongooseIM fills an archive directly on past days (``fill_archive``,
``fill_room_archive``), the port sends the messages through the API with short pauses
standing for the days, and takes ``before`` between them.

Scenarios that do not apply to a bridge, and why:

rest_client_SUITE
* default_http_server_name_is_returned_if_not_changed,
  non_default_http_server_name_is_returned_if_configured: the ``server`` header name of
  MongooseIM's Cowboy listener is one of its listener's config options; the bridge has no
  such option.
* The suite's MAM skips (``maybe_skip_mam_test_cases``) and module set-up
  (``rooms_in_rosters``, ``dynamic_modules``) are MongooseIM configuration, not scenarios.

muc_light_SUITE
* removing_users_from_server_triggers_room_destruction: a server internal (MongooseIM's
  ``remove_user`` hook); an external XEP-0114 component is not told when the XMPP server
  deletes an account, and the suite checks the database backend over RPC.
* mismatched_default_config_is_rejected, custom_schema_works_with_standard_default_config,
  custom_default_config_works, set_config_with_custom_schema,
  deny_config_change_that_conflicts_with_schema,
  no_roomname_in_schema_doesnt_break_disco_and_roster: mod_muc_light's ``config_schema`` and
  ``default_config`` options; the bridge's rooms have the fixed roomname/subject schema.
* disco_rooms_empty_page_1, disco_rooms_created_page_1: mod_muc_light's ``rooms_per_page``
  option (server-chosen page size); the unlimited variants and client-driven RSM paging
  (disco_rooms_rsm) are ported.
* rooms_in_rosters, rooms_in_rosters_doesnt_break_disco_info: the ``rooms_in_rosters``
  option makes MongooseIM's own roster module list rooms; a component cannot add items to
  the user's roster on someone else's server.
* create_room_with_equal_occupants: the ``equal_occupants`` option.
* rooms_per_user: the ``rooms_per_user`` option.
* blocking_disabled: the ``blocking = false`` option (the bridge's blocking is always on).
* adding_wrongly_named_user_triggers_infinite_loop, its memory part: it watches the memory
  of MongooseIM's session process over RPC (server internals); the client-visible part
  (the service answers, no flood of stanzas) is ported.
"""
