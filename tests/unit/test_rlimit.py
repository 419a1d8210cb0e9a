"""The open-files limit is raised at start (bridge.rlimit)."""

from __future__ import annotations

import resource

from twisted.trial import unittest

from bridge import rlimit


class FakeLimits:
    """``resource``'s two calls on one (soft, hard) pair; ``refuse`` makes setrlimit fail."""

    def __init__(self, soft: int, hard: int, refuse: bool = False) -> None:
        self.limits = (soft, hard)
        self.refuse = refuse

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        if self.refuse:
            raise ValueError("not permitted")
        self.limits = limits


class RaiseTests(unittest.TestCase):
    def use(self, fake: FakeLimits) -> FakeLimits:
        self.patch(rlimit.resource, "getrlimit", fake.getrlimit)
        self.patch(rlimit.resource, "setrlimit", fake.setrlimit)
        return fake

    def test_soft_limit_is_raised_to_the_hard_one(self) -> None:
        """A soft limit of 1,024 under a hard one of 524,288 becomes 524,288."""
        fake = self.use(FakeLimits(1024, 524288))
        self.assertEqual(rlimit.raise_open_files_limit(), 524288)
        self.assertEqual(fake.limits, (524288, 524288))

    def test_nothing_to_raise(self) -> None:
        """A soft limit already at the hard one is left as it is."""
        fake = self.use(FakeLimits(4096, 4096))
        self.assertEqual(rlimit.raise_open_files_limit(), 4096)
        self.assertEqual(fake.limits, (4096, 4096))

    def test_refusal_is_logged_not_raised(self) -> None:
        """When the system refuses, start-up goes on with the old limit and a warning."""
        self.use(FakeLimits(1024, 524288, refuse=True))
        self.assertEqual(rlimit.raise_open_files_limit(), 1024)
