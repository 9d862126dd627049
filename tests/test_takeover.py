"""
Tests for L{portshare._takeover}: the hand-over of a socket after C{101}, against the real
twisted.web C{HTTPChannel} of the installed Twisted (not a fake that mirrors its fields).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from portshare import _takeover
from portshare._takeover import CHANNEL_PRIVATE, pendingBytes, takeOver


class Recorder(Protocol):
    """The protocol the socket is handed to: what it was given."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.connectedTo: Any = None

    def makeConnection(self, transport: Any) -> None:
        self.connectedTo = transport
        super().makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)


class TakingOver(Resource):
    """A resource that hands its request's socket to a L{Recorder}."""

    isLeaf = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.kwargs = kwargs
        self.protocol = Recorder()
        self.leftover: bytes | None = None
        self.requests: list[Request] = []

    def render(self, request: Request) -> Any:
        self.requests.append(request)
        self.leftover = takeOver(request, self.protocol, **self.kwargs)
        return NOT_DONE_YET


class DoneRecordingSite(Site):
    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.done: list[Request] = []

    def requestDone(self, request: Request) -> None:
        self.done.append(request)


def channelFor(resource: Resource) -> tuple[HTTPChannel, StringTransport, DoneRecordingSite]:
    site = DoneRecordingSite(resource)
    channel = HTTPChannel()  # what Site.buildProtocol puts behind its HTTP/2 switch
    channel.site, channel.requestFactory = site, site.requestFactory
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport, site


REQUEST = b"GET /x HTTP/1.1\r\nHost: a\r\nUpgrade: thing\r\nConnection: Upgrade\r\n\r\n"


class ContractTests(SynchronousTestCase):
    def test_privateNamesExist(self) -> None:
        """The installed HTTPChannel still has the private attributes the hand-over reads,
        of the kinds it expects; when this fails, re-read _takeover against Twisted's source
        (it mirrors Twisted {_takeover.MIRRORS_TWISTED})."""
        channel, _, _ = channelFor(Resource())
        for name in CHANNEL_PRIVATE:
            self.assertTrue(hasattr(channel, name), name)
        self.assertIsInstance(channel._dataBuffer, list)
        self.assertTrue(callable(channel.clearLineBuffer))
        self.assertTrue(callable(channel._networkProducer.resumeProducing))


class TakeOverTests(SynchronousTestCase):
    def test_socketChangesHands(self) -> None:
        """After the hand-over the new protocol owns the transport, twisted.web lets go of
        it, the preamble is written first, reading resumes, and the site hears the request
        is done."""
        resource = TakingOver(preamble=b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        channel, transport, site = channelFor(resource)
        channel.dataReceived(REQUEST)
        self.assertIs(resource.protocol.connectedTo, transport)
        self.assertIs(transport.protocol, resource.protocol)
        self.assertIsNone(channel.transport)
        self.assertEqual(transport.value(), b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(site.done, resource.requests)
        self.assertEqual(resource.leftover, b"")

    def test_bytesAfterTheRequestAreKept(self) -> None:
        """Bytes that came in the same read as the request are returned, in order, and
        taken out of twisted.web's buffers."""
        resource = TakingOver()
        channel, _, _ = channelFor(resource)
        channel.dataReceived(REQUEST + b"first frame\r\nsecond")
        self.assertEqual(resource.leftover, b"first frame\r\nsecond")
        self.assertEqual(pendingBytes(channel), b"")

    def test_producerReleasedOrKept(self) -> None:
        """The HTTP channel stops being the socket's producer, unless the caller keeps it
        (Autobahn unregisters it itself when it drops a connection)."""
        channel, transport, _ = channelFor(TakingOver())
        channel.dataReceived(REQUEST)
        self.assertIsNone(transport.producer)
        kept = TakingOver(releaseProducer=False)
        channel, transport, _ = channelFor(kept)
        channel.dataReceived(REQUEST)
        self.assertIs(transport.producer, channel)

    def test_fallbackWithoutPrivateNames(self) -> None:
        """On a Twisted without C{_dataBuffer} and C{_networkProducer}, the line buffer's
        bytes are still kept and reading resumes on the transport itself."""

        class Channel:
            def __init__(self, transport: StringTransport) -> None:
                self.transport = transport

            def clearLineBuffer(self) -> bytes:
                return b"pending"

        class Req:
            site = None

        transport = StringTransport()
        transport.pauseProducing()
        request: Any = Req()
        request.channel = Channel(transport)
        transport.registerProducer(request.channel, True)
        protocol = Recorder()
        self.assertEqual(takeOver(request, protocol), b"pending")
        self.assertIs(transport.protocol, protocol)
        self.assertEqual(transport.producerState, "producing")
        self.assertIsNone(request.channel.transport)


class MirrorsTests(SynchronousTestCase):
    def test_versionNamed(self) -> None:
        """The module names the Twisted version it mirrors, and it is the installed one's
        major release or older (a newer Twisted must be re-checked: the contract test)."""
        import twisted

        self.assertTrue(_takeover.MIRRORS_TWISTED)
        mirrored = tuple(int(p) for p in _takeover.MIRRORS_TWISTED.split(".")[:2])
        installed = tuple(int(p) for p in twisted.__version__.split(".")[:2])
        self.assertLessEqual(mirrored, installed)
