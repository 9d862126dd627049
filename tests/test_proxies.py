"""Tests for L{portshare.proxies}: X-Forwarded-For believed only from trusted proxies."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from portshare.proxies import clientHost, parseNetworks


class ClientHostTests(SynchronousTestCase):
    trusted = parseNetworks(["10.0.0.0/8", "::1"])

    def test_untrustedPeerIgnoresHeader(self) -> None:
        """A peer that is not a trusted proxy is the client, whatever the header says."""
        self.assertEqual(clientHost("203.0.113.9", ["1.2.3.4"], self.trusted), "203.0.113.9")
        self.assertEqual(clientHost("203.0.113.9", ["1.2.3.4"], ()), "203.0.113.9")

    def test_rightmostUntrustedHop(self) -> None:
        """Through trusted proxies, the client is the right-most hop that is not one of them."""
        self.assertEqual(
            clientHost("10.1.1.1", ["6.6.6.6, 198.51.100.7", "10.2.2.2"], self.trusted),
            "198.51.100.7",
        )
        self.assertEqual(clientHost("::1", ["2001:db8::5"], self.trusted), "2001:db8::5")

    def test_onlyProxiesOrNoHeader(self) -> None:
        """Without a header the peer stays; with only proxies, the left-most is taken."""
        self.assertEqual(clientHost("10.1.1.1", [], self.trusted), "10.1.1.1")
        self.assertEqual(clientHost("10.1.1.1", ["10.3.3.3"], self.trusted), "10.3.3.3")

    def test_garbageHopsAreNotTrusted(self) -> None:
        """A hop that is not an address is not a trusted proxy (it is returned as written)."""
        self.assertEqual(clientHost("10.1.1.1", ["evil"], self.trusted), "evil")

    def test_parseNetworks(self) -> None:
        """Addresses and networks parse; anything else is a ValueError."""
        self.assertEqual(
            [str(n) for n in parseNetworks(["10.0.0.1", "192.168.0.0/16"])],
            ["10.0.0.1/32", "192.168.0.0/16"],
        )
        self.assertRaises(ValueError, parseNetworks, ["example.com"])
