"""
Tests for L{portshare.apps}: dotted names loaded and checked, with one-line errors that name
the module; the specs turned into a resource and a service.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from twisted.application.service import Service
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import IResource

from portshare.apps import (
    AppLoadError,
    ProxyApp,
    ResourceApp,
    WsgiApp,
    loadName,
    loadResource,
    loadWsgi,
    mountApp,
    resolveResource,
)
from portshare.proxy import ReverseProxy
from portshare.testing import SynchronousThreads
from portshare.wsgi import WsgiPool
from tests.apps import flaskapp, resourceapp


class LoadTests(SynchronousTestCase):
    def assertRefused(self, load: object, name: str, *expected: str) -> str:
        with self.assertRaises(AppLoadError) as caught:
            load(name)  # type: ignore[operator]
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        for text in expected:
            self.assertIn(text, message, name)
        return message

    def test_dottedAndColonNames(self) -> None:
        """package.module.attribute and package.module:attribute name the same object."""
        self.assertIs(loadWsgi("tests.apps.flaskapp.app"), flaskapp.app)
        self.assertIs(loadWsgi("tests.apps.flaskapp:app"), flaskapp.app)
        self.assertIs(loadName("tests.apps.resourceapp.Page.render_GET", "--x"),
                      resourceapp.Page.render_GET)  # fmt: skip

    def test_noSuchModule(self) -> None:
        """A module that does not exist is named in the error."""
        self.assertRefused(loadWsgi, "nosuchmodule.app", "--wsgi nosuchmodule.app",
                           "no module named nosuchmodule")  # fmt: skip
        self.assertRefused(loadWsgi, "nosuch:app", "no module named nosuch")

    def test_noSuchAttribute(self) -> None:
        """An attribute the module does not have is named with the module."""
        self.assertRefused(
            loadWsgi, "tests.apps.flaskapp.nothing", "tests.apps.flaskapp has no attribute nothing"
        )
        self.assertRefused(
            loadResource, "tests.apps.kleinapp.app.nothing",
            "tests.apps.kleinapp.app has no attribute nothing",
        )  # fmt: skip

    def test_moduleFailingAtImport(self) -> None:
        """A module that raises at import (a missing dependency) is a one-line error naming
        it and what it raised, not a traceback."""
        self.assertRefused(
            loadWsgi, "tests.apps.broken.app", "importing tests.apps.broken failed",
            "portshare_tests_no_such_dependency",
        )  # fmt: skip

    def test_wrongKinds(self) -> None:
        """A module, a class, a number or a callable of the wrong shape is not a WSGI
        application; a number or a module is not a resource."""
        self.assertRefused(loadWsgi, "tests.apps.flaskapp", "the module tests.apps.flaskapp",
                           "not a WSGI application")  # fmt: skip
        self.assertRefused(loadWsgi, "tests.apps.resourceapp.Page", "the class Page")
        self.assertRefused(loadWsgi, "tests.apps.resourceapp.number", "the int 42")
        self.assertRefused(loadWsgi, "tests.apps.resourceapp.withReactor",
                           "does not take (environ, start_response)")  # fmt: skip
        self.assertRefused(loadResource, "tests.apps.resourceapp.number",
                           "not a twisted.web resource")  # fmt: skip
        self.assertRefused(loadResource, "tests.apps.resourceapp", "the module")

    def test_notADottedName(self) -> None:
        """Something that cannot be a dotted name is said to be one."""
        for name in ("my-app.wsgi", "a..b", "", "a:b:c", "a.b:"):
            self.assertRefused(loadWsgi, name, "is not a dotted name")

    def test_resources(self) -> None:
        """A resource is taken as it is; a callable without arguments (klein's
        app.resource) is called at once; one that takes the reactor is called later."""
        self.assertIs(loadResource("tests.apps.resourceapp.root"), resourceapp.root)
        klein = loadResource("tests.apps.kleinapp.app.resource")
        self.assertTrue(IResource.providedBy(klein))
        self.assertIs(loadResource("tests.apps.resourceapp.withReactor"), resourceapp.withReactor)
        reactor = MemoryReactorClock()
        made = resolveResource(resourceapp.withReactor, reactor)
        self.assertIs(made.reactor, reactor)  # type: ignore[attr-defined]

    def test_wrongResults(self) -> None:
        """A callable that returns the wrong kind of object is refused: at load when it takes
        no argument, when mounted when it takes the reactor."""
        self.assertRefused(loadResource, "tests.apps.resourceapp.notAResource",
                           "it returned the str 'not a resource'")  # fmt: skip
        source = loadResource("tests.apps.resourceapp.wrongWithReactor")
        with self.assertRaises(AppLoadError) as caught:
            mountApp(ResourceApp(source), MemoryReactorClock())
        self.assertIn("wrongWithReactor: it returned the str", str(caught.exception))

    def test_currentDirectoryIsOnThePath(self) -> None:
        """A module in the directory twistd runs in is found, as gunicorn and uvicorn find
        it."""
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "portshare_cwd_app.py").write_text(
            "def app(environ, start_response):\n    return []\n"
        )
        here = os.getcwd()
        path = list(sys.path)
        self.addCleanup(sys.modules.pop, "portshare_cwd_app", None)
        self.addCleanup(sys.path.__setitem__, slice(None), path)
        self.addCleanup(os.chdir, here)
        os.chdir(directory)
        app = loadWsgi("portshare_cwd_app.app")
        self.assertEqual(app.__name__, "app")  # type: ignore[attr-defined]


class MountTests(SynchronousTestCase):
    def test_wsgiOnItsOwnPool(self) -> None:
        """A WSGI application without threads given runs on a pool the service owns, sized
        --wsgi-threads, that stops within the shutdown timeout."""
        mounted = mountApp(WsgiApp(flaskapp.app, poolSize=3), MemoryReactorClock(),
                           shutdownTimeout=2.5)  # fmt: skip
        self.assertIsInstance(mounted.service, WsgiPool)
        pool = mounted.service
        self.assertEqual((pool.size, pool.shutdownTimeout, pool.pool.max), (3, 2.5, 3))  # type: ignore[attr-defined]

    def test_wsgiOnGivenThreads(self) -> None:
        """The threads seam: given threads run the application, and there is no pool."""
        threads = SynchronousThreads()
        mounted = mountApp(WsgiApp(flaskapp.app, threads=threads), MemoryReactorClock())
        self.assertIs(type(mounted.service), Service)
        self.assertIs(mounted.resource._threadpool, threads)  # type: ignore[attr-defined]

    def test_resourceAndProxy(self) -> None:
        """A resource needs no service; a proxy's service is its relay."""
        mounted = mountApp(ResourceApp(resourceapp.root), MemoryReactorClock())
        self.assertIs(mounted.resource, resourceapp.root)
        mounted = mountApp(ProxyApp("http://127.0.0.1:9"), MemoryReactorClock())
        self.assertIsInstance(mounted.service, ReverseProxy)
        self.assertIs(mounted.resource, mounted.service.resource)  # type: ignore[attr-defined]
