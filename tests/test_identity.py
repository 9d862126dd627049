"""
Tests for L{portshare.identity}: keys, token verification, claims and grants, mostly from the
attacker's side (a forged, stale, oversized or confused token, and the refusal it gets).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from portshare import errors
from portshare.identity import (
    DEFAULT_MAX_TOKEN_BYTES,
    HMAC_ALGORITHMS,
    RSA_ALGORITHMS,
    Authenticator,
    IKeySource,
    KeySet,
    RoomGrants,
    StaticKeys,
    TokenRules,
    Unauthorized,
    UnknownKey,
    algorithmsFor,
    bearerToken,
    jwkSetKeys,
    peekHeader,
    publicKeys,
    secretKeys,
    verify,
)

NOW = 1_800_000_000.0
SECRET = b"s" * 36 + b"-a-secret-of-the-application"  # 64 bytes
RSA_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PEM = RSA_PRIVATE.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
EC_PRIVATE = ec.generate_private_key(ec.SECP256R1())
EC_PEM = EC_PRIVATE.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
ED_PRIVATE = ed25519.Ed25519PrivateKey.generate()
ED_PEM = ED_PRIVATE.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def claims(**overrides: Any) -> dict[str, Any]:
    """Claims of a good token at L{NOW}, with C{overrides} (C{None} drops the claim)."""
    base: dict[str, Any] = {"sub": "user-42", "exp": int(NOW) + 600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict[str, Any], secret: bytes = SECRET, **headers: Any) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers or None)


def handMade(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A token built by hand (as an attacker does), HMAC-SHA256-signed with C{key}."""
    signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = b"" if key is None else hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64(signature)}"


RULES = TokenRules()


class RefusalMixin:
    def assertRefused(self, token: str | bytes, keys: KeySet, rules: TokenRules = RULES) -> str:
        """C{token} is refused with L{Unauthorized}; return its reason."""
        with self.assertRaises(Unauthorized) as caught:  # type: ignore[attr-defined]
            verify(token, keys, rules, NOW)
        error = caught.exception
        self.assertEqual(  # type: ignore[attr-defined]
            (error.code, error.httpStatus), ("unauthorized", 401)
        )
        return error.reason


class SecretTests(RefusalMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.keys = secretKeys(SECRET + b"\n")

    def test_goodToken(self) -> None:
        """A token signed with the secret names its user, nick and expiry."""
        identity = verify(hs256(claims(name="Ada")), self.keys, RULES, NOW)
        self.assertEqual(
            (identity.user, identity.nick, identity.expires), ("user-42", "Ada", NOW + 600)
        )
        self.assertTrue(identity.mayJoin("anything") and identity.mayPublish("anything"))

    def test_everyHmacAlgorithm(self) -> None:
        """HS256, HS384 and HS512 are accepted with a secret; nothing else is."""
        for alg in HMAC_ALGORITHMS:
            token = jwt.encode(claims(), SECRET, algorithm=alg)
            self.assertEqual(verify(token, self.keys, RULES, NOW).user, "user-42")
        self.assertEqual(self.keys.keys[0].algorithms, HMAC_ALGORITHMS)

    def test_shortSecretsKeepFewerAlgorithms(self) -> None:
        """A 32-byte secret verifies HS256 only: HS512 needs 64 bytes of key."""
        keys = secretKeys(SECRET[:32])
        self.assertEqual(keys.keys[0].algorithms, ("HS256",))
        self.assertEqual(secretKeys(SECRET[:48]).keys[0].algorithms, ("HS256", "HS384"))
        token = handMade({"alg": "HS256"}, claims(), SECRET[:32])
        self.assertEqual(verify(token, keys, RULES, NOW).user, "user-42")

    def test_trailingNewlineDropped(self) -> None:
        """The secret file's trailing newline is not part of the secret."""
        self.assertEqual(self.keys.keys[0].material, SECRET)

    def test_shortSecretRefused(self) -> None:
        """A secret shorter than 32 bytes is a configuration error."""
        self.assertRaises(ValueError, secretKeys, b"x" * 31)

    def test_publicKeyAsSecretRefused(self) -> None:
        """A PEM public key given as the secret is refused: it would let anyone sign."""
        self.assertRaises(ValueError, secretKeys, RSA_PEM)
        self.assertRaises(ValueError, secretKeys, b'{"kty": "RSA", "n": "' + b"x" * 40 + b'"}')

    def test_expired(self) -> None:
        """A token whose exp has passed is refused as expired."""
        reason = self.assertRefused(hs256(claims(exp=int(NOW) - 1)), self.keys)
        self.assertIn("expired", reason)

    def test_expiredAtExactlyExp(self) -> None:
        """A token is expired at its exp second itself."""
        self.assertIn("expired", self.assertRefused(hs256(claims(exp=int(NOW))), self.keys))

    def test_leeway(self) -> None:
        """Within the leeway an expired token still passes; past it, not."""
        rules = TokenRules(leeway=30)
        token = hs256(claims(exp=int(NOW) - 29))
        self.assertEqual(verify(token, self.keys, rules, NOW).user, "user-42")
        self.assertIn(
            "expired", self.assertRefused(hs256(claims(exp=int(NOW) - 30)), self.keys, rules)
        )
        self.assertEqual(rules.deadline(verify(token, self.keys, rules, NOW)), NOW - 29 + 30)

    def test_notYetValid(self) -> None:
        """A token whose nbf is in the future is refused."""
        reason = self.assertRefused(hs256(claims(nbf=int(NOW) + 60)), self.keys)
        self.assertIn("not valid yet", reason)
        self.assertEqual(verify(hs256(claims(nbf=int(NOW))), self.keys, RULES, NOW).user, "user-42")

    def test_issuedInTheFuture(self) -> None:
        """A token issued (iat) after now, beyond the leeway, is refused."""
        self.assertIn("future", self.assertRefused(hs256(claims(iat=int(NOW) + 60)), self.keys))

    def test_wrongAudience(self) -> None:
        """With an audience configured, a token for another audience, or none, is refused."""
        rules = TokenRules(audience="portshare")
        self.assertIn("aud", self.assertRefused(hs256(claims(aud="other")), self.keys, rules))
        self.assertRefused(hs256(claims()), self.keys, rules)
        token = hs256(claims(aud=["other", "portshare"]))
        self.assertEqual(verify(token, self.keys, rules, NOW).user, "user-42")

    def test_audienceWhereNoneConfigured(self) -> None:
        """Without an audience configured, a token meant for some audience is refused."""
        self.assertIn("aud", self.assertRefused(hs256(claims(aud="billing")), self.keys))

    def test_wrongIssuer(self) -> None:
        """With an issuer configured, another issuer, a prefix of it, or none is refused."""
        rules = TokenRules(issuer="https://app.example")
        for iss in ("https://evil.example", "https://app.exampl", None):
            self.assertRefused(hs256(claims(iss=iss)), self.keys, rules)
        token = hs256(claims(iss="https://app.example"))
        self.assertEqual(verify(token, self.keys, rules, NOW).user, "user-42")

    def test_algNone(self) -> None:
        """An unsigned token (alg none), in any spelling, is refused."""
        for alg in ("none", "None", "NONE", "nOnE"):
            token = handMade({"alg": alg, "typ": "JWT"}, claims(), None)
            self.assertIn("algorithm", self.assertRefused(token, self.keys))

    def test_tamperedPayload(self) -> None:
        """A payload changed after signing (another sub) fails the signature."""
        header, _, signature = hs256(claims()).split(".")
        forged = f"{header}.{b64(json.dumps(claims(sub='admin')).encode())}.{signature}"
        self.assertIn("signature", self.assertRefused(forged, self.keys))

    def test_tamperedSignature(self) -> None:
        """A signature with one character changed is refused."""
        token = hs256(claims())
        last = "A" if token[-2] != "A" else "B"
        self.assertIn("signature", self.assertRefused(token[:-2] + last + token[-1], self.keys))

    def test_otherSecret(self) -> None:
        """A token signed with another secret is refused."""
        token = hs256(claims(), secret=b"o" * 40)
        self.assertIn("signature", self.assertRefused(token, self.keys))

    def test_oversized(self) -> None:
        """A token over the size limit is refused before it is parsed (even as garbage)."""
        rules = TokenRules(maxTokenBytes=512)
        big = hs256(claims(pad="x" * 600))
        self.assertIn("longer", self.assertRefused(big, self.keys, rules))
        self.assertIn("longer", self.assertRefused("%" * 600, self.keys, rules))
        self.assertIn("longer", self.assertRefused(b"." * 600, self.keys, rules))
        self.assertEqual(DEFAULT_MAX_TOKEN_BYTES, 8192)

    def test_missingSub(self) -> None:
        """A token without sub is refused."""
        self.assertIn("sub", self.assertRefused(hs256(claims(sub=None)), self.keys))

    def test_missingExp(self) -> None:
        """A token without exp is refused: portshare has no tokens that never expire."""
        self.assertIn("exp", self.assertRefused(hs256(claims(exp=None)), self.keys))

    def test_badClaimTypes(self) -> None:
        """Claims of the wrong type or out of bounds are refused, each with its name."""
        cases = {
            "sub": [42, "", " ", "a\nb", "x" * 257, ["user"], None],
            "exp": ["1900000000", True, [1], {"n": 1}],
            "nbf": ["0", False],
            "name": ["", "x" * 33, "a\u0000b", 7],
            "rooms": ["lobby", [1], ["bad room"], ["a*b"], ["..."[:2]], [{"r": 1}]],
            "publish": ["lobby", ["*x"], ["x" * 65]],
        }
        for name, values in cases.items():
            for value in values:
                payload = claims()
                payload[name] = value
                if value is None:
                    del payload[name]
                with self.subTest(claim=name, value=value):
                    reason = self.assertRefused(hs256(payload), self.keys)
                    self.assertIn(name, reason)

    def test_tooManyGrants(self) -> None:
        """A rooms claim longer than the limit is refused."""
        rules = TokenRules(maxGrants=3)
        token = hs256(claims(rooms=["a", "b", "c", "d"]))
        self.assertIn("more than 3", self.assertRefused(token, self.keys, rules))

    def test_defaultNick(self) -> None:
        """Without a name claim, the nick is the user id cut to 32 characters."""
        identity = verify(hs256(claims(sub="u" * 100)), self.keys, RULES, NOW)
        self.assertEqual((identity.nick, identity.user), ("u" * 32, "u" * 100))

    def test_notAJwt(self) -> None:
        """Garbage, two segments, bad base64 or a non-object header is refused as such."""
        for token in ["", "abc", "a.b", "a.b.c.d", "!!.b.c", f"{b64(b'[1]')}.e30.x", "é.a.b"]:
            with self.subTest(token=token):
                self.assertRefused(token, self.keys)

    def test_critHeader(self) -> None:
        """A token using crit (an extension) or b64 is refused."""
        token = hs256(claims(), crit=["exp"], exp=1)
        self.assertIn("extension", self.assertRefused(token, self.keys))

    @given(st.text(max_size=300) | st.binary(max_size=300))
    def test_anyInputIsRefusedCleanly(self, token: str | bytes) -> None:
        """Whatever is sent as a token, the answer is Unauthorized, never another exception."""
        self.assertRefused(token, self.keys)

    @given(st.integers(min_value=0, max_value=10_000))
    def test_expiryBoundary(self, offset: int) -> None:
        """A token is valid exactly while now < exp + leeway."""
        rules = TokenRules(leeway=5)
        token = hs256(claims(exp=int(NOW) + offset - 5_000))
        if int(NOW) + offset - 5_000 + 5 > NOW:
            self.assertEqual(verify(token, self.keys, rules, NOW).user, "user-42")
        else:
            self.assertRefused(token, self.keys, rules)


class PublicKeyTests(RefusalMixin, SynchronousTestCase):
    def test_rsa(self) -> None:
        """An RSA public key verifies RS256 and PS256 tokens signed by its private half."""
        keys = publicKeys(RSA_PEM)
        self.assertEqual(keys.keys[0].algorithms, RSA_ALGORITHMS)
        for alg in ("RS256", "PS512"):
            token = jwt.encode(claims(), RSA_PRIVATE, algorithm=alg)
            self.assertEqual(verify(token, keys, RULES, NOW).user, "user-42")

    def test_ec(self) -> None:
        """A P-256 key verifies ES256 only (the curve fixes the algorithm)."""
        keys = publicKeys(EC_PEM)
        self.assertEqual(keys.keys[0].algorithms, ("ES256",))
        token = jwt.encode(claims(), EC_PRIVATE, algorithm="ES256")
        self.assertEqual(verify(token, keys, RULES, NOW).user, "user-42")
        # ES384 over a P-256 key: refused before any signature check
        header = {"alg": "ES384", "typ": "JWT"}
        self.assertIn("algorithm", self.assertRefused(handMade(header, claims(), b"k"), keys))

    def test_ed25519(self) -> None:
        """An Ed25519 key verifies EdDSA tokens."""
        keys = publicKeys(ED_PEM)
        token = jwt.encode(claims(), ED_PRIVATE, algorithm="EdDSA")
        self.assertEqual(verify(token, keys, RULES, NOW).user, "user-42")

    def test_keyConfusion(self) -> None:
        """
        An HS256 token whose HMAC key is the server's RSA public key PEM (the public key is
        public: an attacker has it) is refused.
        """
        keys = publicKeys(RSA_PEM)
        for pem in (RSA_PEM, RSA_PEM.strip()):
            token = handMade({"alg": "HS256", "typ": "JWT"}, claims(sub="admin"), pem)
            self.assertIn("algorithm", self.assertRefused(token, keys))

    def test_keyConfusionEvenIfAlgListWidened(self) -> None:
        """Were HS256 listed for the RSA key, PyJWT itself would still not use the key for HMAC."""
        keys = publicKeys(RSA_PEM)
        widened = KeySet((type(keys.keys[0])(keys.keys[0].material, ("HS256",)),))
        token = handMade({"alg": "HS256", "typ": "JWT"}, claims(sub="admin"), RSA_PEM)
        self.assertRefused(token, widened)

    def test_rsaTokenAgainstSecret(self) -> None:
        """An RS256 token is refused by a server configured with a secret."""
        token = jwt.encode(claims(), RSA_PRIVATE, algorithm="RS256")
        self.assertIn("algorithm", self.assertRefused(token, secretKeys(SECRET)))

    def test_otherKeysSignature(self) -> None:
        """A token signed by another RSA key is refused."""
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = jwt.encode(claims(), other, algorithm="RS256")
        self.assertIn("signature", self.assertRefused(token, publicKeys(RSA_PEM)))

    def test_privateOrGarbagePemRefused(self) -> None:
        """A private key, garbage, or a weak RSA key is not a usable public key file."""
        private = RSA_PRIVATE.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.assertRaises(ValueError, publicKeys, private)
        self.assertRaises(ValueError, publicKeys, b"hello")
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
        self.assertRaises(ValueError, algorithmsFor, weak)
        self.assertRaises(ValueError, algorithmsFor, "a string")


def jwk(private: Any, kid: str | None, **extra: Any) -> dict[str, Any]:
    """The public JWK of C{private}."""
    public = private.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
    elif isinstance(public, ec.EllipticCurvePublicKey):
        data = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
    else:
        data = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(public))
    if kid is not None:
        data["kid"] = kid
    data.update(extra)
    return data


class JwkSetTests(RefusalMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.keys = jwkSetKeys(
            {
                "keys": [
                    jwk(RSA_PRIVATE, "rsa-1"),
                    jwk(EC_PRIVATE, "ec-1", alg="ES256"),
                    jwk(ED_PRIVATE, "ed-1"),
                ]
            }
        )

    def test_kidSelectsTheKey(self) -> None:
        """Each key verifies the tokens that name its kid."""
        for private, alg, kid in [
            (RSA_PRIVATE, "RS256", "rsa-1"),
            (EC_PRIVATE, "ES256", "ec-1"),
            (ED_PRIVATE, "EdDSA", "ed-1"),
        ]:
            token = jwt.encode(claims(), private, algorithm=alg, headers={"kid": kid})
            self.assertEqual(verify(token, self.keys, RULES, NOW).user, "user-42")
        self.assertEqual(self.keys.kids(), {"rsa-1", "ec-1", "ed-1"})

    def test_unknownKid(self) -> None:
        """A kid the set does not hold is refused as UnknownKey (so the set may be refetched)."""
        token = jwt.encode(claims(), RSA_PRIVATE, algorithm="RS256", headers={"kid": "rsa-2"})
        with self.assertRaises(UnknownKey) as caught:
            verify(token, self.keys, RULES, NOW)
        self.assertEqual(caught.exception.code, "unauthorized")

    def test_noKidWithSeveralKeys(self) -> None:
        """A token without kid is refused when the set holds several keys."""
        token = jwt.encode(claims(), RSA_PRIVATE, algorithm="RS256")
        self.assertRaises(UnknownKey, verify, token, self.keys, RULES, NOW)

    def test_wrongKeyForKid(self) -> None:
        """A token signed by the RSA key but naming the EC key's kid is refused."""
        token = jwt.encode(claims(), RSA_PRIVATE, algorithm="RS256", headers={"kid": "ec-1"})
        self.assertIn("algorithm", self.assertRefused(token, self.keys))

    def test_hmacTokenWithPublicJwkAsSecret(self) -> None:
        """HS256 signed with the published JWK's JSON as the secret is refused."""
        secret = json.dumps(jwk(RSA_PRIVATE, "rsa-1")).encode()
        token = handMade({"alg": "HS256", "kid": "rsa-1"}, claims(), secret)
        self.assertIn("algorithm", self.assertRefused(token, self.keys))

    def test_skippedKeys(self) -> None:
        """Symmetric, encryption-only and non-verify keys, and mismatched algs, are skipped."""
        oct_key = {"kty": "oct", "k": b64(SECRET), "kid": "oct"}
        keys = jwkSetKeys(
            {
                "keys": [
                    oct_key,
                    jwk(RSA_PRIVATE, "enc", use="enc"),
                    jwk(RSA_PRIVATE, "ops", key_ops=["encrypt"]),
                    jwk(RSA_PRIVATE, "mismatch", alg="ES256"),
                    jwk(RSA_PRIVATE, "narrow", alg="PS256"),
                    "not a key",
                    {"kty": "RSA", "kid": "broken"},
                ]
            }
        )
        self.assertEqual(keys.kids(), {"narrow"})
        self.assertEqual(keys.keys[0].algorithms, ("PS256",))
        token = handMade({"alg": "HS256", "kid": "oct"}, claims(), SECRET)
        self.assertRaises(UnknownKey, verify, token, keys, RULES, NOW)
        rs = jwt.encode(claims(), RSA_PRIVATE, algorithm="RS256", headers={"kid": "narrow"})
        self.assertIn("algorithm", self.assertRefused(rs, keys))

    def test_privateJwkKeepsOnlyThePublicHalf(self) -> None:
        """A JWK with its private part still yields a public key."""
        data = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(EC_PRIVATE))
        keys = jwkSetKeys({"keys": [data]})
        self.assertIsInstance(keys.keys[0].material, ec.EllipticCurvePublicKey)

    def test_notAJwks(self) -> None:
        """A document without a keys list, or without a usable key, is refused."""
        for document in ({}, {"keys": "x"}, [], {"keys": []}, {"keys": [{"kty": "oct"}]}):
            self.assertRaises(ValueError, jwkSetKeys, document)


class GrantTests(RefusalMixin, SynchronousTestCase):
    def identity(self, **grants: Any):  # type: ignore[no-untyped-def]
        return verify(hs256(claims(**grants)), secretKeys(SECRET), RULES, NOW)

    def test_prefixGrants(self) -> None:
        """A prefix grant admits the rooms it starts, and no others; names are exact."""
        identity = self.identity(rooms=["team-*", "lobby"], publish=["team-a"])
        self.assertTrue(identity.mayJoin("team-a"))
        self.assertTrue(identity.mayJoin("team-"))
        self.assertTrue(identity.mayJoin("lobby"))
        self.assertFalse(identity.mayJoin("lobby2"))
        self.assertFalse(identity.mayJoin("teams"))
        self.assertTrue(identity.mayPublish("team-a"))
        self.assertFalse(identity.mayPublish("team-b"))

    def test_emptyGrantsAdmitNothing(self) -> None:
        """An empty list grants no room (unlike an absent claim)."""
        identity = self.identity(rooms=[], publish=[])
        self.assertFalse(identity.mayJoin("lobby") or identity.mayPublish("lobby"))

    def test_starGrantsAll(self) -> None:
        """C{*} alone grants every room."""
        self.assertTrue(self.identity(rooms=["*"]).mayJoin("anything"))

    @given(
        st.from_regex(r"[A-Za-z0-9._-]{0,10}", fullmatch=True),
        st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True),
    )
    def test_prefixMatchesExactlyStartswith(self, prefix: str, room: str) -> None:
        """A prefix grant allows a room exactly when the room starts with the prefix."""
        grants = RoomGrants.parse("rooms", [prefix + "*"], 10)
        self.assertEqual(grants.allows(room), room.startswith(prefix))


class HeaderTests(SynchronousTestCase):
    def test_peek(self) -> None:
        """The header's alg and kid are read without a key."""
        header = peekHeader(hs256(claims(), kid="k1"))
        self.assertEqual((header.alg, header.kid), ("HS256", "k1"))

    def test_badKid(self) -> None:
        """A kid that is not a short string is refused."""
        for kid in (1, "", "k" * 257, ["k"]):
            token = handMade({"alg": "HS256", "kid": kid}, claims(), SECRET)
            self.assertRaises(Unauthorized, peekHeader, token)

    def test_bearer(self) -> None:
        """Only 'Bearer TOKEN' (any case) yields a token."""
        self.assertEqual(bearerToken(b"Bearer abc.def.ghi"), "abc.def.ghi")
        self.assertEqual(bearerToken("bearer  abc"), "abc")
        for value in (None, b"Basic abc", "Bearer", "Bearer a b", b"Bearer \xff", "Bearerabc"):
            self.assertIsNone(bearerToken(value))


@implementer(IKeySource)
class RotatingKeys:
    """A key source that holds an old set and hands out a new one when asked again."""

    def __init__(self, old: KeySet, new: KeySet | None) -> None:
        self.old = old
        self.new = new
        self.asked: list[str | None] = []

    def keysFor(self, kid: str | None) -> Deferred[KeySet]:
        return succeed(self.old)

    def keysChanged(self, kid: str | None) -> Deferred[KeySet] | None:
        self.asked.append(kid)
        return None if self.new is None else succeed(self.new)


class AuthenticatorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)

    def test_staticKeys(self) -> None:
        """With a file's key, a good token yields its identity at once."""
        source = StaticKeys(secretKeys(SECRET))
        verifyObject(IKeySource, source)
        auth = Authenticator(source, RULES, self.clock)
        identity = self.successResultOf(auth.authenticate(hs256(claims())))
        self.assertEqual(identity.user, "user-42")

    def test_usesTheInjectedClock(self) -> None:
        """Expiry is judged by the clock given, not the wall clock."""
        auth = Authenticator(StaticKeys(secretKeys(SECRET)), RULES, self.clock)
        token = hs256(claims(exp=int(NOW) + 10))
        self.successResultOf(auth.authenticate(token))
        self.clock.advance(10)
        failure = self.failureResultOf(auth.authenticate(token), Unauthorized)
        self.assertIn("expired", failure.value.reason)

    def test_refusedBeforeKeys(self) -> None:
        """An oversized token fails without the key source being asked."""
        source = RotatingKeys(secretKeys(SECRET), None)
        auth = Authenticator(source, TokenRules(maxTokenBytes=100), self.clock)
        self.failureResultOf(auth.authenticate("x" * 101), Unauthorized)
        self.assertEqual(source.asked, [])

    def test_unknownKidAsksOnceMore(self) -> None:
        """An unknown kid makes the source look again, once; the new set verifies the token."""
        old = jwkSetKeys({"keys": [jwk(EC_PRIVATE, "old")]})
        new = jwkSetKeys({"keys": [jwk(RSA_PRIVATE, "new")]})
        source = RotatingKeys(old, new)
        auth = Authenticator(source, RULES, self.clock)
        token = jwt.encode(claims(), RSA_PRIVATE, algorithm="RS256", headers={"kid": "new"})
        self.assertEqual(self.successResultOf(auth.authenticate(token)).user, "user-42")
        stranger = jwt.encode(claims(), RSA_PRIVATE, algorithm="RS256", headers={"kid": "x"})
        self.failureResultOf(auth.authenticate(stranger), UnknownKey)
        self.assertEqual(source.asked, ["new", "x"])

    def test_unavailableKeys(self) -> None:
        """A source that cannot have keys makes authentication fail with unavailable."""

        @implementer(IKeySource)
        class Down:
            def keysFor(self, kid: str | None) -> Deferred[KeySet]:
                d: Deferred[KeySet] = Deferred()
                d.errback(errors.Unavailable("the JWKS could not be fetched"))
                return d

            def keysChanged(self, kid: str | None) -> Deferred[KeySet] | None:
                return None

        auth = Authenticator(Down(), RULES, self.clock)
        failure = self.failureResultOf(auth.authenticate(hs256(claims())), errors.Unavailable)
        self.assertEqual(failure.value.httpStatus, 503)
