"""Tests for L{portshare.tap}: the command line and the service it builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from portshare.limits import Limits
from portshare.service import PortshareService
from portshare.tap import Options, escapeIPv6, makeService


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """With no options: tcp:8080, default limits, no echo, same-origin only, no tokens."""
        settings = parse().settings()
        self.assertEqual(settings.ports, ("tcp:8080",))
        self.assertEqual(settings.limits, Limits())
        self.assertFalse(settings.echo)
        self.assertEqual(settings.allowedOrigins, ())
        self.assertIsNone(settings.apiToken)
        self.assertIsNone(settings.joinSecret)

    def test_repeatable(self) -> None:
        """--port and --allowed-origin may be given several times, in order."""
        settings = parse(
            "--port",
            "tcp:0",
            "-p",
            "unix:/tmp/x.sock",
            "--allowed-origin",
            "https://a.example",
            "--allowed-origin",
            "https://*.b.example",
        ).settings()
        self.assertEqual(settings.ports, ("tcp:0", "unix:/tmp/x.sock"))
        self.assertEqual(settings.allowedOrigins, ("https://a.example", "https://*.b.example"))

    def test_limits(self) -> None:
        """Limit options land in the one Limits object."""
        limits = (
            parse(
                "--max-message-size", "2048", "--max-text", "10", "--history", "5", "--rate", "2.5"
            )
            .settings()
            .limits
        )
        self.assertEqual(
            (limits.maxMessageSize, limits.maxText, limits.history, limits.rate), (2048, 10, 5, 2.5)
        )
        self.assertEqual(
            parse("--max-concurrent-streams", "7").settings().limits.maxConcurrentStreams, 7
        )
        self.assertEqual(parse().settings().limits.maxConcurrentStreams, 100)

    def test_badValues(self) -> None:
        """Bad values are usage errors that name the option."""
        cases = [
            (["--max-text", "0"], "--max-text must be positive"),
            (["--history", "-3"], "--history must be positive"),
            (["--port", "nonsense:1"], "--port 'nonsense:1' is not valid"),
            (["--log-format", "xml"], "--log-format must be text or json"),
            (["--static", "/does/not/exist"], "is not a directory"),
            (["--api-token", "short"], "at least 16 characters"),
        ]
        for args, message in cases:
            with self.assertRaises(usage.UsageError) as caught:
                parse(*args)
            self.assertIn(message, str(caught.exception), args)
        with self.assertRaises(usage.UsageError):
            parse("--max-text", "many")

    def test_unescapedIPv6Interface(self) -> None:
        """An IPv6 interface typed as people type it (C{interface=::1}) is a one-line usage
        error that says what to type instead, and what it says to type is accepted."""
        for description, escaped in [
            ("tcp6:8080:interface=::1", r"tcp6:8080:interface=\:\:1"),
            ("tcp:0:interface=::1", r"tcp:0:interface=\:\:1"),
            ("tcp6:0:interface=fe80::1%eth0", r"tcp6:0:interface=fe80\:\:1%eth0"),
            (
                "ssl:8443:interface=2001:db8::7:privateKey=k.pem",
                r"ssl:8443:interface=2001\:db8\:\:7:privateKey=k.pem",
            ),
        ]:
            with self.assertRaises(usage.UsageError) as caught:
                parse("--port", description)
            message = str(caught.exception)
            self.assertNotIn("\n", message)
            self.assertIn(f"type --port {escaped!r}", message, description)
            self.assertEqual(escapeIPv6(description), escaped)
        self.assertEqual(
            parse("--port", r"tcp6:0:interface=\:\:1")["ports"], [r"tcp6:0:interface=\:\:1"]
        )
        self.assertIsNone(escapeIPv6(r"tcp6:0:interface=\:\:1"))
        self.assertIsNone(escapeIPv6("tcp:0:interface=127.0.0.1"))

    def test_staticCacheOptions(self) -> None:
        """--static-cache-file-bytes and --static-cache-bytes size the static files' memory
        cache of the service's tree; zero is refused."""
        settings = parse(
            "--static-cache-file-bytes", "2048", "--static-cache-bytes", "65536"
        ).settings()
        self.assertEqual(
            (settings.limits.staticCacheFileBytes, settings.limits.staticCacheBytes),
            (2048, 65536),
        )
        service = PortshareService(settings, MemoryReactorClock())
        cache = service.root.cache
        self.assertEqual((cache.maxFileSize, cache.maxBytes), (2048, 65536))
        with self.assertRaises(usage.UsageError) as caught:
            parse("--static-cache-bytes", "0")
        self.assertIn("--static-cache-bytes must be positive", str(caught.exception))

    def test_presenceBatchOptions(self) -> None:
        """--presence-batch-above (0 allowed: batch every room) and --presence-batch-interval
        set the batching limits; a negative threshold or a non-positive interval is refused."""
        self.assertEqual((Limits().presenceBatchAbove, Limits().presenceBatchInterval), (100, 1.0))
        limits = (
            parse("--presence-batch-above", "0", "--presence-batch-interval", "0.25")
            .settings()
            .limits
        )
        self.assertEqual((limits.presenceBatchAbove, limits.presenceBatchInterval), (0, 0.25))
        cases = [
            (["--presence-batch-above", "-1"], "--presence-batch-above must be 0 or more"),
            (["--presence-batch-interval", "0"], "--presence-batch-interval must be positive"),
        ]
        for args, message in cases:
            with self.assertRaises(usage.UsageError) as caught:
                parse(*args)
            self.assertIn(message, str(caught.exception), args)

    def test_secretFiles(self) -> None:
        """Tokens and secrets can come from files, stripped of surrounding whitespace."""
        token = Path(self.mktemp())
        token.write_text("  abcdefghijklmnopqrstuvwxyz\n")
        secret = Path(self.mktemp())
        secret.write_bytes(b"s" * 20 + b"\n")
        settings = parse(
            "--api-token-file", str(token), "--join-secret-file", str(secret)
        ).settings()
        self.assertEqual(settings.apiToken, "abcdefghijklmnopqrstuvwxyz")
        self.assertEqual(settings.joinSecret, b"s" * 20)
        with self.assertRaises(usage.UsageError):
            parse("--api-token-file", "/does/not/exist")

    def test_helpShowsDefaults(self) -> None:
        """--help documents each limit with its default."""
        text = str(Options())
        for expected in ("--max-message-size=", "[default: 65536]", "--port=", "tcp:8080"):
            self.assertIn(expected, text)


class MakeServiceTests(SynchronousTestCase):
    def test_buildsWithoutListening(self) -> None:
        """makeService wires the service on the given reactor and binds nothing yet."""
        reactor = MemoryReactorClock()
        service = makeService(parse("--port", "tcp:0", "--echo"), reactor)
        self.assertIsInstance(service, PortshareService)
        self.assertEqual(reactor.tcpServers, [])
        self.assertIsNotNone(service.echoFactory)
        service.privilegedStartService()
        service.startService()
        self.assertEqual(len(reactor.tcpServers), 1)
        self.successResultOf(service.stopService())


class BrokerAndWorkersOptionTests(SynchronousTestCase):
    """--broker selects the broker; --workers needs a shared one."""

    def test_defaultIsMemory(self) -> None:
        """Without --broker the service gets the in-memory broker."""
        from portshare.broker.memory import MemoryBroker

        options = parse()
        self.assertEqual(options.settings().broker, "memory")
        service = makeService(options, MemoryReactorClock())
        self.assertIsInstance(service.broker, MemoryBroker)  # type: ignore[attr-defined]

    def test_redis(self) -> None:
        """A Redis URL builds the Redis broker on the given reactor, connecting nothing yet."""
        from portshare.broker.redis import RedisBroker

        reactor = MemoryReactorClock()
        service = makeService(parse("--broker", "redis://cache:6380/2?presence_ttl=4"), reactor)
        broker = service.broker  # type: ignore[attr-defined]
        self.assertIsInstance(broker, RedisBroker)
        self.assertEqual((broker.url.host, broker.url.port, broker.url.db), ("cache", 6380, 2))
        self.assertEqual(reactor.tcpClients, [])

    def test_badBroker(self) -> None:
        """A URL that is not a broker's is refused, saying what is accepted."""
        with self.assertRaises(usage.UsageError) as raised:
            parse("--broker", "mysql://db")
        self.assertIn("--broker", str(raised.exception))
        self.assertIn("redis://host:port/db", str(raised.exception))

    def test_workersNeedSharedBroker(self) -> None:
        """--workers 2 with the in-memory broker is refused, naming --broker."""
        with self.assertRaises(usage.UsageError) as raised:
            parse("--workers", "2")
        self.assertIn("needs a shared broker", str(raised.exception))
        with self.assertRaises(usage.UsageError):
            parse("--workers", "0")

    def test_workersService(self) -> None:
        """With a shared broker, --workers N builds the workers' parent, binding nothing yet."""
        from portshare.workers import WorkersService

        reactor = MemoryReactorClock()
        options = parse("--workers", "3", "--broker", "redis://h/0", "--port", "tcp:0")
        service = makeService(options, reactor)
        self.assertIsInstance(service, WorkersService)
        self.assertEqual((service.count, service.ports), (3, ["tcp:0"]))  # type: ignore[attr-defined]
        self.assertEqual(reactor.tcpServers, [])


class UsageErrorMixin:
    def assertUsageError(self, args: list[str], *expected: str) -> str:
        """C{args} is one usage error, on one line, saying each of C{expected}."""
        test: Any = self
        with test.assertRaises(usage.UsageError) as caught:
            parse(*args)
        message = str(caught.exception)
        test.assertNotIn("\n", message)
        for text in expected:
            test.assertIn(text, message, args)
        return message


class AppOptionTests(UsageErrorMixin, SynchronousTestCase):
    """--wsgi, --resource, --proxy and --chat-prefix (issue 14)."""

    def test_noAppByDefault(self) -> None:
        """Without an application option there is none, and the prefix is the default."""
        settings = parse().settings()
        self.assertIsNone(settings.app)
        self.assertIsNone(settings.chatPrefix)

    def test_wsgi(self) -> None:
        """--wsgi loads the application, on --wsgi-threads threads (10 by default)."""
        from portshare.apps import WsgiApp
        from tests.apps.flaskapp import app

        settings = parse("--wsgi", "tests.apps.flaskapp.app").settings()
        self.assertEqual(settings.app, WsgiApp(app, poolSize=10))
        self.assertEqual(
            parse("--wsgi", "tests.apps.flaskapp:app", "--wsgi-threads", "3").settings().app,
            WsgiApp(app, poolSize=3),
        )

    def test_resourceAndProxy(self) -> None:
        """--resource loads the resource; --proxy takes the URL and the two timeouts (5 s to
        connect, 60 s to answer by default)."""
        from portshare.apps import ProxyApp, ResourceApp
        from tests.apps.resourceapp import root

        self.assertEqual(
            parse("--resource", "tests.apps.resourceapp.root").settings().app, ResourceApp(root)
        )
        self.assertEqual(
            parse("--proxy", "http://127.0.0.1:8000").settings().app,
            ProxyApp("http://127.0.0.1:8000", connectTimeout=5.0, responseTimeout=60.0),
        )
        self.assertEqual(
            parse(
                "--proxy", "http://h:1", "--proxy-connect-timeout", "0.5",
                "--proxy-response-timeout", "7",
            ).settings().app,
            ProxyApp("http://h:1", connectTimeout=0.5, responseTimeout=7.0),
        )  # fmt: skip

    def test_oneAtATime(self) -> None:
        """Two of --static, --wsgi, --resource and --proxy are a usage error naming both."""
        self.assertUsageError(
            ["--wsgi", "tests.apps.flaskapp.app", "--proxy", "http://h:1"],
            "give one of --static, --wsgi, --resource and --proxy, not --wsgi and --proxy",
        )
        self.assertUsageError(
            ["--static", str(Path(__file__).parent), "--resource", "tests.apps.resourceapp.root"],
            "not --static and --resource",
        )

    def test_badNames(self) -> None:
        """A dotted name that does not import, names nothing or names the wrong kind of
        object is a one-line usage error naming the module, not a traceback."""
        self.assertUsageError(["--wsgi", "nosuchpackage.app"], "--wsgi nosuchpackage.app",
                              "no module named nosuchpackage")  # fmt: skip
        self.assertUsageError(["--wsgi", "tests.apps.flaskapp.nope"],
                              "tests.apps.flaskapp has no attribute nope")  # fmt: skip
        self.assertUsageError(["--wsgi", "tests.apps.broken.app"], "importing tests.apps.broken")
        self.assertUsageError(["--resource", "tests.apps.resourceapp.number"],
                              "--resource tests.apps.resourceapp.number", "the int 42")  # fmt: skip

    def test_badValues(self) -> None:
        """A bad URL, prefix, thread count or timeout is a usage error."""
        self.assertUsageError(["--proxy", "ftp://h"], "--proxy:", "http://")
        self.assertUsageError(["--chat-prefix", "chat"], "--chat-prefix 'chat' must start with /")
        self.assertUsageError(["--chat-prefix", "/healthz"], "would hide /healthz")
        self.assertUsageError(["--wsgi-threads", "0"], "--wsgi-threads must be positive")
        self.assertUsageError(["--proxy-connect-timeout", "0"], "must be positive")
        self.assertUsageError(["--proxy-response-timeout", "-1"], "must be positive")
        self.assertEqual(parse("--chat-prefix", "/talk").settings().chatPrefix, "/talk")

    def test_helpLines(self) -> None:
        """--help has a line for each option, with its default."""
        text = " ".join(str(Options()).split())
        for expected in (
            "--wsgi=", "--resource=", "--proxy=", "--chat-prefix=", "--wsgi-threads=",
            "[default: 10]", "--proxy-connect-timeout=", "[default: 5.0]",
            "--proxy-response-timeout=", "[default: 60.0]",
            "[default: / without an application, /chat with --wsgi, --resource or --proxy]",
        ):  # fmt: skip
            self.assertIn(expected, text)

    def test_makeServiceMountsTheApp(self) -> None:
        """makeService mounts the application; its pool starts and stops with the service."""
        from portshare.wsgi import WsgiPool

        service = makeService(
            parse("--port", "tcp:0", "--wsgi", "tests.apps.flaskapp.app", "--wsgi-threads", "2"),
            MemoryReactorClock(),
        )
        assert isinstance(service, PortshareService) and service.app is not None
        pool = service.app.service
        self.assertIsInstance(pool, WsgiPool)
        service.startService()
        self.assertTrue(pool.running)
        self.successResultOf(service.stopService())
        self.assertFalse(pool.running)
        self.assertFalse(any(t.is_alive() for t in pool.pool.threads))  # type: ignore[attr-defined]

    def test_wrongResourceFromTheReactorCallable(self) -> None:
        """A --resource callable that takes the reactor and returns the wrong kind of object:
        makeService exits with one line, not a traceback."""
        options = parse("--resource", "tests.apps.resourceapp.wrongWithReactor")
        with self.assertRaises(SystemExit) as caught:
            makeService(options, MemoryReactorClock())
        message = str(caught.exception.code)
        self.assertNotIn("\n", message)
        self.assertIn("--resource", message)
        self.assertIn("tests.apps.resourceapp.wrongWithReactor: it returned the str", message)


class UserOptionsTests(UsageErrorMixin, SynchronousTestCase):
    """The options of issue 15: users' tokens, hooks, the admin port."""

    def secretFile(self, content: bytes = b"s" * 48) -> str:
        path = Path(self.mktemp())
        path.write_bytes(content)
        return str(path)

    def test_defaults(self) -> None:
        """Without them: anonymous chat, no hook, the default cookie and timeouts."""
        s = parse().settings()
        self.assertEqual(
            (s.auth, s.authTimeout, s.jwtSecret, s.jwtPublicKey, s.jwksUrl, s.tokenCookie),
            ("off", 5.0, None, None, None, "portshare_token"),
        )
        self.assertEqual(
            (s.hookUrl, s.hookTimeout, s.hookMaxInFlight, s.hookFailOpen, s.hookJoinCache),
            (None, 2.0, 64, False, 0.0),
        )

    def test_everyOptionParses(self) -> None:
        """Each option lands in its Settings field."""
        s = parse(
            "--auth", "required",
            "--auth-timeout", "2.5",
            "--jwt-secret-file", self.secretFile(b"k" * 40 + b"\n"),
            "--jwt-audience", "chat",
            "--jwt-issuer", "https://id.example",
            "--jwt-leeway", "30",
            "--token-cookie", "app_jwt",
            "--hook-url", "http://127.0.0.1:9/hook",
            "--hook-timeout", "0.5",
            "--hook-max-in-flight", "8",
            "--hook-fail-open",
            "--hook-join-cache", "60",
        ).settings()  # fmt: skip
        self.assertEqual(
            (s.auth, s.authTimeout, s.jwtSecret, s.jwtAudience, s.jwtIssuer, s.jwtLeeway),
            ("required", 2.5, b"k" * 40, "chat", "https://id.example", 30.0),
        )
        self.assertEqual(
            (s.tokenCookie, s.hookUrl, s.hookTimeout, s.hookMaxInFlight, s.hookFailOpen),
            ("app_jwt", "http://127.0.0.1:9/hook", 0.5, 8, True),
        )
        self.assertEqual(s.hookJoinCache, 60.0)
        jwks = parse("--auth", "optional", "--jwks-url", "https://id.example/jwks").settings()
        self.assertEqual(jwks.jwksUrl, "https://id.example/jwks")

    def test_publicKeyFile(self) -> None:
        """--jwt-public-key-file takes a PEM public key."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        pem = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        s = parse("--auth", "optional", "--jwt-public-key-file", self.secretFile(pem)).settings()
        self.assertEqual(s.jwtPublicKey, pem.strip())

    def test_badValues(self) -> None:
        """Bad values are one-line usage errors naming the option."""
        secret = self.secretFile()
        self.assertUsageError(["--auth", "sometimes"], "--auth", "off, optional, required")
        self.assertUsageError(["--auth", "required"], "--auth required", "--jwt-secret-file")
        self.assertUsageError(
            ["--auth", "optional", "--jwt-secret-file", "/no/such/file"], "cannot read"
        )
        self.assertUsageError(
            ["--auth", "optional", "--jwt-secret-file", self.secretFile(b"short")],
            "--jwt-secret-file", "at least",
        )  # fmt: skip
        pemLike = self.secretFile(b"-----BEGIN KEY" + b"x" * 40)
        self.assertUsageError(["--auth", "optional", "--jwt-secret-file", pemLike], "public key")
        self.assertUsageError(
            ["--auth", "optional", "--jwt-public-key-file", self.secretFile(b"not a pem" * 10)],
            "--jwt-secret-file/--jwt-public-key-file",
        )  # fmt: skip
        self.assertUsageError(
            ["--auth", "optional", "--jwt-secret-file", secret, "--jwks-url", "https://x/j"],
            "--jwt-secret-file", "--jwks-url",
        )  # fmt: skip
        for args, option in (
            (["--auth-timeout", "0"], "--auth-timeout"),
            (["--auth-timeout", "-1"], "--auth-timeout"),
            (["--hook-timeout", "0"], "--hook-timeout"),
            (["--jwt-leeway", "-5"], "--jwt-leeway"),
            (["--hook-join-cache", "-1"], "--hook-join-cache"),
            (["--hook-max-in-flight", "0"], "--hook-max-in-flight"),
            (["--token-cookie", "a b"], "--token-cookie"),
            (["--token-cookie", "a;b=c"], "--token-cookie"),
            (["--hook-url", "ftp://h/x"], "--hook-url"),
            (["--hook-url", "127.0.0.1:9"], "--hook-url"),
            (["--auth", "optional", "--jwks-url", "file:///etc/passwd"], "--jwks-url"),
        ):
            with self.subTest(args=args):
                self.assertUsageError(
                    ["--auth", "optional", "--jwt-secret-file", secret, *args]
                    if "--jwks-url" not in args
                    else args,
                    option,
                )
        for option in ("--auth-timeout", "--hook-timeout", "--jwt-leeway", "--hook-join-cache"):
            for value in ("nan", "inf"):
                with self.subTest(option=option, value=value):
                    self.assertUsageError(
                        ["--auth", "optional", "--jwt-secret-file", secret, option, value], option
                    )
        for args in (["--auth-timeout", "soon"], ["--hook-max-in-flight", "many"]):
            with self.subTest(args=args), self.assertRaises(usage.UsageError):
                parse(*args)

    def test_adminPort(self) -> None:
        """--admin-port is repeatable; --admin-paths-public needs it."""
        s = parse("--admin-port", "tcp:9090", "--admin-port", "unix:/tmp/a.sock").settings()
        self.assertEqual(s.adminPorts, ("tcp:9090", "unix:/tmp/a.sock"))
        self.assertTrue(
            parse("--admin-port", "tcp:9090", "--admin-paths-public").settings().adminPathsPublic
        )
        self.assertUsageError(["--admin-paths-public"], "--admin-port")

    def test_buildsWithUsers(self) -> None:
        """The service built from the options checks tokens and has the hook."""
        reactor = MemoryReactorClock()
        options = parse(
            "--port", "tcp:0", "--auth", "required", "--jwt-secret-file", self.secretFile(),
            "--hook-url", "http://127.0.0.1:9/hook",
        )  # fmt: skip
        service = makeService(options, reactor)
        assert isinstance(service, PortshareService)
        self.assertEqual(service.gate.mode, "required")
        self.assertIsNotNone(service.gate.authorization)


class HookHeaderFileTests(SynchronousTestCase):
    def headerFile(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w", newline="") as f:
            f.write(text)
        return path

    def test_headers(self) -> None:
        """Name: value lines, comments and blank lines skipped, reach the settings."""
        options = Options()
        path = self.headerFile(
            "# the backend checks this\nAuthorization: Bearer s3cret\n\nX-From: portshare\n"
        )
        options.parseOptions(["--hook-url", "http://127.0.0.1:9/h", "--hook-header-file", path])
        self.assertEqual(
            dict(options.settings().hookHeaders),
            {"Authorization": "Bearer s3cret", "X-From": "portshare"},
        )

    def test_hostileHeaders(self) -> None:
        """Header injection (a CR inside a value splits no request: each line is one
        header or refused), portshare's own framing headers, junk: one-line usage errors."""
        for text in (
            "Host: evil.example\n",
            "Content-Length: 0\n",
            "Transfer-Encoding: chunked\n",
            "not a header\n",
            "X-A: ok\x00nul\n",
            "Bad Name: x\n",
            "".join(f"X-{n}: v\n" for n in range(33)),
        ):
            options = Options()
            with self.assertRaises(usage.UsageError, msg=repr(text)) as raised:
                options.parseOptions(
                    [
                        "--hook-url",
                        "http://127.0.0.1:9/h",
                        "--hook-header-file",
                        self.headerFile(text),
                    ]
                )
            self.assertIn("--hook-header-file", str(raised.exception))
