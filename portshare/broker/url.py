"""
The C{--broker} URL: what it names, and the tunables it carries.

It has a module of its own because C{tap.py} parses C{--broker} while it validates the
options, for C{--broker memory} too: parsing a URL must not import the Redis broker (its
client library, its scripts), which is an optional extra.  This module imports nothing but the
standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_REDIS_PORT = 6379


@dataclass(frozen=True)
class BrokerURL:
    """
    A parsed C{--broker} value.

    @ivar scheme: C{memory}, C{redis}, C{rediss} (TLS) or C{unix}.
    @ivar host: the Redis host (C{redis}, C{rediss}).
    @ivar port: the Redis port (C{redis}, C{rediss}).
    @ivar path: the socket path (C{unix}).
    @ivar db: the database number (C{SELECT}).
    @ivar prefix: the prefix of every key and channel, so several deployments can share a
        Redis.
    @ivar presenceTtl: seconds after which the members of an instance that stopped
        heartbeating are gone.
    @ivar roomTtl: seconds after which an idle room's history expires (0: never).
    @ivar timeout: seconds to connect, and to wait for any reply.
    @ivar durable: whether the Redis persists every write before acknowledging it, so a
        restart loses nothing (detected with C{CONFIG GET} when not said).
    """

    scheme: str
    host: str | None = None
    port: int | None = None
    path: str | None = None
    db: int = 0
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    prefix: str = "portshare"
    presenceTtl: float = 15.0
    roomTtl: float = 7 * 24 * 3600.0
    timeout: float = 5.0
    durable: bool = False

    @property
    def shared(self) -> bool:
        """Whether several processes share this broker (everything but C{memory})."""
        return self.scheme != "memory"

    def describe(self) -> str:
        """The URL without credentials, for logs and C{/healthz}."""
        if self.scheme == "memory":
            return "memory"
        if self.scheme == "unix":
            return f"unix://{self.path}?db={self.db}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/{self.db}"


_QUERY = {
    "prefix": "prefix",
    "presence_ttl": "presenceTtl",
    "room_ttl": "roomTtl",
    "timeout": "timeout",
    "db": "db",
    "durable": "durable",
}


def parseBrokerURL(text: str) -> BrokerURL:
    """
    Parse C{memory}, C{redis://[user:password@]host[:port][/db]}, C{rediss://...} (TLS) or
    C{unix:///path/redis.sock[?db=N]}.  Query parameters (all schemes but C{memory}):
    C{prefix}, C{presence_ttl}, C{room_ttl}, C{timeout} (seconds), C{durable} (0 or 1: the
    Redis persists every write), and C{db} for C{unix}.

    @raise ValueError: with a message fit for the command line.
    """
    if text == "memory":
        return BrokerURL("memory")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"{text!r} is not a broker URL: use memory, redis://host:port/db, "
            "rediss://host:port/db or unix:///path/redis.sock?db=N"
        )
    values: dict[str, Any] = {"scheme": scheme}
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError(f"{text!r}: cannot read the query {parts.query!r}") from None
    for name, value in query:
        if name not in _QUERY:
            raise ValueError(
                f"{text!r}: unknown parameter {name!r} (known: {', '.join(sorted(_QUERY))})"
            )
        key = _QUERY[name]
        if key == "durable":
            if value not in ("0", "1"):
                raise ValueError(f"{text!r}: durable must be 0 or 1")
            values[key] = value == "1"
            continue
        try:
            number = int(value) if key == "db" else float(value)
        except ValueError:
            if key != "prefix":
                raise ValueError(f"{text!r}: {name} must be a number, not {value!r}") from None
            number = None
        if key == "prefix":
            if not value or any(c in value for c in "{}: \t\r\n"):
                raise ValueError(f"{text!r}: prefix must be a non-empty word without {{}}: ")
            values[key] = value
        elif key in ("presenceTtl", "timeout") and not (number is not None and number > 0):
            raise ValueError(f"{text!r}: {name} must be positive")
        elif number is None or number < 0:
            raise ValueError(f"{text!r}: {name} must be 0 or more")
        else:
            values[key] = number
    if scheme == "unix":
        if parts.netloc or not parts.path:
            raise ValueError(f"{text!r}: write a socket path as unix:///path/redis.sock")
        values["path"] = unquote(parts.path)
        return BrokerURL(**values)
    if "db" in values:
        raise ValueError(f"{text!r}: give the database as the path (redis://host:port/db)")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as e:
        raise ValueError(f"{text!r}: {e}") from None
    if not host:
        raise ValueError(f"{text!r}: the URL names no host")
    values["host"] = host
    values["port"] = port or DEFAULT_REDIS_PORT
    path = parts.path.strip("/")
    if path:
        if not path.isdigit():
            raise ValueError(f"{text!r}: the database must be a number (redis://host:port/0)")
        values["db"] = int(path)
    if parts.username:
        values["username"] = unquote(parts.username)
    if parts.password is not None:
        values["password"] = unquote(parts.password)
    return BrokerURL(**values)
