"""
Which browser origins may use the service: the one rule behind the WebSocket handshake check
(cross-site WebSocket hijacking) and the HTTP API's write check (cross-site request forgery).

A browser says where a request comes from in C{Origin} (every cross-origin request, and every
non-C{GET} one) and, in current browsers, C{Sec-Fetch-Site}.  Clients that are not browsers
send neither and are let through: they could forge both anyway, and the API token (when
configured) is what stops them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

#: C{Sec-Fetch-Site} values that say the request was made by a page on the same origin, or by
#: the person themselves (typed URL, bookmark)
_SAME_SITE_FETCHES = ("same-origin", "none")


def originAllowed(origin: str | None, host: str | None, patterns: Sequence[str]) -> bool:
    """
    The cross-site check of one request (WebSocket handshake or API write).

    @param origin: the request's C{Origin} header; absent for non-browser clients, which
        are allowed (they could forge it anyway).
    @param host: the request's C{Host} header.
    @param patterns: more allowed origins with C{*} wildcards (C{https://*.example.com});
        the page's own origin (same host and port as C{Host}) is always allowed.  An opaque
        origin (C{null}: a sandboxed frame, a C{file:} or C{data:} page; or any origin
        without a host, such as C{file://}) is refused whatever the patterns: any page can
        make itself one, so it names nobody.
    """
    if not origin:
        return True
    origin = origin.strip().lower()
    try:
        parts = urlsplit(origin)
        originHost, originPort = parts.hostname, parts.port
    except ValueError:
        return False
    if originHost is None:  # "null" parses as a path; file:// has no host
        return False
    if any(fnmatchcase(origin, p.lower()) for p in patterns):
        return True
    if not host:
        return False
    try:
        hostParts = urlsplit("//" + host.strip().lower())
        hostName, hostPort = hostParts.hostname, hostParts.port
    except ValueError:
        return False
    default = _DEFAULT_PORTS.get(parts.scheme)
    return originHost == hostName and (originPort or default) == (hostPort or default)


@dataclass(frozen=True)
class OriginPolicy:
    """
    The browser origins the service trusts: the page's own, and C{patterns} (from
    C{--allowed-origin}).  One object serves every WebSocket endpoint's handshake and the
    HTTP API's writes, so the two can never disagree.
    """

    patterns: tuple[str, ...] = ()

    def allowsHandshake(self, origin: str | None, host: str | None) -> bool:
        """Whether a WebSocket handshake with this C{Origin} and C{Host} may go on."""
        return originAllowed(origin, host, self.patterns)

    def refusesWrite(
        self, origin: str | None, fetchSite: str | None, host: str | None
    ) -> str | None:
        """Why a state-changing request is refused (L{crossSiteWrite}), or C{None}."""
        return crossSiteWrite(origin, fetchSite, host, self.patterns)


def crossSiteWrite(
    origin: str | None, fetchSite: str | None, host: str | None, patterns: Sequence[str]
) -> str | None:
    """
    Whether a state-changing request (C{POST}, C{PUT}, C{DELETE}) comes from a browser page on
    an origin that is not allowed: a form or a C{fetch(..., {mode: "no-cors"})} on another
    site can send one without a CORS preflight.

    @param origin: the C{Origin} header (decides when present).
    @param fetchSite: the C{Sec-Fetch-Site} header (decides when C{Origin} is absent).
    @return: why the request is refused, or C{None} when it may go on.
    """
    if origin is not None:
        if originAllowed(origin, host, patterns):
            return None
        return f"origin {origin.strip()[:200]} is not allowed to write here"
    if fetchSite is not None and fetchSite.strip().lower() not in _SAME_SITE_FETCHES:
        return "a page on another site is not allowed to write here"
    return None
