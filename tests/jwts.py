"""
Users' tokens for the tests of issue 15 (handshakes, the hub's users, the server API): good
ones minted with PyJWT as an application does, and the hostile ones an attacker sends.

Every L{portshare.testing.MemoryChat} clock starts at 0: a token's C{exp} is in seconds on
that clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt

#: the HMAC secret of the tests' service (C{jwtSecret=SECRET})
SECRET = b"an-application-secret-of-the-tests-0123456789abcdef"
#: another application's secret: its tokens must be refused
OTHER_SECRET = b"another-application-secret-0123456789abcdef-xyz"
#: the API token of the tests' service (C{apiToken=API_TOKEN})
API_TOKEN = "the-api-token-of-the-tests-0123"


def token(sub: str = "ann", exp: float = 600, secret: bytes = SECRET, **claims: Any) -> str:
    """An HS256 token for C{sub} until C{exp}; C{None} claims are left out."""
    payload: dict[str, Any] = {"sub": sub, "exp": exp, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, "HS256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def algNone(sub: str = "ann", exp: float = 600) -> str:
    """An unsigned token (C{alg: none}), as an attacker forges one."""
    head = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"sub": sub, "exp": exp}).encode())
    return f"{head}.{body}."


def tampered(sub: str = "ann", into: str = "admin") -> str:
    """A good token whose payload was changed to another user, the signature kept."""
    head, _, signature = token(sub).split(".")
    body = _b64(json.dumps({"sub": into, "exp": 600}).encode())
    return f"{head}.{body}.{signature}"


def oversized() -> str:
    """A validly signed token beyond the token size limit (8 KiB), yet within the HTTP
    header limit: refused as a token (401), not as a request (431)."""
    return token(padding="x" * 9000)


def handMade(payload: dict[str, Any], secret: bytes = SECRET) -> str:
    """An HS256 token built by hand (any claims, of any type)."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing = f"{head}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64(signature)}"


def bearer(value: str) -> dict[str, str]:
    """The C{Authorization} header of C{value}."""
    return {"Authorization": f"Bearer {value}"}


#: the hostile tokens every handshake refuses with 401, by name
BAD_TOKENS = {
    "expired": lambda: token(exp=-1),
    "wrong key": lambda: token(secret=OTHER_SECRET),
    "alg none": algNone,
    "tampered": tampered,
    "oversized": oversized,
    "garbage": lambda: "not-a-jwt",
}
