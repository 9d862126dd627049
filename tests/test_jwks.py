"""
Tests for L{portshare.jwks}: the key set of C{--jwks-url}, fetched through an in-memory HTTP
server (C{treq.testing.StubTreq}) on a L{Clock}; one test against a real loopback server.
"""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
import pytest_twisted
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface.verify import verifyObject

from portshare.errors import Unauthorized, Unavailable
from portshare.identity import Authenticator, IKeySource, KeySet, TokenRules, UnknownKey
from portshare.jwks import JWKSKeys
from portshare.metrics import Metrics

URL = "http://idp.test/.well-known/jwks.json"
NOW = 1_800_000_000.0
KEY_A = ec.generate_private_key(ec.SECP256R1())
KEY_B = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def publicJwk(private: Any, kid: str) -> dict[str, Any]:
    public = private.public_key()
    algorithm = (
        jwt.algorithms.ECAlgorithm
        if isinstance(public, ec.EllipticCurvePublicKey)
        else jwt.algorithms.RSAAlgorithm
    )
    data = json.loads(algorithm.to_jwk(public))
    data["kid"] = kid
    return data


def jwksBody(*keys: tuple[Any, str]) -> bytes:
    return json.dumps({"keys": [publicJwk(k, kid) for k, kid in keys]}).encode()


def token(private: Any, kid: str, **claims: Any) -> str:
    alg = "ES256" if isinstance(private, ec.EllipticCurvePrivateKey) else "RS256"
    payload = {"sub": "u1", "exp": int(NOW) + 600, **claims}
    return jwt.encode(payload, private, algorithm=alg, headers={"kid": kid})


class IdentityProvider(Resource):
    """An in-memory JWKS endpoint whose answer a test sets, and which counts its requests."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.body = jwksBody((KEY_A, "a"))
        self.code = 200
        self.headers: dict[bytes, bytes] = {b"content-type": b"application/json"}
        self.chunked = False
        self.hang = False
        self.requests = 0
        self.pending: list[Request] = []

    def render_GET(self, request: Request) -> bytes | int:
        self.requests += 1
        request.setResponseCode(self.code)
        for name, value in self.headers.items():
            request.setHeader(name, value)
        if self.hang:
            self.pending.append(request)
            return NOT_DONE_YET
        if self.chunked:  # no Content-Length: the body's size is known only as it comes
            request.write(self.body)
            request.finish()
            return NOT_DONE_YET
        return self.body


class JWKSKeysTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.idp = IdentityProvider()
        self.http = StubTreq(self.idp)
        self.metrics = Metrics()
        self.keys = JWKSKeys(
            URL,
            clock=self.clock,
            http=self.http,  # type: ignore[arg-type]
            timeout=5,
            refetchInterval=60,
            maxAge=3600,
            maxBytes=16 * 1024,
            metrics=self.metrics,
        )
        self.auth = Authenticator(self.keys, TokenRules(), self.clock)

    def fetched(self, d: Deferred[Any]) -> Any:
        self.http.flush()
        return self.successResultOf(d)

    def count(self, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "portshare_jwks_fetches_total", {"outcome": outcome}
        )
        return value or 0.0

    def test_interface(self) -> None:
        """JWKSKeys is an IKeySource."""
        verifyObject(IKeySource, self.keys)

    def test_firstTokenFetchesThenCached(self) -> None:
        """The first token fetches the set; later ones use the cache (one request in all)."""
        identity = self.fetched(self.auth.authenticate(token(KEY_A, "a")))
        self.assertEqual(identity.user, "u1")
        for _ in range(5):
            self.successResultOf(self.auth.authenticate(token(KEY_A, "a")))
        self.assertEqual((self.idp.requests, self.count("ok")), (1, 1))

    def test_rotatedKeyRefetched(self) -> None:
        """A token naming a new kid fetches the set again, and the new key verifies it."""
        self.fetched(self.keys.refresh())
        self.idp.body = jwksBody((KEY_A, "a"), (KEY_B, "b"))
        self.clock.advance(61)
        identity = self.fetched(self.auth.authenticate(token(KEY_B, "b")))
        self.assertEqual(identity.user, "u1")
        self.assertEqual(self.idp.requests, 2)

    def test_unknownKidFloodFetchesOncePerInterval(self) -> None:
        """A hundred tokens with made-up kids within one interval cost one fetch, not 100."""
        self.fetched(self.keys.refresh())
        self.clock.advance(61)
        results = []
        for i in range(100):
            d = self.auth.authenticate(token(KEY_B, f"forged-{i}"))
            self.http.flush()
            results.append(self.failureResultOf(d, UnknownKey))
        self.assertEqual(self.idp.requests, 2)
        self.assertEqual(len(results), 100)
        self.clock.advance(60)
        self.http.flush()
        self.failureResultOf(self.auth.authenticate(token(KEY_B, "forged-x")), Unauthorized)
        self.http.flush()
        self.assertEqual(self.idp.requests, 3)

    def test_timeout(self) -> None:
        """A JWKS server that never answers fails the handshake after the timeout, not later."""
        self.idp.hang = True
        d = self.auth.authenticate(token(KEY_A, "a"))
        self.http.flush()
        self.assertNoResult(d)
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        failure = self.failureResultOf(d, Unavailable)
        self.assertIn("no answer within 5 s", failure.value.reason)
        self.assertEqual(self.count("failed"), 1)

    def test_slowServerKeepsCachedSet(self) -> None:
        """When a refetch times out, tokens of known keys keep passing at once."""
        self.fetched(self.keys.refresh())
        self.idp.hang = True
        self.clock.advance(61)
        pending = self.auth.authenticate(token(KEY_B, "b"))
        self.http.flush()
        # meanwhile a token of the known key is verified from the cache, not held up
        self.assertEqual(self.successResultOf(self.auth.authenticate(token(KEY_A, "a"))).user, "u1")
        self.clock.advance(5)
        self.failureResultOf(pending, UnknownKey)
        self.assertIsNotNone(self.keys.keys)

    def test_noKeysNoFetchWithinInterval(self) -> None:
        """After a failed first fetch, tokens fail at once until the interval has passed."""
        self.idp.code = 500
        self.failureResultOf(
            self.fetchedLater(self.auth.authenticate(token(KEY_A, "a"))), Unavailable
        )
        failure = self.failureResultOf(self.auth.authenticate(token(KEY_A, "a")), Unavailable)
        self.assertIn("HTTP 500", failure.value.reason)
        self.assertEqual(self.idp.requests, 1)
        self.idp.code = 200
        self.clock.advance(60)
        self.assertEqual(self.fetched(self.auth.authenticate(token(KEY_A, "a"))).user, "u1")

    def fetchedLater(self, d: Deferred[Any]) -> Deferred[Any]:
        self.http.flush()
        return d

    def test_hostileAnswers(self) -> None:
        """Non-200, redirect, bad JSON, no key, oversized (announced or chunked): all refused."""
        cases: list[dict[str, Any]] = [
            {"code": 404},
            {"code": 302, "headers": {b"location": b"http://evil.test/jwks"}},
            {"body": b"<html>login</html>"},
            {"body": b'{"keys": []}'},
            {"body": b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'},
            {"body": b" " * (16 * 1024 + 1)},
            {"body": jwksBody((KEY_A, "a")) + b" " * (16 * 1024), "chunked": True},
        ]
        for case in cases:
            with self.subTest(case={k: v for k, v in case.items() if k != "body"}):
                self.setUp()
                for name, value in case.items():
                    setattr(self.idp, name, value)
                d = self.auth.authenticate(token(KEY_A, "a"))
                self.http.flush()
                self.failureResultOf(d, Unavailable)
                self.assertIsNone(self.keys.keys)
                self.assertEqual(self.idp.requests, 1)

    def test_staleRefreshedInBackground(self) -> None:
        """A set older than maxAge is used at once while a refresh runs."""
        self.fetched(self.keys.refresh())
        self.clock.advance(3600)
        self.idp.hang = True
        d = self.auth.authenticate(token(KEY_A, "a", exp=int(NOW) + 7200))
        self.assertEqual(self.successResultOf(d).user, "u1")
        self.http.flush()
        self.assertEqual(self.idp.requests, 2)

    def test_cancelledWaiterLeavesTheFetch(self) -> None:
        """A handshake that gives up does not cancel the fetch another one waits for."""
        self.idp.hang = True
        first = self.keys.keysFor("a")
        second = self.keys.keysFor("a")
        self.http.flush()
        first.cancel()
        self.failureResultOf(first)
        self.assertNoResult(second)
        request = self.idp.pending[0]
        request.write(jwksBody((KEY_A, "a")))
        request.finish()
        self.http.flush()
        self.assertIsInstance(self.successResultOf(second), KeySet)

    def test_badSettings(self) -> None:
        """Non-positive timeouts or sizes are refused."""
        with self.assertRaises(ValueError):
            JWKSKeys(URL, clock=self.clock, http=self.http, timeout=0)  # type: ignore[arg-type]


class _StaticJWKS(Resource):
    """A JWKS endpoint on a real socket, counting its requests."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.body = jwksBody((KEY_A, "a"))
        self.requests = 0

    def render_GET(self, request: Request) -> bytes:
        self.requests += 1
        request.setHeader(b"content-type", b"application/json")
        return self.body


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_realLoopbackServer() -> None:
    """Against a real HTTP server on loopback, a token's key is fetched and verifies it."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from portshare.httpclient import newHTTPClient

    resource = _StaticJWKS()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Site(resource, reactor=reactor)
    )
    client, pool = newHTTPClient(reactor, maxPerHost=1)
    try:
        url = f"http://127.0.0.1:{port.getHost().port}/jwks.json"
        keys = JWKSKeys(url, clock=reactor, http=client, timeout=5)  # type: ignore[arg-type]
        auth = Authenticator(keys, TokenRules(), reactor)  # type: ignore[arg-type]
        good = token(KEY_A, "a", exp=int(reactor.seconds()) + 600)  # type: ignore[attr-defined]
        identity = await auth.authenticate(good)
        assert identity.user == "u1"
        assert resource.requests == 1
        with pytest.raises(UnknownKey):
            await auth.authenticate(token(KEY_A, "z", exp=int(reactor.seconds()) + 600))  # type: ignore[attr-defined]
        assert resource.requests == 1  # fetched a moment ago: not again
    finally:
        await pool.closeCachedConnections()
        await port.stopListening()
