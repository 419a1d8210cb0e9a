"""Tests against a real XMPP server started by the harness."""
