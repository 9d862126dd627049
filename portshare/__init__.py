"""
portshare: HTTP and WebSocket on one port, through one twisted.web resource tree.

A request carrying C{Upgrade: websocket} on C{/ws} is answered C{101 Switching Protocols} and
its socket speaks WebSocket from then on; every other request on the same port stays HTTP.
Run it with C{twistd portshare}; embed it with L{Chat} (docs/embedding.md).

The names below are the public Python API, kept compatible within a major version; every
other module is internal and may change.  They are imported when first used, so that
C{import portshare.client} (the command-line client) or one submodule stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: each public name, and the internal module it comes from
_PUBLIC = {
    "ALLOW": "portshare.policy",
    "AllowAll": "portshare.policy",
    "BadRequest": "portshare.errors",
    "Chat": "portshare.embedding",
    "Forbidden": "portshare.errors",
    "IPolicy": "portshare.policy",
    "Identity": "portshare.identity",
    "Limits": "portshare.limits",
    "Message": "portshare.wire",
    "PortshareError": "portshare.errors",
    "Presence": "portshare.wire",
    "PresenceBatch": "portshare.wire",
    "Principal": "portshare.policy",
    "ProxyApp": "portshare.apps",
    "RemoteError": "portshare.errors",
    "ResourceApp": "portshare.apps",
    "RoomEvent": "portshare.rooms",
    "Settings": "portshare.service",
    "Subscription": "portshare.hub",
    "TooLarge": "portshare.errors",
    "Unauthorized": "portshare.errors",
    "Unavailable": "portshare.errors",
    "Verdict": "portshare.policy",
    "WsgiApp": "portshare.apps",
}

__all__ = [
    "ALLOW",
    "AllowAll",
    "BadRequest",
    "Chat",
    "Forbidden",
    "IPolicy",
    "Identity",
    "Limits",
    "Message",
    "PortshareError",
    "Presence",
    "PresenceBatch",
    "Principal",
    "ProxyApp",
    "RemoteError",
    "ResourceApp",
    "RoomEvent",
    "Settings",
    "Subscription",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "Verdict",
    "WsgiApp",
    "__version__",
]

if TYPE_CHECKING:
    from portshare.apps import ProxyApp, ResourceApp, WsgiApp
    from portshare.embedding import Chat
    from portshare.errors import (
        BadRequest,
        Forbidden,
        PortshareError,
        RemoteError,
        TooLarge,
        Unauthorized,
        Unavailable,
    )
    from portshare.hub import Subscription
    from portshare.identity import Identity
    from portshare.limits import Limits
    from portshare.policy import ALLOW, AllowAll, IPolicy, Principal, Verdict
    from portshare.rooms import RoomEvent
    from portshare.service import Settings
    from portshare.wire import Message, Presence, PresenceBatch


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'portshare' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
