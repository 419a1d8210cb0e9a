"""The protocol layer: XML namespaces, JID parsing and stanza <-> JSON conversion.

Pure functions and constants only. Nothing here imports the rest of the bridge (its XMPP
sessions, the MUC Light component, the REST API, the store or the config), so every other
part can build on it and importing it has no side effects.
"""
