"""Tests for L{portshare.api} and the plain-HTTP parts of L{portshare.web}, in memory."""

from __future__ import annotations

from typing import Any

import orjson
from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from portshare.limits import Limits
from portshare.testing import RecordingMember, startedService
from portshare.wire import Join

TOKEN = "t" * 24


class ApiMixin:
    def setUpService(self, **settings: Any) -> None:
        self.service = startedService(self, **settings)
        self.treq = StubTreq(self.service.root)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        contentType: str | None = "application/json",
        **kwargs: Any,
    ) -> tuple[int, Any]:
        """One request, with a JSON body (and its C{Content-Type}) when C{body} is given."""
        if body is not None and not isinstance(body, bytes):
            body = orjson.dumps(body)
        if body is not None and contentType is not None:
            kwargs["headers"] = {"Content-Type": contentType, **kwargs.get("headers", {})}
        d = self.treq.request(method, "http://127.0.0.1:8080" + path, data=body, **kwargs)
        self.treq.flush()
        response = self.successResultOf(d)
        content = response.content()
        self.treq.flush()
        content = self.successResultOf(content)
        self.lastResponse = response
        try:
            return response.code, orjson.loads(content)
        except orjson.JSONDecodeError:
            return response.code, content


class RoomsApiTests(ApiMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.setUpService(limits=Limits(maxText=10, maxBody=200, historyPageLimit=3))

    def test_publishAndHistory(self) -> None:
        """A POSTed message gets 201 and its offset, and history lists it oldest first."""
        for i in range(2):
            code, body = self.request(
                "POST", "/api/rooms/lobby/messages", {"nick": "api", "text": f"m{i}"}
            )
            self.assertEqual((code, body), (201, {"offset": i + 1}))
        code, body = self.request("GET", "/api/rooms/lobby/messages?since=1")
        self.assertEqual(code, 200)
        self.assertEqual(body["room"], "lobby")
        self.assertEqual([(m["offset"], m["text"]) for m in body["messages"]], [(2, "m1")])

    def test_historyLimit(self) -> None:
        """limit caps the page, and never above the server's page limit."""
        for i in range(5):
            self.request("POST", "/api/rooms/r/messages", {"nick": "n", "text": str(i)})
        _, body = self.request("GET", "/api/rooms/r/messages?since=0&limit=2")
        self.assertEqual([m["offset"] for m in body["messages"]], [1, 2])
        _, body = self.request("GET", "/api/rooms/r/messages?limit=100")
        self.assertEqual(len(body["messages"]), 3)

    def test_unknownRoomHistoryIsEmpty(self) -> None:
        """History of a room nobody used is empty, with no epoch."""
        self.assertEqual(
            self.request("GET", "/api/rooms/nobody/messages"),
            (200, {"room": "nobody", "epoch": None, "messages": []}),
        )

    def test_publishReachesWebSocketMembers(self) -> None:
        """A message POSTed over HTTP reaches the room's WebSocket members."""
        member = RecordingMember()
        session = self.service.hub.connected(member)
        self.service.hub.received(session, Join(room="lobby"))
        self.request("POST", "/api/rooms/lobby/messages", {"nick": "web", "text": "hi"})
        self.assertEqual(member.events[-1]["text"], "hi")
        self.assertEqual(member.events[-1]["nick"], "web")

    def test_roomsListing(self) -> None:
        """GET /api/rooms lists rooms with members and last offset."""
        self.request("POST", "/api/rooms/b/messages", {"nick": "n", "text": "x"})
        member = RecordingMember()
        session = self.service.hub.connected(member)
        self.service.hub.received(session, Join(room="a", nick="z"))
        self.assertEqual(
            self.request("GET", "/api/rooms"),
            (
                200,
                {
                    "rooms": [
                        {"room": "a", "members": 1, "offset": 0},
                        {"room": "b", "members": 0, "offset": 1},
                    ]
                },
            ),
        )

    def test_badInput(self) -> None:
        """Bad bodies, names and numbers get 400 with a JSON reason; long texts 413."""
        cases = [
            ("POST", "/api/rooms/r/messages", b"not json", 400, "bad_request"),
            ("POST", "/api/rooms/r/messages", [1, 2], 400, "bad_request"),
            ("POST", "/api/rooms/r/messages", {"nick": "", "text": "x"}, 400, "bad_request"),
            ("POST", "/api/rooms/r/messages", {"nick": "n", "text": "x" * 11}, 413, "too_large"),
            ("POST", "/api/rooms/r/messages", {"nick": "n", "text": "x" * 300}, 413, "too_large"),
            (
                "POST",
                "/api/rooms/bad%20room/messages",
                {"nick": "n", "text": "x"},
                400,
                "bad_request",
            ),
            ("GET", "/api/rooms/r/messages?since=-1", None, 400, "bad_request"),
            ("GET", "/api/rooms/r/messages?limit=x", None, 400, "bad_request"),
        ]
        for method, path, body, status, code in cases:
            got = self.request(method, path, body)
            self.assertEqual((got[0], got[1]["error"]), (status, code), (method, path, body))
            self.assertTrue(got[1]["reason"])

    def test_publishRateLimited(self) -> None:
        """Publishing faster than --api-rate from one address gets 429 with Retry-After."""
        self.setUpService(limits=Limits(apiRate=1, apiBurst=2))
        codes = [
            self.request("POST", "/api/rooms/r/messages", {"nick": "n", "text": "x"})
            for _ in range(3)
        ]
        self.assertEqual([c[0] for c in codes], [201, 201, 429])
        self.assertEqual(codes[2][1]["error"], "rate_limited")
        self.assertEqual(self.lastResponse.headers.getRawHeaders("retry-after"), ["1"])
        self.assertEqual(self.lastResponse.phrase, b"Too Many Requests")
        self.service.reactor.advance(1)
        self.assertEqual(
            self.request("POST", "/api/rooms/r/messages", {"nick": "n", "text": "y"})[0], 201
        )

    def test_notFoundAndMethod(self) -> None:
        """Unknown API paths are JSON 404s; wrong methods are JSON 405s with Allow."""
        self.assertEqual(self.request("GET", "/api/nothing")[1]["error"], "not_found")
        self.assertEqual(self.request("GET", "/api/rooms/r/other")[0], 404)
        code, body = self.request("DELETE", "/api/rooms/r/messages")
        self.assertEqual((code, body["error"]), (405, "method_not_allowed"))
        self.assertEqual(self.lastResponse.headers.getRawHeaders("allow"), ["GET, POST, HEAD"])
        self.assertEqual(self.request("GET", "/api")[0], 404)
        code, body = self.request("POST", "/healthz")
        self.assertEqual((code, body["error"]), (405, "method_not_allowed"))
        code, body = self.request("POST", "/")
        self.assertEqual((code, body["error"]), (405, "method_not_allowed"))

    def test_pathsBelowLeavesAreNotFound(self) -> None:
        """A path below an endpoint is a JSON 404, never the endpoint itself: nothing is
        published to, or read from, C{/api/rooms/R/messages/extra}."""
        for method, path in [
            ("POST", "/api/rooms/lobby/messages/extra"),
            ("GET", "/api/rooms/lobby/messages/extra"),
            ("GET", "/api/rooms/lobby/messages/"),
            ("POST", "/api/rooms/lobby/messages/a/b"),
            ("GET", "/api/connections/x"),
        ]:
            body = {"nick": "n", "text": "x"} if method == "POST" else None
            code, answer = self.request(method, path, body)
            self.assertEqual((code, answer["error"]), (404, "not_found"), (method, path))
        self.assertEqual(self.request("GET", "/api/rooms/lobby/messages")[1]["messages"], [])


class CrossSiteWriteTests(ApiMixin, SynchronousTestCase):
    """The attacker's side of issue 12.1: a page on another origin must not publish."""

    body = {"nick": "csrf", "text": "posted from another origin"}

    def setUp(self) -> None:
        self.setUpService(allowedOrigins=("https://*.trusted.example",))
        self.member = RecordingMember()
        session = self.service.hub.connected(self.member)
        self.service.hub.received(session, Join(room="lobby"))

    def assertNothingPublished(self) -> None:
        self.assertEqual(self.request("GET", "/api/rooms/lobby/messages")[1]["messages"], [])
        self.assertNotIn("message", [e["type"] for e in self.member.events])

    def test_noCorsFetchFromAnotherOrigin(self) -> None:
        """What C{fetch(url, {method: "POST", mode: "no-cors", body})} on another site sends
        (text/plain, Origin of that site) is refused before the body is read: 403, or 415 for
        its content type; the room sees nothing."""
        headers = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
        code, answer = self.request(
            "POST", "/api/rooms/lobby/messages", self.body, "text/plain", headers=headers
        )
        self.assertEqual((code, answer["error"]), (403, "forbidden"))
        self.assertIn("evil.example", answer["reason"])
        self.assertNothingPublished()

    def test_foreignOriginWithJsonAndToken(self) -> None:
        """A foreign origin is refused whatever it sends: JSON, and a valid API token."""
        self.setUpService(apiToken=TOKEN)
        headers = {"Origin": "http://evil.example", "Authorization": f"Bearer {TOKEN}"}
        code, answer = self.request("POST", "/api/rooms/lobby/messages", self.body, headers=headers)
        self.assertEqual((code, answer["error"]), (403, "forbidden"))

    def test_opaqueAndLookalikeOrigins(self) -> None:
        """C{Origin: null} (sandboxed frames, file: pages) and origins that only look like
        the page's own are refused."""
        for origin in [
            "null",
            "http://127.0.0.1:8081",
            "http://127.0.0.1.evil.example:8080",
            "https://trusted.example.evil",
            "not a url",
        ]:
            code, answer = self.request(
                "POST", "/api/rooms/lobby/messages", self.body, headers={"Origin": origin}
            )
            self.assertEqual((code, answer["error"]), (403, "forbidden"), origin)
        self.assertNothingPublished()

    def test_crossSiteWithoutOrigin(self) -> None:
        """A browser request without Origin but with C{Sec-Fetch-Site: cross-site} (or
        same-site: another subdomain) is refused."""
        for site in ["cross-site", "same-site", "Cross-Site"]:
            code, _ = self.request(
                "POST", "/api/rooms/lobby/messages", self.body, headers={"Sec-Fetch-Site": site}
            )
            self.assertEqual(code, 403, site)
        self.assertNothingPublished()

    def test_ownAndAllowedOrigins(self) -> None:
        """The page's own origin, an C{--allowed-origin}, and non-browser clients (no Origin,
        no Sec-Fetch-Site) may publish."""
        for headers in [
            {"Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"},
            {"Origin": "https://app.trusted.example", "Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-origin"},
            {"Sec-Fetch-Site": "none"},
            {},
        ]:
            code, _ = self.request("POST", "/api/rooms/lobby/messages", self.body, headers=headers)
            self.assertEqual(code, 201, headers)

    def test_bodyMustBeJson(self) -> None:
        """A body sent as anything but application/json is 415, with or without an Origin:
        text/plain, form encodings and no Content-Type at all (curl's -d sends a form)."""
        for contentType in [
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "application/jsonp",
            None,
        ]:
            code, answer = self.request("POST", "/api/rooms/lobby/messages", self.body, contentType)
            self.assertEqual((code, answer["error"]), (415, "unsupported_media_type"), contentType)
            self.assertIn("application/json", answer["reason"])
            self.assertEqual(self.lastResponse.phrase, b"Unsupported Media Type")
        self.assertNothingPublished()
        for contentType in ["application/json", "Application/JSON; charset=utf-8"]:
            code, _ = self.request("POST", "/api/rooms/lobby/messages", self.body, contentType)
            self.assertEqual(code, 201, contentType)

    def test_readsStayOpenAcrossOrigins(self) -> None:
        """Reading is not a write: a foreign page may GET (CORS keeps the answer from it)."""
        code, _ = self.request(
            "GET", "/api/rooms/lobby/messages", headers={"Origin": "https://evil.example"}
        )
        self.assertEqual(code, 200)


class TokenTests(ApiMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.setUpService(apiToken=TOKEN)

    def test_publishNeedsToken(self) -> None:
        """With --api-token, publishing without a token is 401, with a wrong one 403."""
        body = {"nick": "n", "text": "x"}
        self.assertEqual(self.request("POST", "/api/rooms/r/messages", body)[0], 401)
        self.assertEqual(
            self.request(
                "POST", "/api/rooms/r/messages", body, headers={"Authorization": "Bearer wrong"}
            )[1]["error"],
            "forbidden",
        )
        self.assertEqual(
            self.request(
                "POST", "/api/rooms/r/messages", body, headers={"Authorization": f"Bearer {TOKEN}"}
            )[0],
            201,
        )

    def test_connectionsNeedToken(self) -> None:
        """The connections view is guarded by the API token too."""
        self.assertEqual(self.request("GET", "/api/connections")[0], 401)
        code, body = self.request(
            "GET", "/api/connections", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        self.assertEqual(code, 200)
        self.assertEqual(set(body), {"connections", "listening"})

    def test_readingStaysOpen(self) -> None:
        """Reading rooms and history needs no token."""
        self.assertEqual(self.request("GET", "/api/rooms")[0], 200)


class PrivateRoomsTests(ApiMixin, SynchronousTestCase):
    def test_privateRoomsNeedToken(self) -> None:
        """With join tokens required, reading rooms over HTTP needs the API token."""
        self.setUpService(apiToken=TOKEN, joinSecret=b"j" * 32)
        self.assertEqual(self.request("GET", "/api/rooms")[0], 401)
        self.assertEqual(self.request("GET", "/api/rooms/r/messages")[0], 401)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        self.assertEqual(self.request("GET", "/api/rooms", headers=auth)[0], 200)

    def test_privateRoomsWithoutApiToken(self) -> None:
        """With join tokens required and no API token, HTTP reads, publishing and the
        connections view are forbidden."""
        self.setUpService(joinSecret=b"j" * 32)
        code, body = self.request("GET", "/api/rooms/r/messages")
        self.assertEqual((code, body["error"]), (403, "forbidden"))
        code, body = self.request("POST", "/api/rooms/r/messages", {"nick": "n", "text": "x"})
        self.assertEqual((code, body["error"]), (403, "forbidden"))
        self.assertEqual(self.request("GET", "/api/connections")[0], 403)


class SiteTests(ApiMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.setUpService()

    def test_healthz(self) -> None:
        """/healthz is 200 ok while serving and 503 with a reason while shutting down."""
        self.assertEqual(self.request("GET", "/healthz"), (200, {"status": "ok"}))
        self.service.stopping = True
        self.assertEqual(
            self.request("GET", "/healthz"),
            (503, {"status": "unavailable", "reason": "shutting down"}),
        )

    def test_metrics(self) -> None:
        """/metrics is Prometheus text with the service's counters."""
        self.request("POST", "/api/rooms/r/messages", {"nick": "n", "text": "x"})
        code, body = self.request("GET", "/metrics")
        self.assertEqual(code, 200)
        self.assertIn(b"portshare_messages_in_total 1.0", body)
        self.assertIn(b'portshare_connections{protocol="websocket"} 0.0', body)

    def test_noDirectoryListing(self) -> None:
        """Directories under the static root are not listed."""
        self.setUpService(staticDir=self.mktempDir())
        self.assertEqual(self.request("GET", "/sub/")[0], 404)

    def test_staticCannotEscape(self) -> None:
        """Encoded dot segments do not escape the static directory."""
        self.assertEqual(self.request("GET", "/%2e%2e/%2e%2e/etc/passwd")[0], 404)

    def mktempDir(self) -> Any:
        from pathlib import Path

        path = Path(self.mktemp())
        (path / "sub").mkdir(parents=True)
        (path / "index.html").write_text("<p>mine</p>")
        return path
