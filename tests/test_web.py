"""
Tests for L{portshare.web}: the one tree, with and without an application mounted beside the
chat (issue 14), driven in memory through the real tracker, site and resources.  The WSGI
applications are real (Flask, Django) and run at once in the test's thread
(L{SynchronousThreads}); the klein and twisted.web ones are real resources.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import IResource

from portshare.apps import ResourceApp, WsgiApp
from portshare.limits import Limits
from portshare.service import PortshareService, Settings
from portshare.sse import SseResource
from portshare.staticfiles import StaticFiles
from portshare.status import HealthResource, MetricsResource
from portshare.testing import MemoryConnection, SynchronousThreads, startedService
from portshare.upgrade import UpgradeDispatcher
from portshare.web import AppFallback, ChatRoot, chatPrefixSegments
from tests.apps import djangoapp, flaskapp, kleinapp, resourceapp
from tests.httpresponses import dechunk


def get(
    c: MemoryConnection, path: str, headers: bytes = b""
) -> tuple[int, dict[bytes, bytes], bytes]:
    """GET C{path} on C{c}; @return: status, headers (lower-case names), body (dechunked)."""
    c.send(b"GET %s HTTP/1.1\r\nHost: app.example\r\n%s\r\n" % (path.encode(), headers))
    return parse(c.read())


def parse(raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    top, _, body = raw.partition(b"\r\n\r\n")
    lines = top.split(b"\r\n")
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b": ")
        fields[name.lower()] = (
            fields[name.lower()] + b", " + value if name.lower() in fields else value
        )
    if fields.get(b"transfer-encoding") == b"chunked":
        body = dechunk(body)
    return int(lines[0].split()[1]), fields, body


def shape(resource: Any) -> dict[str, Any]:
    """The tree's children by name, each as its class and its own children."""
    return {
        name.decode(): (type(child).__name__, shape(child))
        for name, child in sorted(getattr(resource, "children", {}).items())
    }


class DefaultTreeTests(SynchronousTestCase):
    """Without an application, the tree is exactly what it was before issue 14."""

    def test_shapeIsUnchanged(self) -> None:
        """The root is the web client's directory with healthz, metrics, api, sse and ws
        (the protocol switch, the echo endpoint under it with --echo) as its children, and
        the public JS client (client.js, client/) that the directory holds anyway."""
        service = PortshareService(Settings(ports=("tcp:0",), echo=True), _reactor())
        root = service.root
        self.assertIs(type(root), StaticFiles)
        self.assertIs(service.site.resource, root)
        self.assertEqual(
            sorted(root.children),
            [b"api", b"client", b"client.js", b"healthz", b"metrics", b"sse", b"ws"],
        )
        self.assertIsInstance(root.children[b"healthz"], HealthResource)
        self.assertIsInstance(root.children[b"metrics"], MetricsResource)
        self.assertIsInstance(root.children[b"sse"], SseResource)
        self.assertIsInstance(root.children[b"ws"], UpgradeDispatcher)
        self.assertEqual(shape(root)["ws"], ("UpgradeDispatcher", {}))
        self.assertIn("echo", shape(root.children[b"ws"].websocket))
        self.assertIsNone(service.app)

    def test_rootPrefixIsTheDefault(self) -> None:
        """--chat-prefix / without an application is the same tree as no option."""
        default = PortshareService(Settings(ports=("tcp:0",)), _reactor())
        slash = PortshareService(Settings(ports=("tcp:0",), chatPrefix="/"), _reactor())
        self.assertEqual(shape(default.root), shape(slash.root))
        self.assertIs(type(slash.root), StaticFiles)

    def test_pathsAnswerAsBefore(self) -> None:
        """/ is the web client, /healthz, /api and /sse answer, /ws wants an Upgrade, and any
        other path is the static files' JSON 404."""
        service = startedService(self)
        c = MemoryConnection(service)
        status, _headers, body = get(c, "/")
        self.assertEqual(status, 200)
        self.assertIn(b"<html", body.lower())
        self.assertEqual(get(c, "/healthz")[0], 200)
        self.assertEqual(get(c, "/api/rooms")[2], b'{"rooms":[]}')
        self.assertEqual(get(c, "/ws")[0], 426)
        status, _, body = get(c, "/elsewhere")
        self.assertEqual((status, orjson.loads(body)["reason"]), (404, "no such file"))


def _reactor() -> Any:
    from twisted.internet.testing import MemoryReactorClock

    return MemoryReactorClock()


class FlaskCase(SynchronousTestCase):
    def mount(self, **settings: Any) -> Any:
        self.threads = SynchronousThreads()
        settings.setdefault("app", WsgiApp(flaskapp.app, threads=self.threads))
        self.service = startedService(self, **settings)
        return self.service

    def client(self, port: int = 40000) -> MemoryConnection:
        return MemoryConnection(self.service, port)


class MountedTreeTests(FlaskCase):
    """With an application, portshare's own children come first; every other path is the
    application's, whole."""

    def setUp(self) -> None:
        self.mount()

    def test_appOwnsTheRootAndEveryOtherPath(self) -> None:
        """/, the app's own /api, and even /ws, /sse and /api/rooms go to the application,
        which sees the whole path (SCRIPT_NAME empty)."""
        c = self.client()
        status, _, body = get(c, "/")
        self.assertEqual(status, 200)
        self.assertIn(b"the flask app", body)
        self.assertEqual(orjson.loads(get(c, "/api/items")[2])["items"][0], "from")
        for path in ("/ws", "/sse", "/api/rooms", "/index.html"):
            self.assertEqual(get(c, path)[0], 404, path)  # Flask's 404s: the app's paths
        environ = orjson.loads(get(c, "/environ?a=1")[2])
        self.assertEqual(
            (environ["SCRIPT_NAME"], environ["PATH_INFO"], environ["QUERY_STRING"]),
            ("", "/environ", "a=1"),
        )
        self.assertEqual(environ["REMOTE_ADDR"], "127.0.0.1")

    def test_chatUnderItsPrefix(self) -> None:
        """The web client, the API, SSE and the WebSocket are under /chat; /chat redirects
        to /chat/; /healthz and /metrics stay at the root."""
        c = self.client()
        status, headers, body = get(c, "/chat/")
        self.assertEqual(status, 200)
        self.assertIn(b"<html", body.lower())
        self.assertIn(b"content-security-policy", headers)
        self.assertEqual(get(c, "/chat")[1][b"location"], b"/chat/")
        self.assertEqual(get(c, "/chat/main.js")[0], 200)
        self.assertEqual(get(c, "/chat/api/rooms")[2], b'{"rooms":[]}')
        self.assertEqual(get(c, "/%63hat/api/rooms")[2], b'{"rooms":[]}')
        self.assertEqual(get(c, "/healthz")[2], b'{"status":"ok"}')
        self.assertEqual(get(c, "/metrics")[0], 200)
        self.assertEqual(get(c, "/chat/healthz")[0], 404)  # the operators' paths: root only
        self.assertEqual(self.threads.calls, 0)  # none of these reached the application
        ws = self.client(40001)
        self.assertTrue(ws.handshake(path="/chat/ws").startswith(b"HTTP/1.1 101 "))
        ws.say(type="join", room="lobby", nick="ann", ref=1)
        self.assertEqual(ws.messages()[0]["type"], "joined")
        self.assertEqual(self.threads.calls, 0)

    def test_treeShape(self) -> None:
        """The root falls back to the app; its children are the operators' paths and the
        prefix, which holds the web client with api, sse and ws."""
        root = self.service.root
        self.assertIsInstance(root, AppFallback)
        self.assertEqual(sorted(root.children), [b"chat", b"healthz", b"metrics"])
        chat = root.children[b"chat"]
        self.assertIsInstance(chat, StaticFiles)
        self.assertEqual(sorted(chat.children), [b"api", b"client", b"client.js", b"sse", b"ws"])

    def test_formPostRedirectAndCookie(self) -> None:
        """A form POST with a body reaches Flask, which sets a cookie and redirects; the
        cookie sent back is read by the next page."""
        c = self.client()
        form = b"name=ann&note=" + b"n" * 500
        c.send(
            b"POST /submit HTTP/1.1\r\nHost: app.example\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(form), form)
        )
        status, headers, _ = parse(c.read())
        self.assertEqual(status, 303)
        self.assertTrue(headers[b"location"].endswith(b"/hello"))
        self.assertEqual(headers[b"x-note-length"], b"500")
        cookie = headers[b"set-cookie"].split(b";")[0]
        self.assertEqual(cookie, b"name=ann")
        self.assertEqual(get(c, "/hello", b"Cookie: " + cookie + b"\r\n")[2], b"hello, ann")

    def test_oversizedBodyNeverReachesTheApp(self) -> None:
        """A body over --max-body is 413 before it is read: the application is not called."""
        self.mount(limits=Limits(maxBody=1000))
        c = self.client()
        c.send(b"POST /submit HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n\r\n")
        self.assertTrue(c.read().startswith(b"HTTP/1.1 413 "))
        self.assertEqual(self.threads.calls, 0)

    def test_connectionsViewShowsBoth(self) -> None:
        """/chat/api/connections lists the application's HTTP connections and the chat's
        WebSockets side by side, on the one port."""
        page = self.client(41000)
        get(page, "/hello")
        get(page, "/api/items")
        chat = self.client(41001)
        chat.handshake(path="/chat/ws")
        viewer = self.client(41002)
        rows = orjson.loads(get(viewer, "/chat/api/connections")[2])["connections"]
        byPort = {row["port"]: row for row in rows}
        self.assertEqual(byPort[41000]["protocol"], "http/1.1")
        self.assertEqual(byPort[41000]["requests"], 2)
        self.assertEqual(byPort[41001]["protocol"], "websocket")
        self.assertEqual(byPort[41001]["path"], "/chat/ws")


class ApplicationErrorTests(SynchronousTestCase):
    def test_exceptionIs500WithoutTraceback(self) -> None:
        """An exception in the WSGI application is a 500 with no traceback in it, and the
        chat beside it goes on."""

        def broken(environ: dict[str, Any], start: Any) -> list[bytes]:
            raise RuntimeError("secret internals")

        service = startedService(self, app=WsgiApp(broken, threads=SynchronousThreads()))
        c = MemoryConnection(service)
        status, _, body = get(c, "/boom")
        self.assertEqual(status, 500)
        self.assertNotIn(b"secret internals", body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(get(c, "/chat/api/rooms")[2], b'{"rooms":[]}')


class PrefixTests(FlaskCase):
    def test_deeperPrefix(self) -> None:
        """A prefix of two segments: the chat is under both; a sibling of either segment,
        and the first segment alone, are the application's, whole."""
        self.mount(chatPrefix="/tools/chat")
        c = self.client()
        self.assertEqual(get(c, "/tools/chat/api/rooms")[2], b'{"rooms":[]}')
        for path in ("/tools/other", "/tools", "/tools/", "/tools/chatter"):
            get(c, path)  # Flask's 404, with the path it saw:
        environ = orjson.loads(get(c, "/environ")[2])
        self.assertEqual(environ["PATH_INFO"], "/environ")
        self.assertEqual(self.threads.calls, 5)
        flask = self.service.root.children[b"tools"]
        self.assertIsInstance(flask, AppFallback)

    def test_appPathsUnderAPrefixSegment(self) -> None:
        """The application sees /tools/x whole when the chat is at /tools/chat."""
        seen: list[tuple[str, str]] = []

        def app(environ: dict[str, Any], start: Any) -> list[bytes]:
            seen.append((environ["SCRIPT_NAME"], environ["PATH_INFO"]))
            start("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]

        self.mount(app=WsgiApp(app, threads=SynchronousThreads()), chatPrefix="/tools/chat")
        c = self.client()
        for path in ("/tools/x", "/tools", "/tools/", "/"):
            get(c, path)
        self.assertEqual(seen, [("", "/tools/x"), ("", "/tools"), ("", "/tools/"), ("", "/")])

    def test_slashPrefixWithAnApp(self) -> None:
        """--chat-prefix / keeps /ws, /sse and /api at the root beside the application; the
        web client is then not served (the application owns /)."""
        self.mount(chatPrefix="/")
        c = self.client()
        self.assertEqual(get(c, "/api/rooms")[2], b'{"rooms":[]}')
        self.assertEqual(get(c, "/ws")[0], 426)
        self.assertIn(b"the flask app", get(c, "/")[2])
        self.assertEqual(get(c, "/index.html")[0], 404)
        self.assertEqual(get(c, "/api/items")[0], 404)  # the chat's /api, not the app's
        self.assertEqual(
            sorted(self.service.root.children),
            [b"api", b"client", b"client.js", b"healthz", b"metrics", b"sse", b"ws"],
        )

    def test_prefixWithoutAnApp(self) -> None:
        """A prefix without an application: / redirects to the web client under it, other
        paths are JSON 404s, /healthz stays."""
        self.service = startedService(self, chatPrefix="/chat")
        c = self.client()
        status, headers, _ = get(c, "/")
        self.assertEqual((status, headers[b"location"]), (302, b"/chat/"))
        self.assertEqual(get(c, "/chat/")[0], 200)
        self.assertEqual(get(c, "/chat/api/rooms")[2], b'{"rooms":[]}')
        self.assertEqual(get(c, "/healthz")[0], 200)
        status, _, body = get(c, "/elsewhere")
        self.assertEqual((status, orjson.loads(body)["error"]), (404, "not_found"))
        self.assertIsInstance(self.service.root, ChatRoot)

    def test_segments(self) -> None:
        """Prefixes are plain absolute paths; the default depends on whether an application
        is mounted; a prefix may not hide /healthz or /metrics."""
        self.assertEqual(chatPrefixSegments(None, False), ())
        self.assertEqual(chatPrefixSegments(None, True), (b"chat",))
        self.assertEqual(chatPrefixSegments("/", True), ())
        self.assertEqual(chatPrefixSegments("/a/b/", True), (b"a", b"b"))
        for bad, why in [
            ("chat", "must start with /"),
            ("/a//b", "no empty segment"),
            ("/../x", "not . or .."),
            ("/sp ace", "letters, digits"),
            ("/healthz", "would hide /healthz"),
            ("/metrics/x", "would hide /metrics"),
        ]:
            with self.assertRaises(ValueError) as caught:
                chatPrefixSegments(bad, True)
            self.assertIn(why, str(caught.exception), bad)


class OtherAppTests(SynchronousTestCase):
    def test_django(self) -> None:
        """A Django project configured in code answers its view through the tree."""
        service = startedService(
            self, app=WsgiApp(djangoapp.application, threads=SynchronousThreads())
        )
        c = MemoryConnection(service)
        status, _, body = get(c, "/django/")
        self.assertEqual(status, 200)
        self.assertEqual(
            orjson.loads(body), {"framework": "django", "method": "GET", "path": "/django/"}
        )
        self.assertEqual(get(c, "/chat/api/rooms")[2], b'{"rooms":[]}')

    def test_klein(self) -> None:
        """klein's app.resource is mounted as the application, routes and form bodies
        included."""
        service = startedService(self, app=ResourceApp(kleinapp.app.resource()))
        c = MemoryConnection(service)
        self.assertEqual(get(c, "/")[2], b"klein home")
        self.assertEqual(get(c, "/klein/bob")[2], b"hello from klein, bob")
        c.send(b"POST /klein-form HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\n\r\nabcdefg")
        self.assertEqual(parse(c.read())[2], b"klein got 7 bytes")
        self.assertEqual(get(c, "/chat/api/rooms")[2], b'{"rooms":[]}')

    def test_resourceGivenTheReactor(self) -> None:
        """A callable that takes the reactor gets the service's, and its resource sees every
        path whole."""
        service = startedService(self, app=ResourceApp(resourceapp.withReactor))
        self.assertIs(service.app.resource.reactor, service.reactor)
        self.assertTrue(IResource.providedBy(service.app.resource))
        c = MemoryConnection(service)
        self.assertEqual(get(c, "/some/where")[2], b"resource at /some/where")
        self.assertEqual(get(c, "/")[2], b"resource at /")


BUILTIN = Path(__file__).parent.parent / "portshare" / "static"


class ClientModuleTests(SynchronousTestCase):
    """The public JS client, C{<prefix>/client.js} and the modules it imports under
    C{<prefix>/client/}, is served wherever the chat is, whatever C{--static} says."""

    def assertModule(self, c: MemoryConnection, path: str, name: str) -> None:
        status, headers, body = get(c, path)
        self.assertEqual((status, headers[b"content-type"]), (200, b"text/javascript"), path)
        self.assertEqual(body, (BUILTIN / name).read_bytes(), path)
        self.assertIn(b"script-src 'self'", headers[b"content-security-policy"])

    def test_defaultTree(self) -> None:
        """Without options: /client.js and /client/connection.js, the built-in files."""
        c = MemoryConnection(startedService(self))
        self.assertModule(c, "/client.js", "client.js")
        self.assertModule(c, "/client/connection.js", "client/connection.js")
        self.assertModule(c, "/client/wire.js", "client/wire.js")  # twice: from memory

    def test_staticDirKeepsTheClient(self) -> None:
        """--static DIR replaces the web client's page, not client.js: DIR's own client.js
        and client/ are shadowed, its other files served."""
        static = Path(self.mktemp())
        (static / "client").mkdir(parents=True)
        (static / "index.html").write_text("<p>my page</p>")
        (static / "client.js").write_text("export const mine = 1;")
        (static / "client" / "connection.js").write_text("export const mine = 2;")
        c = MemoryConnection(startedService(self, staticDir=static))
        self.assertEqual(get(c, "/")[2], b"<p>my page</p>")
        self.assertModule(c, "/client.js", "client.js")
        self.assertModule(c, "/client/connection.js", "client/connection.js")
        self.assertEqual(get(c, "/main.js")[0], 404)  # the built-in page is gone

    def test_underThePrefixBesideAnApp(self) -> None:
        """With an application, the client is under the chat's prefix; /client.js is the
        application's path."""
        service = startedService(self, app=WsgiApp(flaskapp.app, threads=SynchronousThreads()))
        c = MemoryConnection(service)
        self.assertModule(c, "/chat/client.js", "client.js")
        self.assertModule(c, "/chat/client/sse.js", "client/sse.js")
        self.assertEqual(get(c, "/client.js")[0], 404)  # Flask's 404
        self.assertEqual(get(c, "/client/wire.js")[0], 404)

    def test_rootPrefixBesideAnApp(self) -> None:
        """--chat-prefix / beside an application: no web client page, but /client.js."""
        service = startedService(
            self, app=WsgiApp(flaskapp.app, threads=SynchronousThreads()), chatPrefix="/"
        )
        c = MemoryConnection(service)
        self.assertModule(c, "/client.js", "client.js")
        self.assertModule(c, "/client/rooms.js", "client/rooms.js")
        self.assertEqual(get(c, "/index.html")[0], 404)

    def test_nothingOutsideTheModules(self) -> None:
        """Under /client/, only the modules: no way up to the page's files or out of the
        package, no dotfiles, no listing, no writes."""
        c = MemoryConnection(startedService(self))
        for path in (
            "/client/../main.js",
            "/client/%2e%2e/main.js",
            "/client/..%2fmain.js",
            "/client/%2e%2e/%2e%2e/__init__.py",
            "/client/.hidden",
            "/client/",
            "/client.js/x",
        ):
            status, _, body = get(c, path)
            self.assertEqual(status, 404, (path, body[:200]))
            self.assertNotIn(b"import", body, path)
        c.send(b"POST /client.js HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(parse(c.read())[0], 405)

    def test_inYourOwnTree(self) -> None:
        """Chat.resource() mounted at /talk of an application's own tree and Site (the public
        Python API) brings /talk/client.js and its modules along."""
        import txaio.testutil
        from twisted.internet.testing import MemoryReactorClock
        from twisted.web.resource import Resource
        from twisted.web.server import Site

        from portshare import Chat

        reactor = MemoryReactorClock()
        loop = txaio.testutil.replace_loop(reactor)
        loop.__enter__()
        self.addCleanup(loop.__exit__, None, None, None)
        chat = Chat(reactor)
        root = Resource()
        root.putChild(b"talk", chat.resource())
        chat.service.startService()
        self.addCleanup(chat.service.stopService)
        c = MemoryConnection(Site(root, reactor=reactor))
        self.assertModule(c, "/talk/client.js", "client.js")
        self.assertModule(c, "/talk/client/connection.js", "client/connection.js")
