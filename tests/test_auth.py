"""
Tests for L{portshare.auth}: constant-time secret comparison and signed join tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from twisted.trial.unittest import SynchronousTestCase

from portshare.auth import Grant, JoinTokens, sameSecret
from portshare.errors import Forbidden

SECRET = b"0123456789abcdef-test-secret"


def b64(data: bytes) -> str:
    """Unpadded base64url, as tokens use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed(body: str, secret: bytes = SECRET) -> str:
    """A token with C{body} and a valid signature for it, whatever the body holds."""
    signature = hmac.new(secret, body.encode("utf-8"), hashlib.sha256).digest()
    return f"{body}.{b64(signature)}"


def claimsToken(claims: object) -> str:
    """A validly signed token whose body is the JSON of C{claims}."""
    return signed(b64(json.dumps(claims).encode("utf-8")))


class SameSecretTests(SynchronousTestCase):
    """sameSecret compares secrets given as text or bytes."""

    def test_equalText(self) -> None:
        """Two equal strings are the same secret."""
        self.assertIs(sameSecret("hunter2", "hunter2"), True)

    def test_textAndBytes(self) -> None:
        """A string and its UTF-8 bytes are the same secret, in either order."""
        self.assertIs(sameSecret("pässword", "pässword".encode()), True)
        self.assertIs(sameSecret("pässword".encode(), "pässword"), True)

    def test_different(self) -> None:
        """Secrets differing in one character are not the same."""
        self.assertIs(sameSecret("hunter2", "hunter3"), False)

    def test_prefix(self) -> None:
        """A prefix of the secret is not the secret."""
        self.assertIs(sameSecret("hunter", "hunter2"), False)
        self.assertIs(sameSecret(b"", b"hunter2"), False)


class JoinTokensTests(SynchronousTestCase):
    """JoinTokens mints tokens that verify into grants, and refuses anything else."""

    def setUp(self) -> None:
        self.tokens = JoinTokens(SECRET)

    def test_shortSecret(self) -> None:
        """A secret shorter than 16 bytes is refused with ValueError."""
        error = self.assertRaises(ValueError, JoinTokens, b"x" * 15)
        self.assertEqual(str(error), "a join secret must be at least 16 bytes")

    def test_sixteenByteSecret(self) -> None:
        """A secret of exactly 16 bytes is enough."""
        tokens = JoinTokens(b"x" * 16)
        grant = tokens.verify(tokens.mint(["a"], [], 10), now=0)
        self.assertEqual(grant, Grant(join=("a",), say=(), expires=10.0))

    def test_roundTrip(self) -> None:
        """A minted token verifies, before it expires, into the patterns it was minted with."""
        token = self.tokens.mint(["lobby", "team-*"], ["lobby"], 1_700_000_000)
        grant = self.tokens.verify(token, now=1_699_999_999.5)
        self.assertEqual(
            grant, Grant(join=("lobby", "team-*"), say=("lobby",), expires=1_700_000_000.0)
        )

    def test_tokenFormat(self) -> None:
        """A token is unpadded base64url JSON claims, a dot, and their base64url HMAC-SHA256."""
        token = self.tokens.mint(["r"], ["s"], 1234.9)
        body, dot, signature = token.partition(".")
        self.assertEqual(dot, ".")
        self.assertNotIn("=", token)
        self.assertEqual(
            json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))),
            {"join": ["r"], "say": ["s"], "exp": 1234},
        )
        self.assertEqual(token, signed(body))
        self.assertEqual(len(signature), 43)

    def test_wildcards(self) -> None:
        """Patterns match room names with '*' wildcards, case-sensitively and whole."""
        grant = self.tokens.verify(self.tokens.mint(["team-*", "Lobby"], ["*"], 100), now=0)
        self.assertEqual(
            [grant.mayJoin(room) for room in ("team-a", "team-", "teams", "Lobby", "lobby")],
            [True, True, False, True, False],
        )
        self.assertTrue(grant.maySay("anything.at_all-1"))

    def test_noPatterns(self) -> None:
        """A grant without patterns allows nothing."""
        grant = self.tokens.verify(self.tokens.mint([], [], 100), now=0)
        self.assertEqual((grant.mayJoin("lobby"), grant.maySay("lobby")), (False, False))

    def test_joinWithoutSay(self) -> None:
        """Join and say patterns are separate: joining a room does not allow saying there."""
        grant = self.tokens.verify(self.tokens.mint(["*"], ["announcements"], 100), now=0)
        self.assertEqual(
            (grant.mayJoin("lobby"), grant.maySay("lobby"), grant.maySay("announcements")),
            (True, False, True),
        )

    def test_absentClaimsAllowNothing(self) -> None:
        """A signed token with only an expiry allows joining and saying nowhere."""
        grant = self.tokens.verify(claimsToken({"exp": 100}), now=0)
        self.assertEqual(grant, Grant(join=(), say=(), expires=100.0))

    def assertForbidden(self, token: str | None, reason: str, now: float = 0) -> None:
        error = self.assertRaises(Forbidden, self.tokens.verify, token, now)
        self.assertEqual((error.code, error.reason), ("forbidden", reason))

    def test_expiredAtDeadline(self) -> None:
        """A token is expired from the second named by its expiry on."""
        self.assertForbidden(self.tokens.mint(["*"], ["*"], 100), "join token has expired", 100)

    def test_expiredAfterDeadline(self) -> None:
        """A token past its expiry is refused."""
        self.assertForbidden(self.tokens.mint(["*"], ["*"], 100), "join token has expired", 5000)

    def test_missing(self) -> None:
        """No token, or an empty one, is refused."""
        self.assertForbidden(None, "this server requires a join token")
        self.assertForbidden("", "this server requires a join token")

    def test_tamperedSignature(self) -> None:
        """A token whose signature was altered is refused."""
        token = self.tokens.mint(["lobby"], ["lobby"], 100)
        last = "A" if token[-1] != "A" else "B"
        self.assertForbidden(token[:-1] + last, "join token is not valid")

    def test_tamperedBody(self) -> None:
        """A token whose claims were replaced, keeping the old signature, is refused."""
        token = self.tokens.mint(["lobby"], ["lobby"], 100)
        wider = self.tokens.mint(["*"], ["*"], 100)
        self.assertForbidden(
            wider.partition(".")[0] + "." + token.partition(".")[2], "join token is not valid"
        )

    def test_otherSecret(self) -> None:
        """A token signed with another secret is refused."""
        token = JoinTokens(b"another-secret-of-some-length").mint(["*"], ["*"], 100)
        self.assertForbidden(token, "join token is not valid")

    def test_noSignature(self) -> None:
        """A token without a dot and signature is refused."""
        body = self.tokens.mint(["*"], ["*"], 100).partition(".")[0]
        self.assertForbidden(body, "join token is not valid")
        self.assertForbidden(body + ".", "join token is not valid")

    def test_nonAsciiBody(self) -> None:
        """A token whose body holds non-ASCII characters (clients send any text) is refused."""
        self.assertForbidden("é.x", "join token is not valid")

    def test_nonAsciiSignature(self) -> None:
        """A token whose signature holds non-ASCII characters is refused."""
        body = self.tokens.mint(["*"], ["*"], 100).partition(".")[0]
        self.assertForbidden(body + ".é", "join token is not valid")

    def test_badBase64(self) -> None:
        """A validly signed body that is not base64 is refused."""
        self.assertForbidden(signed("a"), "join token is not valid")

    def test_notJson(self) -> None:
        """A validly signed body that is base64 of something other than JSON is refused."""
        self.assertForbidden(signed(b64(b"not json {")), "join token is not valid")
        self.assertForbidden(signed(b64(b"\xff\xfe")), "join token is not valid")

    def test_notObject(self) -> None:
        """Validly signed claims that are not a JSON object are refused."""
        self.assertForbidden(claimsToken(["join", "*"]), "join token is not valid")
        self.assertForbidden(claimsToken("*"), "join token is not valid")

    def test_missingExpiry(self) -> None:
        """Validly signed claims without an expiry are refused."""
        self.assertForbidden(claimsToken({"join": ["*"], "say": ["*"]}), "join token is not valid")

    def test_badExpiry(self) -> None:
        """Validly signed claims whose expiry is not a number are refused."""
        self.assertForbidden(claimsToken({"exp": "soon"}), "join token is not valid")
        self.assertForbidden(claimsToken({"exp": None}), "join token is not valid")

    def test_badPatterns(self) -> None:
        """Validly signed claims whose patterns are not a list are refused."""
        self.assertForbidden(claimsToken({"join": 5, "exp": 100}), "join token is not valid")
