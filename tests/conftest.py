"""Shared pytest fixtures: a real redis-server of the test's own (see L{tests.redisserver})."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted

from tests.redisserver import REDIS_SERVER, RedisServer


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
