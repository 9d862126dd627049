"""
L{Chat}: portshare as a library, the one way the service is built (C{twistd portshare} too).

An application that already has a twisted.web tree mounts the chat's resource in it; one
that has none lets the chat listen (C{ports}) with its pages beside it (C{app}).  Either way
the application publishes and subscribes from its own code, in-process, with typed events.
See docs/embedding.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IProtocolFactory
from twisted.web.resource import IResource

from portshare.broker import IBroker
from portshare.chat import RoomInfo
from portshare.errors import RemoteError
from portshare.hub import Subscription
from portshare.proxies import parseNetworks
from portshare.rooms import RoomEvent
from portshare.service import PortshareService, Settings
from portshare.wire import validNick, validRoom, validText

__all__ = ["Chat"]


class Chat:
    """
    The portshare chat: its hub, its resource tree, its service.

    @param reactor: what it listens, connects and schedules with (a
        C{MemoryReactorClock} in tests).
    @param settings: every option of C{twistd portshare} except the process-wide C{--workers}
        and C{--log-format} (see L{Settings}); C{options} override single fields of it:
        C{Chat(reactor, broker="redis://127.0.0.1:6379/0", allowedOrigins=["https://*.example"])}.
        Unlike C{twistd portshare}, a C{Chat} listens nowhere unless C{ports} says so.
    @param broker: the broker's URL (C{settings.broker}: C{"memory"}, C{"redis://..."}), or
        an L{portshare.broker.IBroker} object to use instead of the one the URL names.
    @param http: the HTTP client (treq's interface) the JWKS fetches and the hook calls go
        through, instead of a connection pool of the chat's own: a test's fake backend
        (L{portshare.testing.FakeHookBackend}).
    @raise TypeError: an option that is not a L{Settings} field.
    @raise ValueError: an option with a value out of its range (the limits, the prefix, the
        trusted proxies), with the reason.

    @ivar service: starts and stops everything: the broker, the WebSocket factories, the
        application's thread pool, the listeners of C{ports}; at stop, a graceful close of
        every chat connection (1001), wherever its resource was mounted.
    @ivar settings: the settings it was built with.
    """

    def __init__(
        self,
        reactor: Any,
        settings: Settings | None = None,
        *,
        broker: IBroker | str | None = None,
        http: Any = None,
        **options: Any,
    ) -> None:
        if isinstance(broker, str):
            options["broker"] = broker
            broker = None
        settings = dataclasses.replace(settings or Settings(), **_normalized(options))
        self.settings = settings
        self._service = PortshareService(settings, reactor, broker=broker, http=http)

    @property
    def service(self) -> IService:
        """The service to start and stop with the application (C{setServiceParent})."""
        return self._service

    def resource(self) -> IResource:
        """
        The chat's whole tree, to mount where the application wants it
        (C{root.putChild(b"chat", chat.resource())}): the web client, C{api/}, C{sse},
        C{ws} (WebSocket and C{Upgrade: portshare-lines}), C{healthz} and C{metrics}.
        Always the same object; C{ports} serve it too (beside C{app}, under C{chatPrefix}).
        """
        return self._service.chatTree  # type: ignore[no-any-return]

    def publish(self, room: str, text: str, nick: str = "server") -> Deferred[int]:
        """
        Say C{text} in C{room} as C{nick}, from the application's own code: every member of
        the room, on every instance, gets it as a C{message} event, and it is kept in the
        room's history like any other.

        @return: a Deferred firing with the message's offset once the broker has it, or
            failing with a L{RemoteError} (L{BadRequest}, L{portshare.errors.TooLarge}: an
            invalid room, nick or text, checked as the wire checks a client's) or
            L{portshare.errors.Unavailable} (the broker cannot take it).
        """
        try:
            room = validRoom(room)
            nick = validNick(nick)
            text = validText(text, self.settings.limits.maxText)
        except RemoteError as e:
            return fail(e)
        return self._service.hub.publish(room, nick, text).addCallback(lambda m: m.offset)

    def subscribe(self, room: str, onEvent: Callable[[RoomEvent], None]) -> Subscription:
        """
        Call C{onEvent} with each event of C{room} from now on, in-process: a
        L{portshare.Message}, L{portshare.Presence} or L{portshare.PresenceBatch} (typed
        values, not JSON), the same events the room's members get, from every instance.  The
        subscriber is not a member: it is not in presence and cannot be seen.  An exception
        in C{onEvent} is logged and does not stop the room.

        @return: the L{Subscription}: C{ready} fires once events flow, C{cancel()} ends it.
        @raise BadRequest: an invalid room name.
        """
        return self._service.hub.subscribe(room, onEvent)

    def rooms(self) -> Deferred[list[RoomInfo]]:
        """The rooms with a history, as C{GET /api/rooms} lists them."""
        return self._service.hub.rooms()

    def registerUpgrade(self, token: str, factory: IProtocolFactory) -> None:
        """
        Share the chat's port with another protocol: a request for C{ws} (under the chat's
        resource) with C{Upgrade: token} is answered C{101 Switching Protocols}, and its
        socket is given to a protocol C{factory} builds (C{factory.buildProtocol} gets the
        client's address, and may return C{None} to refuse with a JSON 503).

        @raise ValueError: a token that is not an HTTP token, is C{websocket}, or is taken
            (C{portshare-lines} is the chat's line protocol).
        """
        self._service.upgrades.registerUpgrade(token, factory)

    @property
    def listening(self) -> list[str]:
        """The addresses the service's own C{ports} are bound to now (C{tcp:0} resolved)."""
        return list(self._service.listening)


def _normalized(options: dict[str, Any]) -> dict[str, Any]:
    """The spellings a Python caller writes, as L{Settings} holds them."""
    if "trustedProxies" in options:
        options["trustedProxies"] = tuple(
            network
            for given in options["trustedProxies"]
            for network in (parseNetworks([given]) if isinstance(given, str) else [given])
        )
    for name in ("ports", "allowedOrigins"):
        if name in options:
            if isinstance(options[name], str):
                raise TypeError(f"{name} is a list of strings, not one string")
            options[name] = tuple(options[name])
    if isinstance(options.get("staticDir"), str):
        options["staticDir"] = Path(options["staticDir"])
    if isinstance(options.get("joinSecret"), str):
        options["joinSecret"] = options["joinSecret"].encode("utf-8")
    return options
