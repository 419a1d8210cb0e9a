"""The REST contract without a server: the real Klein site, in memory (StubTreq), on fake sessions."""
