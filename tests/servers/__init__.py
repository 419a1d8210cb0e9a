"""The test servers (Prosody, ejabberd, PostgreSQL), a plain XMPP client and a headless
browser, for the tests and the benchmarks."""
