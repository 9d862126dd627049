"""
portshare: HTTP and WebSocket on one port, through one twisted.web resource tree.

A request carrying C{Upgrade: websocket} on C{/ws} is answered C{101 Switching Protocols} and
its socket speaks WebSocket from then on; every other request on the same port stays HTTP.
Run it with C{twistd portshare}; embed it with L{portshare.service.PortshareService}.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
