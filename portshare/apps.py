"""
Your application on the same port (issue 14): what C{--wsgi}, C{--resource} and C{--proxy}
name, loaded and checked, and turned into the resource the tree falls back to and the
service that runs it.

    --wsgi NAME       L{WsgiApp}: a WSGI application, on a pool of threads (L{portshare.wsgi})
    --resource NAME   L{ResourceApp}: a twisted.web resource (klein's C{app.resource} too)
    --proxy URL       L{ProxyApp}: an HTTP application in any language (L{portshare.proxy})

Why dotted names are loaded while the options are read: a typo in C{--wsgi myapp.app} must be
a one-line usage error that names the module, as every other bad option is, not a traceback
from the middle of twistd's start.  L{AppLoadError} carries that line.

Names are C{package.module.attribute} (as C{twist web --wsgi} takes them) or
C{package.module:attribute} (as gunicorn and uvicorn do).  The current directory is put first
on C{sys.path} before importing, as gunicorn and uvicorn do, so that
C{twistd portshare --wsgi myapp.app} finds C{myapp.py} where it is run.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.application.service import IService, Service
from twisted.web.resource import IResource

from portshare.proxies import Network
from portshare.wsgi import IWsgiThreads, WsgiApplication, WsgiPool, wsgiResource

#: where the chat's own paths go when an application is mounted (see L{portshare.web})
DEFAULT_APP_PREFIX = "/chat"


class AppLoadError(ValueError):
    """A dotted name that does not import, names nothing, or names the wrong kind of object."""


#: a twisted.web resource, or what makes one: called with the reactor if it takes an argument
ResourceSource = IResource | Callable[..., Any]


@dataclass(frozen=True)
class WsgiApp:
    """
    A WSGI application served for every path portshare does not serve itself.

    @ivar application: C{application(environ, start_response)}.
    @ivar poolSize: threads running the application at once (C{--wsgi-threads}).
    @ivar threads: where it runs: C{None} for a L{WsgiPool} of C{poolSize} threads that the
        service starts and stops; a test passes L{portshare.testing.SynchronousThreads} to run
        each request at once in its own thread (the seam test kits build on).
    """

    application: WsgiApplication
    poolSize: int = 10
    threads: IWsgiThreads | None = None


@dataclass(frozen=True)
class ResourceApp:
    """
    A twisted.web resource served for every path portshare does not serve itself, as if it
    were the root of the tree (it sees every path whole).

    @ivar resource: an L{IResource}, or a callable returning one: called with the reactor if
        it takes an argument, without one otherwise (klein's C{app.resource}).
    """

    resource: ResourceSource


@dataclass(frozen=True)
class ProxyApp:
    """
    An HTTP application anywhere (any language) that every path portshare does not serve
    itself is relayed to (L{portshare.proxy}).

    @ivar url: C{http://host:port} or C{https://host:port}, with an optional base path.
    @ivar connectTimeout: seconds the backend has to accept the connection (then 504).
    @ivar responseTimeout: seconds the backend has to start its answer, and then between two
        pieces of its body (then 504, or the client's connection cut mid-body).
    """

    url: str
    connectTimeout: float = 5.0
    responseTimeout: float = 60.0


#: what C{Settings.app} holds
AppSpec = WsgiApp | ResourceApp | ProxyApp


@dataclass
class MountedApp:
    """
    An application ready for the tree: the resource the tree falls back to, and the service
    that must run while it serves (its threads, its connections to a backend).
    """

    resource: IResource
    service: IService


def _import(candidate: str, name: str, option: str) -> Any:
    """
    The module C{candidate}, or C{None} when there is no such module.

    @raise AppLoadError: it exists but failed at import (a syntax error, a missing
        dependency, an exception of its own).
    """
    try:
        return importlib.import_module(candidate)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if candidate == missing or candidate.startswith(missing + "."):
            return None
        raise AppLoadError(f"{option} {name}: importing {candidate} failed: {e}") from None
    except Exception as e:
        raise AppLoadError(
            f"{option} {name}: importing {candidate} raised {type(e).__name__}: {e}"
        ) from None


def loadName(name: str, option: str) -> Any:
    """
    The object C{name} names (C{pkg.mod.attr} or C{pkg.mod:attr}): the longest prefix that
    imports is the module, the rest are attributes read from it.

    @param option: the option it came with, for the error's message (C{--wsgi}).
    @raise AppLoadError: it does not import, or names nothing.
    """
    moduleName, _, attributePath = name.partition(":")
    parts = moduleName.split(".") + (attributePath.split(".") if attributePath else [])
    colon = ":" in name
    if (
        name.count(":") > 1
        or (colon and not attributePath)
        or not all(part.isidentifier() for part in parts)
    ):
        raise AppLoadError(f"{option} {name!r} is not a dotted name (package.module.attribute)")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if attributePath:
        module = _import(moduleName, name, option)
        attributes = attributePath.split(".")
        if module is None:
            raise AppLoadError(f"{option} {name}: there is no module named {moduleName}")
    else:
        module, attributes = None, []
        for i in range(1, len(parts) + 1):
            candidate = ".".join(parts[:i])
            imported = _import(candidate, name, option)
            if imported is None:
                break
            module, moduleName, attributes = imported, candidate, parts[i:]
        if module is None:
            raise AppLoadError(f"{option} {name}: there is no module named {parts[0]}")
    obj, path = module, moduleName
    for attribute in attributes:
        try:
            obj = getattr(obj, attribute)
        except AttributeError:
            raise AppLoadError(f"{option} {name}: {path} has no attribute {attribute}") from None
        except Exception as e:
            raise AppLoadError(
                f"{option} {name}: reading {path}.{attribute} raised {type(e).__name__}: {e}"
            ) from None
        path = f"{path}.{attribute}"
    return obj


def _kind(obj: Any) -> str:
    """What C{obj} is, in a few words for an error message."""
    if inspect.ismodule(obj):
        return f"the module {obj.__name__}"
    if isinstance(obj, type):
        return f"the class {obj.__qualname__}"
    text = repr(obj)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"the {type(obj).__name__} {text}"


def loadWsgi(name: str) -> WsgiApplication:
    """
    The WSGI application C{name} names (C{--wsgi}).

    @raise AppLoadError: it does not import, names nothing, or names something that is not
        a WSGI application (a callable taking C{environ} and C{start_response}).
    """
    app = loadName(name, "--wsgi")
    if isinstance(app, type) or inspect.ismodule(app) or not callable(app):
        raise AppLoadError(
            f"--wsgi {name}: {_kind(app)} is not a WSGI application "
            "(a callable taking environ and start_response)"
        )
    try:
        inspect.signature(app).bind(object(), object())
    except TypeError:
        raise AppLoadError(
            f"--wsgi {name}: {_kind(app)} does not take (environ, start_response), "
            "so it is not a WSGI application"
        ) from None
    except ValueError:
        pass  # no signature to read (a builtin): take it on trust
    return app  # type: ignore[no-any-return]


def _takesReactor(factory: Callable[..., Any]) -> bool | None:
    """Whether C{factory} must be called with the reactor; C{None} if it cannot be called
    with or without one."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return False
    for args in ((), (object(),)):
        try:
            signature.bind(*args)
        except TypeError:
            continue
        return bool(args)
    return None


def loadResource(name: str) -> ResourceSource:
    """
    The resource C{name} names (C{--resource}): an L{IResource}, or a callable returning one.
    A callable that takes no argument (klein's C{app.resource}) is called now, so that a
    wrong result is a usage error too; one that takes the reactor is called by L{mountApp}.

    @raise AppLoadError: it does not import, names nothing, or names neither a resource nor
        a callable returning one.
    """
    found = loadName(name, "--resource")
    if IResource.providedBy(found):
        return found  # type: ignore[no-any-return]
    if not callable(found) or inspect.ismodule(found):
        raise AppLoadError(
            f"--resource {name}: {_kind(found)} is not a twisted.web resource (IResource) "
            "nor a callable returning one"
        )
    takesReactor = _takesReactor(found)
    if takesReactor is None:
        raise AppLoadError(
            f"--resource {name}: {_kind(found)} cannot be called with the reactor or with "
            "nothing, so it cannot make the resource"
        )
    if takesReactor:
        return found  # type: ignore[no-any-return]
    return _made(found, (), name)


def _made(factory: Callable[..., Any], args: Sequence[Any], name: str) -> IResource:
    try:
        made = factory(*args)
    except Exception as e:
        raise AppLoadError(
            f"--resource {name}: calling it raised {type(e).__name__}: {e}"
        ) from None
    if not IResource.providedBy(made):
        raise AppLoadError(
            f"--resource {name}: it returned {_kind(made)}, not a twisted.web resource (IResource)"
        )
    return made  # type: ignore[no-any-return]


def resolveResource(source: ResourceSource, reactor: Any) -> IResource:
    """
    The resource of a L{ResourceApp}: C{source} itself, or what it returns.

    @raise AppLoadError: the callable did not return an L{IResource}.
    """
    if IResource.providedBy(source):
        return source  # type: ignore[return-value]
    module = getattr(source, "__module__", None)
    qualname = getattr(source, "__qualname__", None)
    name = f"{module}.{qualname}" if module and qualname else repr(source)
    takesReactor = _takesReactor(source)
    return _made(source, (reactor,) if takesReactor else (), name)


def mountApp(
    spec: AppSpec,
    reactor: Any,
    *,
    shutdownTimeout: float = 5.0,
    trustedProxies: Sequence[Network] = (),
) -> MountedApp:
    """
    The resource and service of C{spec}, on C{reactor}.

    @param shutdownTimeout: what the WSGI pool's calls in flight get at shutdown.
    @param trustedProxies: the peers whose forwarding headers the proxy keeps.
    @raise AppLoadError: a L{ResourceApp}'s callable did not return a resource.
    """
    if isinstance(spec, WsgiApp):
        if spec.threads is not None:
            return MountedApp(wsgiResource(spec.application, spec.threads), Service())
        pool = WsgiPool(reactor, spec.poolSize, shutdownTimeout)
        return MountedApp(wsgiResource(spec.application, pool), pool)
    if isinstance(spec, ResourceApp):
        return MountedApp(resolveResource(spec.resource, reactor), Service())
    from portshare.proxy import ReverseProxy

    proxy = ReverseProxy(
        reactor,
        spec.url,
        connectTimeout=spec.connectTimeout,
        responseTimeout=spec.responseTimeout,
        trustedProxies=trustedProxies,
    )
    return MountedApp(proxy.resource, proxy)
