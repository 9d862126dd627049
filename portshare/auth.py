"""
Secrets compared in constant time, and signed join tokens.

A join token is C{base64url(claims) "." base64url(HMAC-SHA256(secret, base64url(claims)))},
where claims are JSON: C{{"join": [PATTERN...], "say": [PATTERN...], "exp": UNIX_SECONDS}}.
Patterns are room names with C{*} wildcards.  With C{--join-secret-file} set, a C{join} must carry
a token whose C{join} patterns match the room, and a C{say} goes through only to rooms its
token's C{say} patterns match; anything else is refused with C{forbidden}.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from fnmatch import fnmatchcase

from portshare.errors import Forbidden


def sameSecret(given: str | bytes, expected: str | bytes) -> bool:
    """Compare two secrets without leaking, through timing, how much of them matched."""
    if isinstance(given, str):
        given = given.encode("utf-8")
    if isinstance(expected, str):
        expected = expected.encode("utf-8")
    return hmac.compare_digest(given, expected)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Grant:
    """What a verified token allows."""

    join: tuple[str, ...]
    say: tuple[str, ...]
    expires: float

    def mayJoin(self, room: str) -> bool:
        return any(fnmatchcase(room, p) for p in self.join)

    def maySay(self, room: str) -> bool:
        return any(fnmatchcase(room, p) for p in self.say)


class JoinTokens:
    """Signs and verifies join tokens with one shared secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("a join secret must be at least 16 bytes")
        self._secret = secret

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode("ascii"), hashlib.sha256).digest())

    def mint(self, join: list[str], say: list[str], expires: float) -> str:
        """A token for the given room patterns, valid until C{expires} (UNIX seconds)."""
        claims = {"join": list(join), "say": list(say), "exp": int(expires)}
        body = _b64(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
        return f"{body}.{self._sign(body)}"

    def verify(self, token: str | None, now: float) -> Grant:
        """
        @return: what C{token} allows.
        @raise Forbidden: when it is missing, forged, malformed or expired.
        """
        if not token:
            raise Forbidden("this server requires a join token")
        body, _, signature = token.partition(".")
        if not body.isascii():
            raise Forbidden("join token is not valid")
        if not sameSecret(signature, self._sign(body)):
            raise Forbidden("join token is not valid")
        try:
            claims = json.loads(_unb64(body))
            grant = Grant(
                join=tuple(str(p) for p in claims.get("join", ())),
                say=tuple(str(p) for p in claims.get("say", ())),
                expires=float(claims["exp"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Forbidden("join token is not valid") from None
        if grant.expires <= now:
            raise Forbidden("join token has expired")
        return grant
