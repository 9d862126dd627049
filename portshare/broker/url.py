"""
The C{--broker} URL: what it names, and the tunables it carries.

It has a module of its own because C{tap.py} parses C{--broker} while it validates the
options, for C{--broker memory} too: parsing a URL must not import the Redis broker (its
client library, its scripts), which is an optional extra.  This module imports nothing but the
standard library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_REDIS_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
#: sentinels one URL may name at most (each is asked in turn: a bound on one discovery)
MAX_SENTINELS = 16
_MASTER_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
_HOST = re.compile(r"[A-Za-z0-9._-]{1,253}")


@dataclass(frozen=True)
class BrokerURL:
    """
    A parsed C{--broker} value.

    @ivar scheme: C{memory}, C{redis}, C{rediss} (TLS), C{unix} or C{redis+sentinel}.
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
    @ivar sentinels: C{redis+sentinel}: the sentinels' C{(host, port)}, asked in this order
        for the master's address (C{host} and C{port} are then C{None}: the master is found
        at every connection).
    @ivar masterName: C{redis+sentinel}: the name the sentinels monitor the master under.
    @ivar sentinelPassword: C{redis+sentinel}: the sentinels' own password, when they have
        one (C{password} is the master's).
    @ivar sentinelTimeout: C{redis+sentinel}: seconds one sentinel may take to answer
        before the next one is asked.
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
    sentinels: tuple[tuple[str, int], ...] = ()
    masterName: str | None = None
    sentinelPassword: str | None = field(default=None, repr=False)
    sentinelTimeout: float = 1.0

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
        if self.scheme == "redis+sentinel":
            hosts = ",".join(f"{_bracket(h)}:{p}" for h, p in self.sentinels)
            return f"redis+sentinel://{hosts}/{self.masterName}/{self.db}"
        return f"{self.scheme}://{_bracket(self.host or '')}:{self.port}/{self.db}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


_QUERY = {
    "prefix": "prefix",
    "presence_ttl": "presenceTtl",
    "room_ttl": "roomTtl",
    "timeout": "timeout",
    "db": "db",
    "durable": "durable",
    "sentinel_password": "sentinelPassword",
    "sentinel_timeout": "sentinelTimeout",
}
_SENTINEL_ONLY = ("sentinelPassword", "sentinelTimeout")


def parseBrokerURL(text: str) -> BrokerURL:
    """
    Parse C{memory}, C{redis://[user:password@]host[:port][/db]}, C{rediss://...} (TLS) or
    C{unix:///path/redis.sock[?db=N]}, or
    C{redis+sentinel://[[user]:password@]host:port[,host:port...]/MASTER_NAME[/db]} (Redis
    Sentinel: the sentinels' addresses, asked for the master's; a lone C{password@} is the
    master's password).  Query parameters (all schemes but C{memory}): C{prefix},
    C{presence_ttl}, C{room_ttl}, C{timeout} (seconds), C{durable} (0 or 1: the Redis
    persists every write), C{db} for C{unix}, and for C{redis+sentinel}
    C{sentinel_password} and C{sentinel_timeout} (seconds, each sentinel; default 1).

    @raise ValueError: with a message fit for the command line.
    """
    if text == "memory":
        return BrokerURL("memory")
    try:
        parts = urlsplit(text)
    except ValueError as e:
        raise ValueError(f"{text!r} is not a broker URL: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix", "redis+sentinel"):
        raise ValueError(
            f"{text!r} is not a broker URL: use memory, redis://host:port/db, "
            "rediss://host:port/db, unix:///path/redis.sock?db=N or "
            "redis+sentinel://host:port,host:port/master_name/db"
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
        if key in _SENTINEL_ONLY and scheme != "redis+sentinel":
            raise ValueError(f"{text!r}: {name} is only for redis+sentinel:// URLs")
        if key == "sentinelPassword":
            values[key] = value
            continue
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
        elif key in ("presenceTtl", "timeout", "sentinelTimeout") and not (
            number is not None and number > 0
        ):
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
    if scheme == "redis+sentinel":
        return _parseSentinel(text, parts.netloc, parts.path, values)
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


def _parseSentinel(text: str, netloc: str, path: str, values: dict[str, Any]) -> BrokerURL:
    """The rest of a C{redis+sentinel://} URL: credentials, sentinels, master name, db."""
    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon:
            if user:
                values["username"] = unquote(user)
            values["password"] = unquote(password)
        else:  # the protocol's form: redis+sentinel://password@host:port/...
            values["password"] = unquote(user)
    sentinels: list[tuple[str, int]] = []
    for item in hosts.split(","):
        sentinels.append(_sentinelAddress(text, item))
    if len(sentinels) > MAX_SENTINELS:
        raise ValueError(f"{text!r}: at most {MAX_SENTINELS} sentinels")
    segments = path.split("/")[1:] if path.startswith("/") else []
    if not segments or not segments[0]:
        raise ValueError(
            f"{text!r}: name the master after the sentinels "
            "(redis+sentinel://host:26379/mymaster/0)"
        )
    if len(segments) > 2 or (len(segments) == 2 and not segments[1]):
        raise ValueError(f"{text!r}: the path is /master_name or /master_name/db")
    name = unquote(segments[0])
    if not _MASTER_NAME.fullmatch(name):
        raise ValueError(f"{text!r}: the master name must be 1 to 128 of A-Z a-z 0-9 . _ -")
    if len(segments) == 2:
        if not segments[1].isascii() or not segments[1].isdigit():
            raise ValueError(f"{text!r}: the database must be a number (.../mymaster/0)")
        values["db"] = int(segments[1])
    values["sentinels"] = tuple(sentinels)
    values["masterName"] = name
    return BrokerURL(**values)


def _sentinelAddress(text: str, item: str) -> tuple[str, int]:
    """C{host[:port]} or C{[v6]:port} of one sentinel, checked."""
    if not item:
        raise ValueError(f"{text!r}: an empty sentinel address (write host:port,host:port)")
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or not host or not all(c in "0123456789abcdefABCDEF:." for c in host):
            raise ValueError(f"{text!r}: {item!r} is not a sentinel address")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: {item!r} is not a sentinel address")
        port = rest[1:] if rest else ""
    else:
        host, _, port = item.partition(":")
        if not _HOST.fullmatch(host):
            raise ValueError(f"{text!r}: {item!r} is not a sentinel address")
    if not port:
        return host, DEFAULT_SENTINEL_PORT
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: the port of {item!r} must be 1 to 65535")
    return host, int(port)
