"""Tests of xmpp-rest-bridge."""
