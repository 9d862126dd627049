"""
Tests for L{portshare.broker.url}: C{--broker} values, parsed or refused.
"""

from __future__ import annotations

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from portshare.broker.url import BrokerURL, parseBrokerURL


class ParseBrokerURLTests(SynchronousTestCase):
    """--broker values are parsed, or refused with a message for the command line."""

    def test_memory(self) -> None:
        """memory is the in-memory broker, not shared."""
        self.assertFalse(parseBrokerURL("memory").shared)

    def test_redisDefaults(self) -> None:
        """A bare redis:// URL means port 6379, database 0, prefix portshare."""
        url = parseBrokerURL("redis://cache.internal")
        self.assertEqual(
            (url.scheme, url.host, url.port, url.db, url.prefix),
            ("redis", "cache.internal", 6379, 0, "portshare"),
        )
        self.assertTrue(url.shared)

    def test_everything(self) -> None:
        """Credentials, database and every query parameter are read."""
        url = parseBrokerURL(
            "rediss://user:p%40ss@[::1]:6380/2?prefix=chat&presence_ttl=3&room_ttl=0&timeout=1.5"
        )
        self.assertEqual(
            (url.scheme, url.host, url.port, url.db, url.username, url.password),
            ("rediss", "::1", 6380, 2, "user", "p@ss"),
        )
        self.assertEqual(
            (url.prefix, url.presenceTtl, url.roomTtl, url.timeout), ("chat", 3, 0, 1.5)
        )
        self.assertEqual(url.describe(), "rediss://[::1]:6380/2")
        self.assertNotIn("p@ss", repr(url))

    def test_unix(self) -> None:
        """unix:///path takes the database as a query parameter."""
        url = parseBrokerURL("unix:///run/redis/redis.sock?db=4")
        self.assertEqual((url.scheme, url.path, url.db), ("unix", "/run/redis/redis.sock", 4))
        self.assertEqual(url.describe(), "unix:///run/redis/redis.sock?db=4")

    def test_refused(self) -> None:
        """Each kind of mistake gets its own explanation."""
        cases = {
            "mysql://x": "is not a broker URL",
            "redis://h/x": "database must be a number",
            "redis://h?db=1": "give the database as the path",
            "redis://h?colour=red": "unknown parameter 'colour'",
            "redis://h?presence_ttl=0": "presence_ttl must be positive",
            "redis://h?room_ttl=-1": "room_ttl must be 0 or more",
            "redis://h?timeout=soon": "timeout must be a number",
            "redis://h?prefix=a:b": "prefix must be",
            "redis://h?durable=yes": "durable must be 0 or 1",
            "redis:///0": "names no host",
            "unix://host/path": "unix:///path/redis.sock",
            "redis://h:99999": "out of range",
        }
        for text, expected in cases.items():
            with self.assertRaises(ValueError, msg=text) as raised:
                parseBrokerURL(text)
            self.assertIn(expected, str(raised.exception), text)


class SentinelURLTests(SynchronousTestCase):
    """redis+sentinel:// URLs: the sentinels, the master's name and db, or a clear refusal."""

    def test_everything(self) -> None:
        """Sentinels (default port 26379, IPv6 in brackets), credentials, name, db, query."""
        url = parseBrokerURL(
            "redis+sentinel://p%40ss@s1:26380,[::1]:26381,s3/my-master.1/3"
            "?sentinel_password=x%26y&sentinel_timeout=0.25&prefix=chat"
        )
        self.assertEqual(
            (url.scheme, url.sentinels, url.masterName, url.db, url.password, url.username),
            (
                "redis+sentinel",
                (("s1", 26380), ("::1", 26381), ("s3", 26379)),
                "my-master.1",
                3,
                "p@ss",
                None,
            ),
        )
        self.assertEqual((url.sentinelPassword, url.sentinelTimeout), ("x&y", 0.25))
        self.assertEqual((url.host, url.port, url.prefix, url.shared), (None, None, "chat", True))

    def test_credentials(self) -> None:
        """A lone userinfo is the master's password; user:password and :password as redis://."""
        self.assertEqual(
            parseBrokerURL("redis+sentinel://u:pw@s/m").username,
            "u",
        )
        self.assertEqual(parseBrokerURL("redis+sentinel://:pw@s/m").password, "pw")
        self.assertEqual(parseBrokerURL("redis+sentinel://s/m").password, None)

    def test_describeHidesPasswords(self) -> None:
        """describe() lists the sentinels and the name, never a password."""
        url = parseBrokerURL("redis+sentinel://pw@s1,[::1]:2/m?sentinel_password=spw")
        self.assertEqual(url.describe(), "redis+sentinel://s1:26379,[::1]:2/m/0")
        self.assertNotIn("pw", repr(url))

    def test_refused(self) -> None:
        """Malformed and hostile sentinel URLs are refused, each with its explanation."""
        cases = {
            "redis+sentinel://s1:26379": "name the master",
            "redis+sentinel://s1:26379/": "name the master",
            "redis+sentinel:///m": "empty sentinel address",
            "redis+sentinel://s1,,s2/m": "empty sentinel address",
            "redis+sentinel://s1,/m": "empty sentinel address",
            "redis+sentinel://s1:0/m": "must be 1 to 65535",
            "redis+sentinel://s1:65536/m": "must be 1 to 65535",
            "redis+sentinel://s1:-1/m": "must be 1 to 65535",
            "redis+sentinel://s1:\uff12\uff16/m": "must be 1 to 65535",  # (full-width digits)
            "redis+sentinel://s1:1:2/m": "must be 1 to 65535",
            "redis+sentinel://s%201/m": "is not a sentinel address",
            "redis+sentinel://s_1\x00/m": "is not a sentinel address",
            "redis+sentinel://[::1/m": "is not a broker URL",
            "redis+sentinel://[zz]:1/m": "is not a broker URL",
            "redis+sentinel://[::1]x/m": "is not a sentinel address",
            "redis+sentinel://s/m/x": "database must be a number",
            "redis+sentinel://s/m/-1": "database must be a number",
            "redis+sentinel://s/m/0/1": "/master_name or /master_name/db",
            "redis+sentinel://s/m/": "/master_name or /master_name/db",
            "redis+sentinel://s/m%0aSHUTDOWN": "master name must be",
            "redis+sentinel://s/m%20n": "master name must be",
            "redis+sentinel://s/" + "m" * 129: "master name must be",
            "redis+sentinel://s/m?db=1": "give the database as the path",
            "redis+sentinel://s/m?sentinel_timeout=0": "sentinel_timeout must be positive",
            "redis+sentinel://s/m?sentinel_timeout=x": "sentinel_timeout must be a number",
            "redis+sentinel://s/m?colour=red": "unknown parameter 'colour'",
            "redis://h?sentinel_password=x": "only for redis+sentinel",
            "unix:///r.sock?sentinel_timeout=1": "only for redis+sentinel",
            "redis+sentinel://" + ",".join(f"s{i}" for i in range(17)) + "/m": "at most 16",
        }
        for text, expected in cases.items():
            with self.assertRaises(ValueError, msg=text) as raised:
                parseBrokerURL(text)
            self.assertIn(expected, str(raised.exception), text)


class BrokerURLTests(SynchronousTestCase):
    """The URL object hides credentials."""

    def test_describe(self) -> None:
        """describe() never shows the password."""
        url = BrokerURL("redis", host="h", port=1, password="secret")
        self.assertEqual(url.describe(), "redis://h:1/0")
        self.assertEqual(BrokerURL("memory").describe(), "memory")


class ImportTests(SynchronousTestCase):
    """The URL parser stands alone."""

    def test_importsNothingOfRedis(self) -> None:
        """
        Parsing a --broker value (as tap.py does, for memory too) imports no other part of
        the broker and no Redis client.
        """
        code = (
            "import sys\n"
            "from portshare.broker.url import parseBrokerURL\n"
            "parseBrokerURL('redis://h:1/0')\n"
            "print(sorted(m for m in sys.modules if m.startswith('portshare') or 'redis' in m))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        )
        self.assertEqual(
            result.stdout.strip(), "['portshare', 'portshare.broker', 'portshare.broker.url']"
        )
