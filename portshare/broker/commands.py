"""
The server API's commands for a broker that cannot reach other instances yet: this
instance's own answer only.  The memory broker serves one process, so that is all there is;
the Redis broker relays commands between instances over pub/sub instead (see its module).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed

#: what answers a command on one instance (the hub's L{portshare.hub.Hub.answerCommand})
Answerer = Callable[[dict[str, Any]], dict[str, Any]]


class LocalCommands:
    """L{portshare.broker.IBroker}'s C{answerCommands} and C{command}, for one instance."""

    _answerer: Answerer | None = None

    def answerCommands(self, answerer: Answerer) -> None:
        self._answerer = answerer

    def command(self, message: dict[str, Any]) -> Deferred[list[dict[str, Any]]]:
        if self._answerer is None:
            return succeed([])
        return succeed([self._answerer(message)])
