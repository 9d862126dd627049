"""
Users from JSON Web Tokens: keys, verification, claims, and what a user may do.

Theory of operation
===================

A token is checked in three steps, each refusing with L{Unauthorized} (error C{unauthorized},
HTTP 401) and a reason safe to show to the client:

 1. I{Before any parsing} (L{peekHeader}): the token's size (at most C{maxTokenBytes}), its
    shape (three base64url segments), and its header: an C{alg} from the key's own list,
    no C{crit} and no C{b64} (RFC 7515 extensions portshare does not implement), and a
    C{kid} that is a short string when present.
 2. I{The key} comes from a L{KeySet}: the one key of C{--jwt-secret-file} or
    C{--jwt-public-key-file}, or the keys of a JWKS (L{portshare.jwks}). The key's type fixes
    its algorithms (L{algorithmsFor}): C{HS256/384/512} for a secret, C{RS*}/C{PS*} for RSA,
    the one C{ES*} of an EC key's curve, C{EdDSA} for Ed25519/Ed448. The token's own C{alg}
    only ever selects within that list, never widens it: C{alg: none} is refused, and so is an
    HMAC token "signed" with a public key's PEM (the classic key confusion), since a public
    key never verifies HMAC.
 3. I{The signature and the claims}: PyJWT checks the signature, C{aud} and C{iss}; this
    module checks the times (C{exp} required, C{nbf}, C{iat}) against the C{now} it is given,
    so that the connection's expiry timer and the check share one clock (an injected one in
    tests), and then portshare's own claims (L{Identity}).

PyJWT was chosen over joserfc by record: PyJWT is the longest-maintained and most deployed
JWT library for Python, makes C{algorithms} a required argument (since 2.0), and fixed its
advisories quickly (key confusion with PEM keys in 2017, with JWK documents in 2.13);
joserfc is younger and had four advisories in 2026 alone, one accepting an empty HMAC key.
Either way this module never lets the library pick an algorithm from the token, and never
hands it a key as a string, so both classes of bug stay out of reach.

Nothing here does I/O or reads a clock: L{Authenticator} (over an L{IKeySource}) is the
asynchronous face the front ends call.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import Interface, implementer

from portshare.errors import BadRequest, Unauthorized, Unavailable
from portshare.wire import MAX_NICK, validNick, validRoom

#: a token longer than this is refused before it is parsed (bytes; a header value or cookie
#: of 8 KiB is what common proxies pass)
DEFAULT_MAX_TOKEN_BYTES = 8192
#: the longest C{sub} (user id) accepted, in characters
MAX_USER = 256
#: the most entries of a C{rooms} or C{publish} claim
DEFAULT_MAX_GRANTS = 256
#: the longest C{kid} accepted, in characters
MAX_KID = 256
#: an HMAC secret shorter than this is refused (RFC 7518 section 3.2: at least the hash size)
MIN_SECRET_BYTES = 32

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
_HMAC_MIN_BYTES = (("HS256", 32), ("HS384", 48), ("HS512", 64))
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
EDDSA_ALGORITHMS = ("EdDSA",)

_SEGMENT = re.compile(rb"[A-Za-z0-9_-]*\Z")
# a grant: a room name, or a prefix of one followed by "*" ("*" alone: every room)
_GRANT_PREFIX = re.compile(r"[A-Za-z0-9._-]{0,63}\*\Z")

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)


# --- keys --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """
    One verification key and the algorithms it may verify.

    @ivar material: the HMAC secret (bytes) or a C{cryptography} public key object.
    @ivar algorithms: fixed by the key's type (L{algorithmsFor}), never by a token.
    @ivar kid: the key id a JWKS gives it, or C{None}.
    """

    material: bytes | PublicKey = field(repr=False)
    algorithms: tuple[str, ...]
    kid: str | None = None


@dataclass(frozen=True)
class KeySet:
    """
    The keys tokens are verified with, looked up by C{kid}.

    A set of one key without a C{kid} (a secret or a PEM file) verifies every token, whatever
    C{kid} it names; otherwise a token's C{kid} must name a key of the set, and a token
    without a C{kid} is accepted only when the set holds exactly one key.
    """

    keys: tuple[Key, ...]

    def find(self, kid: str | None) -> Key | None:
        """
        @return: the key for a token whose header names C{kid}, or C{None} when there is none.
        """
        if len(self.keys) == 1 and (kid is None or self.keys[0].kid in (None, kid)):
            return self.keys[0]
        if kid is None:
            return None
        for key in self.keys:
            if key.kid == kid:
                return key
        return None

    def kids(self) -> frozenset[str]:
        """The key ids of the set (for logs and tests)."""
        return frozenset(k.kid for k in self.keys if k.kid is not None)


def algorithmsFor(material: object) -> tuple[str, ...]:
    """
    The algorithms a key may verify, by its type alone.

    @param material: an HMAC secret (bytes) or a C{cryptography} public key.
    @raise ValueError: for a private key, an unsupported curve or an unknown type.
    """
    if isinstance(material, bytes):
        # RFC 7518 section 3.2: a key at least as long as the hash; a shorter secret keeps
        # only the algorithms it is long enough for
        return tuple(alg for alg, size in _HMAC_MIN_BYTES if len(material) >= size)
    if isinstance(material, rsa.RSAPublicKey):
        if material.key_size < 2048:
            raise ValueError(f"an RSA key must have at least 2048 bits, not {material.key_size}")
        return RSA_ALGORITHMS
    if isinstance(material, ec.EllipticCurvePublicKey):
        alg = _EC_ALGORITHMS.get(material.curve.name)
        if alg is None:
            raise ValueError(f"the EC curve {material.curve.name} is not supported")
        return (alg,)
    if isinstance(material, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return EDDSA_ALGORITHMS
    raise ValueError(f"not a supported public key: {type(material).__name__}")


def secretKeys(data: bytes) -> KeySet:
    """
    The key set of C{--jwt-secret-file}: one HMAC secret.

    Its algorithms are those it is long enough for: HS256 from 32 bytes, HS384 from 48,
    HS512 from 64.  One trailing line ending is dropped (C{echo secret > file} adds one).

    @raise ValueError: when the secret is shorter than L{MIN_SECRET_BYTES}, or looks like a
        public key or a JWK (an operator who meant C{--jwt-public-key-file}: used as a
        secret, the public key would let anyone sign tokens).
    """
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if len(data) < MIN_SECRET_BYTES:
        raise ValueError(f"a JWT secret must be at least {MIN_SECRET_BYTES} bytes")
    head = data.lstrip()
    if head.startswith((b"-----BEGIN", b"ssh-", b"ecdsa-sha2-", b"{")):
        raise ValueError(
            "this JWT secret looks like a public key or a JWK: use it as a public key instead"
        )
    return KeySet((Key(data, algorithmsFor(data)),))


def publicKeys(pem: bytes) -> KeySet:
    """
    The key set of C{--jwt-public-key-file}: one RSA, EC or Ed25519/Ed448 public key (PEM).

    @raise ValueError: when the file holds no supported public key (a private key included:
        the server needs only the public half, and should not hold the other).
    """
    try:
        material = load_pem_public_key(pem)
    except (ValueError, TypeError) as e:
        raise ValueError(f"not a PEM public key: {e}") from None
    return KeySet((Key(material, algorithmsFor(material)),))  # type: ignore[arg-type]


#: the JWK key types a JWKS may hold, and PyJWT's parser for each
_JWK_PARSERS: dict[str, Any] = {
    "RSA": jwt.algorithms.RSAAlgorithm,
    "EC": jwt.algorithms.ECAlgorithm,
    "OKP": jwt.algorithms.OKPAlgorithm,
}


def jwkSetKeys(document: object) -> KeySet:
    """
    The key set of a JWKS document (RFC 7517 section 5), as fetched from C{--jwks-url}.

    Keys for encryption (C{"use": "enc"}) or whose C{key_ops} exclude C{verify} are skipped,
    and so are symmetric keys (C{"kty": "oct"}: a published secret is no secret). A key's own
    C{alg}, when given, narrows its algorithms to that one, which must be among those its type
    allows. Of a private JWK only the public half is kept.

    @param document: the parsed JSON.
    @raise ValueError: when the document is not a JWKS or holds no usable key.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError('a JWKS is a JSON object with a "keys" list')
    keys: list[Key] = []
    for jwk in document["keys"]:
        if not isinstance(jwk, Mapping):
            continue
        parser = _JWK_PARSERS.get(jwk.get("kty"))  # type: ignore[arg-type]
        if parser is None or jwk.get("use", "sig") != "sig":
            continue
        ops = jwk.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            continue
        kid = jwk.get("kid")
        if kid is not None and (not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID):
            continue
        try:
            material = parser.from_jwk(dict(jwk))
            if hasattr(material, "public_key"):
                material = material.public_key()
            algorithms = algorithmsFor(material)
        except (ValueError, TypeError, KeyError, jwt.InvalidKeyError):
            continue
        alg = jwk.get("alg")
        if alg is not None:
            if alg not in algorithms:
                continue
            algorithms = (alg,)
        keys.append(Key(material, algorithms, kid))
    if not keys:
        raise ValueError("the JWKS holds no usable signing key")
    return KeySet(tuple(keys))


# --- the token's header ------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """What a token's header says, read before its signature is checked."""

    alg: str
    kid: str | None


def _b64decode(segment: bytes) -> bytes:
    if _SEGMENT.match(segment) is None:
        raise Unauthorized("the token is not a JWT (bad base64url)")
    try:
        return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise Unauthorized("the token is not a JWT (bad base64url)") from None


def peekHeader(token: str | bytes, maxTokenBytes: int = DEFAULT_MAX_TOKEN_BYTES) -> Header:
    """
    Check a token's size and shape and read its header, without trusting any of it.

    @raise Unauthorized: when the token is too long, not three base64url segments, or its
        header is not a JSON object with a string C{alg}, or uses C{crit} or C{b64}.
    """
    if isinstance(token, str):
        if len(token) > maxTokenBytes or not token.isascii():
            raise Unauthorized(_size(token, maxTokenBytes))
        raw = token.encode("ascii")
    else:
        raw = token
    if len(raw) > maxTokenBytes:
        raise Unauthorized(f"the token is longer than {maxTokenBytes} bytes")
    if not raw:
        raise Unauthorized("the token is empty")
    parts = raw.split(b".")
    if len(parts) != 3:
        raise Unauthorized("the token is not a JWT (it needs three parts)")
    try:
        header = json.loads(_b64decode(parts[0]))
    except (ValueError, UnicodeDecodeError):
        raise Unauthorized("the token's header is not JSON") from None
    if not isinstance(header, dict):
        raise Unauthorized("the token's header is not a JSON object")
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise Unauthorized("the token's header has no alg")
    if "crit" in header or "b64" in header:
        raise Unauthorized("the token's header uses an extension this server does not support")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID):
        raise Unauthorized("the token's kid is not a short string")
    return Header(alg=alg, kid=kid)


def _size(token: str, maxTokenBytes: int) -> str:
    if not token.isascii():
        return "the token is not a JWT (it is not ASCII)"
    return f"the token is longer than {maxTokenBytes} bytes"


# --- grants and the identity ---------------------------------------------------------------


@dataclass(frozen=True)
class RoomGrants:
    """
    The rooms of a C{rooms} or C{publish} claim: exact names, and prefixes (C{team-*}).

    @ivar names: rooms granted by name.
    @ivar prefixes: rooms granted by prefix (the C{*} dropped; C{""} grants every room).
    """

    names: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def parse(cls, claim: str, value: object, maxGrants: int) -> RoomGrants:
        """
        @raise Unauthorized: when C{value} is not a list of at most C{maxGrants} room names
            or prefixes ending in C{*}.
        """
        if not isinstance(value, list):
            raise Unauthorized(f"the {claim} claim must be a list of rooms")
        if len(value) > maxGrants:
            raise Unauthorized(f"the {claim} claim lists more than {maxGrants} rooms")
        names: set[str] = set()
        prefixes: list[str] = []
        for entry in value:
            if not isinstance(entry, str):
                raise Unauthorized(f"the {claim} claim must be a list of rooms")
            if entry.endswith("*"):
                if _GRANT_PREFIX.match(entry) is None:
                    raise Unauthorized(f"the {claim} claim has a bad room prefix")
                prefixes.append(entry[:-1])
            else:
                try:
                    names.add(validRoom(entry))
                except BadRequest:
                    raise Unauthorized(f"the {claim} claim has a bad room name") from None
        return cls(frozenset(names), tuple(sorted(set(prefixes))))

    def allows(self, room: str) -> bool:
        """Whether C{room} is granted, by name or by prefix."""
        return room in self.names or any(room.startswith(p) for p in self.prefixes)


@dataclass(frozen=True)
class Identity:
    """
    A user, as a verified token says.

    @ivar user: the C{sub} claim: the application's user id.
    @ivar nick: the display nick: the C{name} claim, or else the user id's first 32
        characters.
    @ivar expires: the C{exp} claim, in seconds since the epoch.
    @ivar rooms: the rooms the user may join, or C{None}: no restriction (no C{rooms} claim).
    @ivar publish: the rooms the user may say in, or C{None}: no restriction.
    @ivar claims: every claim of the token, for an in-process policy that reads its own.
    """

    user: str
    nick: str
    expires: float
    rooms: RoomGrants | None = None
    publish: RoomGrants | None = None
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def mayJoin(self, room: str) -> bool:
        """Whether the token lets the user join C{room}."""
        return self.rooms is None or self.rooms.allows(room)

    def mayPublish(self, room: str) -> bool:
        """Whether the token lets the user say something in C{room}."""
        return self.publish is None or self.publish.allows(room)


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None and name not in claims:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Unauthorized(f"the {name} claim must be a number of seconds")
    return float(value)


# --- verification ------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRules:
    """
    What a token must satisfy beyond its signature (the C{--jwt-*} options).

    @ivar audience: the C{aud} a token must name, or C{None}: tokens must carry no C{aud}
        (RFC 7519 section 4.1.3: a token for an audience is not for a server that is none).
    @ivar issuer: the C{iss} a token must carry exactly, or C{None}: any.
    @ivar leeway: seconds of clock skew allowed on C{exp}, C{nbf} and C{iat}.
    @ivar maxTokenBytes: longer tokens are refused before they are parsed.
    @ivar maxGrants: the most entries of a C{rooms} or C{publish} claim.
    """

    audience: str | None = None
    issuer: str | None = None
    leeway: float = 0.0
    maxTokenBytes: int = DEFAULT_MAX_TOKEN_BYTES
    maxGrants: int = DEFAULT_MAX_GRANTS

    def __post_init__(self) -> None:
        if self.leeway < 0 or not math.isfinite(self.leeway):
            raise ValueError("the JWT leeway must be 0 or more seconds")
        if self.maxTokenBytes < 64 or self.maxGrants < 1:
            raise ValueError("maxTokenBytes must be at least 64 and maxGrants at least 1")

    def deadline(self, identity: Identity) -> float:
        """When a connection of C{identity} must close unless refreshed: C{exp} + leeway."""
        return identity.expires + self.leeway


#: PyJWT's refusals, told in words a client can act on
_REASONS: list[tuple[type[Exception], str]] = [
    (jwt.InvalidSignatureError, "the token's signature is invalid"),
    (jwt.InvalidAudienceError, "the token is not for this server (aud)"),
    (jwt.InvalidIssuerError, "the token's issuer is not accepted (iss)"),
    (jwt.InvalidAlgorithmError, "the token's algorithm is not accepted for this key"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim"),
]


def verify(token: str | bytes, keys: KeySet, rules: TokenRules, now: float) -> Identity:
    """
    Verify C{token} with C{keys} under C{rules} at time C{now}.

    @param now: seconds since the epoch (the caller's clock).
    @return: the user the token names.
    @raise UnknownKey: when no key of C{keys} fits the token's C{kid} (a JWKS may be refetched).
    @raise Unauthorized: for any other refusal, with a reason that says which.
    """
    header = peekHeader(token, rules.maxTokenBytes)
    key = keys.find(header.kid)
    if key is None:
        raise UnknownKey(
            "the token names an unknown key (kid)"
            if header.kid is not None
            else "the token names no key (kid) and the key set has several"
        )
    if header.alg not in key.algorithms:
        # alg "none", HS256 against a public key, RS256 against a secret, ...
        raise Unauthorized(f"the token's algorithm {header.alg[:16]!r} is not accepted")
    try:
        claims = jwt.decode(
            token,
            key.material,  # type: ignore[arg-type]
            algorithms=list(key.algorithms),
            audience=rules.audience,
            issuer=rules.issuer,
            options={
                "verify_exp": False,  # checked below, against the caller's clock
                "verify_nbf": False,
                "verify_iat": False,
                "verify_sub": False,  # checked below, with portshare's bounds
                "verify_jti": False,
                "require": ["iss"] if rules.issuer is not None else [],
            },
        )
    except (jwt.PyJWTError, TypeError, ValueError) as e:
        # (TypeError, ValueError: a key PyJWT would not use for the algorithm, defence in
        # depth behind the algorithm check above)
        for kind, reason in _REASONS:
            if isinstance(e, kind):
                raise Unauthorized(reason) from None
        raise Unauthorized("the token is malformed") from None
    return identityOf(claims, rules, now)


def identityOf(claims: Mapping[str, Any], rules: TokenRules, now: float) -> Identity:
    """
    The L{Identity} of a token's verified claims: times checked at C{now}, portshare's claims
    validated.

    @raise Unauthorized: when a time is out of range or a claim is missing or of a bad type.
    """
    exp = _number(claims, "exp")
    if exp is None:
        raise Unauthorized("the token has no exp claim")
    if exp + rules.leeway <= now:
        raise Unauthorized("the token has expired")
    nbf = _number(claims, "nbf")
    if nbf is not None and nbf - rules.leeway > now:
        raise Unauthorized("the token is not valid yet (nbf)")
    iat = _number(claims, "iat")
    if iat is not None and iat - rules.leeway > now:
        raise Unauthorized("the token was issued in the future (iat)")
    user = claims.get("sub")
    if user is None:
        raise Unauthorized("the token has no sub claim")
    if (
        not isinstance(user, str)
        or not 1 <= len(user) <= MAX_USER
        or not user.isprintable()
        or user.isspace()
    ):
        raise Unauthorized(f"the sub claim must be 1 to {MAX_USER} printable characters")
    name = claims.get("name")
    if name is None:
        nick = user[:MAX_NICK]
        if nick.isspace():
            nick = user.strip()[:MAX_NICK]
    else:
        try:
            nick = validNick(name)
        except BadRequest:
            raise Unauthorized(
                f"the name claim must be 1 to {MAX_NICK} printable characters"
            ) from None
    rooms = claims.get("rooms")
    publish = claims.get("publish")
    return Identity(
        user=user,
        nick=nick,
        expires=exp,
        rooms=None if rooms is None else RoomGrants.parse("rooms", rooms, rules.maxGrants),
        publish=None if publish is None else RoomGrants.parse("publish", publish, rules.maxGrants),
        claims=dict(claims),
    )


class UnknownKey(Unauthorized):
    """No key of the set fits the token's C{kid}: a JWKS source may fetch the set again."""


# --- the asynchronous face -------------------------------------------------------------------


class IKeySource(Interface):
    """Where the keys that verify tokens come from: a file read at start, or a JWKS URL."""

    def keysFor(kid: str | None) -> Deferred[KeySet]:
        """
        The key set to verify a token whose header names C{kid}.

        A source that can refresh (a JWKS) may fetch when C{kid} is unknown; it must fire
        within its own timeout, and fail with L{Unavailable} when it has no keys at all.
        """

    def keysChanged(kid: str | None) -> Deferred[KeySet] | None:
        """
        Called when the set fired by L{keysFor} had no key for C{kid}: a newer set, or
        C{None} when the source will not look again now (a file; a JWKS fetched too recently).
        """


@implementer(IKeySource)
class StaticKeys:
    """The key set of C{--jwt-secret-file} or C{--jwt-public-key-file}: never changes."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys

    def keysFor(self, kid: str | None) -> Deferred[KeySet]:
        return succeed(self.keys)

    def keysChanged(self, kid: str | None) -> Deferred[KeySet] | None:
        return None


class Authenticator:
    """
    Tokens in, users out: what the front ends call at a handshake, an API request or an
    C{auth} message.

    @ivar rules: the token rules (also L{TokenRules.deadline} for the expiry timer).
    """

    def __init__(self, keys: IKeySource, rules: TokenRules, clock: IReactorTime) -> None:
        """
        @param keys: where the verification keys come from.
        @param rules: audience, issuer, leeway and the size limits.
        @param clock: the clock C{exp}, C{nbf} and C{iat} are checked against.
        """
        self.keys = keys
        self.rules = rules
        self.clock = clock

    def authenticate(self, token: str | bytes) -> Deferred[Identity]:
        """
        Verify C{token}.

        @return: a Deferred that fires with the L{Identity}, or fails with L{Unauthorized}
            (the token is refused: 401, error C{unauthorized}) or L{Unavailable} (the keys
            could not be had in time: 503, error C{unavailable}). It fires at once for the
            keys of a file, and within the JWKS fetch timeout for a JWKS.
        """
        try:
            header = peekHeader(token, self.rules.maxTokenBytes)
        except Unauthorized as e:
            return _failed(e)
        d = maybeDeferred(self.keys.keysFor, header.kid)
        return cast("Deferred[Identity]", d.addCallback(self._verify, token, header.kid, True))

    def _verify(
        self, keys: KeySet, token: str | bytes, kid: str | None, mayRefetch: bool
    ) -> Identity | Deferred[Identity]:
        try:
            return verify(token, keys, self.rules, self.clock.seconds())
        except UnknownKey:
            again = self.keys.keysChanged(kid) if mayRefetch else None
            if again is None:
                raise
            return cast("Deferred[Identity]", again.addCallback(self._verify, token, kid, False))


def _failed(error: Exception) -> Deferred[Identity]:
    d: Deferred[Identity] = Deferred()
    d.errback(error)
    return d


def bearerToken(authorization: bytes | str | None) -> str | None:
    """
    The token of an C{Authorization: Bearer T} header value, or C{None} when it holds none.

    The scheme is case-insensitive (RFC 9110 section 11.1); anything but one token after it
    is no token.
    """
    if authorization is None:
        return None
    if isinstance(authorization, bytes):
        try:
            authorization = authorization.decode("ascii")
        except UnicodeDecodeError:
            return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


__all__ = [
    "DEFAULT_MAX_TOKEN_BYTES",
    "Authenticator",
    "Header",
    "IKeySource",
    "Identity",
    "Key",
    "KeySet",
    "RoomGrants",
    "StaticKeys",
    "TokenRules",
    "Unauthorized",
    "Unavailable",
    "UnknownKey",
    "algorithmsFor",
    "bearerToken",
    "identityOf",
    "jwkSetKeys",
    "peekHeader",
    "publicKeys",
    "secretKeys",
    "verify",
]
