"""
Plain twisted.web resources for C{--resource}: an L{IResource} itself, a callable given the
reactor, and objects of the wrong kinds (for the usage errors).
"""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request


class Page(Resource):
    """Says its path back, and which reactor made it (when one did)."""

    isLeaf = True

    def __init__(self, reactor: Any = None) -> None:
        super().__init__()
        self.reactor = reactor

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return b"resource at " + request.path


#: an IResource provider
root = Page()


def withReactor(reactor: Any) -> Page:
    """A callable that takes the reactor."""
    return Page(reactor)


def notAResource() -> str:
    """A callable that returns the wrong kind of object."""
    return "not a resource"


def wrongWithReactor(reactor: Any) -> str:
    """A callable given the reactor that returns the wrong kind of object."""
    return "not a resource either"


number = 42
