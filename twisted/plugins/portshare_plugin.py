"""twistd plugin: C{twistd portshare}. Kept to one line of wiring; see L{portshare.tap}."""

from twisted.application.service import ServiceMaker

portshare = ServiceMaker(
    "portshare",
    "portshare.tap",
    "HTTP and WebSocket chat on one port through one resource tree",
    "portshare",
)
