"""
Shared pytest set-up: the test tiers, the hypothesis profiles, and a real redis-server of the
test's own (see L{tests.redisserver}).

Tiers: a test that uses real sockets, processes, servers, a browser or the benchmark is in the
C{integration} tier: marked C{e2e} or C{browser} (then this file adds C{integration}), or in a
module marked C{integration} as a whole.  Everything else runs in memory:

    pytest -m "not integration" --hypothesis-profile=dev     # the fast tier, in seconds
    pytest                                                   # everything (CI)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
from hypothesis import settings

from tests.redisserver import REDIS_SERVER, RedisServer

#: fewer examples for a developer's loop; CI runs hypothesis' default (100 per property)
settings.register_profile("dev", max_examples=10)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Real sockets, servers and browsers are the integration tier."""
    for item in items:
        if item.get_closest_marker("e2e") or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.integration)


@pytest_twisted.async_yield_fixture
async def redisServer(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server on a free loopback port, stopped after the test."""
    if not REDIS_SERVER:
        # never a skip: a missing redis-server must not pass for a green run
        pytest.fail("redis-server is not installed (scripts/test installs it with apt-get)")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
