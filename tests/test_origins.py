"""Tests for L{portshare.origins}: the browser-origin rule of handshakes and API writes."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from portshare.origins import crossSiteWrite

HOST = "chat.example:8080"


class CrossSiteWriteTests(SynchronousTestCase):
    def test_nonBrowserClients(self) -> None:
        """Without Origin and Sec-Fetch-Site (curl, servers) a write may go on."""
        self.assertIsNone(crossSiteWrite(None, None, HOST, ()))

    def test_ownOrigin(self) -> None:
        """The page's own origin may write, whatever Sec-Fetch-Site says beside it."""
        self.assertIsNone(crossSiteWrite("http://chat.example:8080", "same-origin", HOST, ()))
        self.assertIsNone(crossSiteWrite("http://chat.example:8080", None, HOST, ()))

    def test_allowedPattern(self) -> None:
        """An origin allowed by a pattern may write from another site."""
        patterns = ("https://*.trusted.example",)
        self.assertIsNone(crossSiteWrite("https://a.trusted.example", "cross-site", HOST, patterns))

    def test_foreignOrigin(self) -> None:
        """Another origin is refused with a reason naming it, even when Sec-Fetch-Site lies."""
        reason = crossSiteWrite("https://evil.example", "same-origin", HOST, ())
        self.assertIsNotNone(reason)
        assert reason is not None
        self.assertIn("https://evil.example", reason)

    def test_opaqueOrigin(self) -> None:
        """C{Origin: null} (and C{file://}) is refused whatever the patterns: any page can
        make itself an opaque origin."""
        for patterns in [(), ("null",), ("*",)]:
            self.assertIsNotNone(crossSiteWrite("null", None, HOST, patterns))
            self.assertIsNotNone(crossSiteWrite("file://", None, HOST, patterns))

    def test_fetchSiteAlone(self) -> None:
        """Without Origin, Sec-Fetch-Site decides: cross-site and same-site are refused,
        same-origin and none (typed by the person) pass."""
        self.assertIsNotNone(crossSiteWrite(None, "cross-site", HOST, ()))
        self.assertIsNotNone(crossSiteWrite(None, "same-site", HOST, ()))
        self.assertIsNone(crossSiteWrite(None, "same-origin", HOST, ()))
        self.assertIsNone(crossSiteWrite(None, "none", HOST, ()))

    def test_longOriginIsCut(self) -> None:
        """A huge hostile Origin is not echoed whole into the reason."""
        reason = crossSiteWrite("http://" + "a" * 10_000, None, HOST, ())
        assert reason is not None
        self.assertLess(len(reason), 300)
