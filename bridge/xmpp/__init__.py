"""The XMPP side of the bridge: user sessions and the protocol handlers that use them."""
