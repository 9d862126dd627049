"""
Tests for L{portshare.limits}.
"""

from __future__ import annotations

import dataclasses

from twisted.trial.unittest import SynchronousTestCase

from portshare.limits import Limits

FIELDS = [f.name for f in dataclasses.fields(Limits)]


class LimitsTests(SynchronousTestCase):
    """Limits holds positive tunables and refuses anything else, naming the field."""

    def test_defaults(self) -> None:
        """The defaults are the documented ones."""
        limits = Limits()
        self.assertEqual(
            dataclasses.asdict(limits),
            {
                "maxMessageSize": 65536,
                "maxText": 4096,
                "history": 1000,
                "maxRooms": 10_000,
                "roomsPerConnection": 64,
                "rate": 20.0,
                "burst": 40,
                "floodStrikes": 20,
                "apiRate": 20.0,
                "apiBurst": 40,
                "historyPageLimit": 1000,
                "maxBody": 65536,
                "staticCacheFileBytes": 1024 * 1024,
                "staticCacheBytes": 32 * 1024 * 1024,
                "echoMaxMessageSize": 16 * 1024 * 1024,
                "openHandshakeTimeout": 10.0,
                "closeHandshakeTimeout": 5.0,
                "pingInterval": 30.0,
                "pingTimeout": 10.0,
                "presenceMembersCap": 100,
                "presenceBatchAbove": 100,
                "presenceBatchInterval": 1.0,
                "maxConnections": 10_000,
                "maxConnectionsPerAddress": 256,
                "adminMaxConnections": 64,
                "requestTimeout": 10.0,
                "httpIdleTimeout": 60.0,
                "maxHeaders": 64,
                "maxHeaderBytes": 16 * 1024,
                "maxConcurrentStreams": 100,
                "slowConsumerBytes": 1024 * 1024,
                "slowConsumerSeconds": 10.0,
            },
        )

    def test_positiveValuesKept(self) -> None:
        """Any positive value, even a small fraction, is accepted and kept."""
        for name in FIELDS:
            limits = Limits(**{name: 1})
            self.assertEqual(getattr(limits, name), 1, name)
        self.assertEqual(Limits(rate=0.5).rate, 0.5)

    def test_zeroRefused(self) -> None:
        """Zero for any field but presenceBatchAbove raises ValueError naming that field."""
        for name in FIELDS:
            if name == "presenceBatchAbove":
                continue
            error = self.assertRaises(ValueError, Limits, **{name: 0})
            self.assertEqual(str(error), f"{name} must be positive, not 0", name)

    def test_negativeRefused(self) -> None:
        """A negative value for any field raises ValueError naming that field."""
        for name in FIELDS:
            error = self.assertRaises(ValueError, Limits, **{name: -1.5})
            rule = "0 or more" if name == "presenceBatchAbove" else "positive"
            self.assertEqual(str(error), f"{name} must be {rule}, not -1.5", name)

    def test_presenceBatchAboveMayBeZero(self) -> None:
        """presenceBatchAbove accepts 0, which batches the presence of every room."""
        self.assertEqual(Limits(presenceBatchAbove=0).presenceBatchAbove, 0)

    def test_frozen(self) -> None:
        """Limits cannot be changed once built."""
        limits = Limits()
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, limits, "maxText", 1)
