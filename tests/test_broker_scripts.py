"""
Tests for L{portshare.broker.scripts}: the Lua scripts the Redis broker runs, as Redis is given
them.
"""

from __future__ import annotations

from hashlib import sha1
from importlib.resources import files

from twisted.trial.unittest import SynchronousTestCase

from portshare.broker.scripts import SCRIPTS

#: The SHA1 of each script's full text (the shared prelude and the script).  Redis names a
#: script by this SHA1 (EVALSHA): a change here is a change of what Redis runs, never a mere
#: move.  History: first computed from the scripts written as Python strings in
#: portshare/broker/rediscore.py at 59ef69d; changed by issue 16's throughput work (a batched,
#: leaner PUBLISH; the generation passed in; TOUCH and INDEX added; see CHANGELOG.md);
#: changed by issue 15 (a message's user in PUBLISH's ARGV and entries; presence users: the
#: users hash and announce() in the prelude).
PINNED_SHA1 = {
    "server": "6b33e1dfd5331a400a8ae2209f6da5e83480e1a6",
    "publish": "b2b3218d0932554a22b3662b00be517a7d174ddb",
    "snapshot": "97a76e771f38317cc47020e0b0ef275bbdd5e7ab",
    "history": "f99fd19a030fd2e5603d8864ec99c67ff1b78d03",
    "catch-up": "efb0268f3436b3dbfec536e0656013a9830e31c2",
    "enter": "4a9c1b0ccc8d55d601b8f65c63256214fbac2db1",
    "exit": "a11d6021bc8fdaeb4ae64c6cbfd6b0c761cfedba",
    "sync": "fe16d5b5ee34431d9d0a0e022c63e2075f47d167",
    "members": "b334a7f01b0e5a9b8b2d703523bab1fabdd567e0",
    "tick": "9b63223f781039f7d18e01c9368023a555937404",
    "rooms": "0a4e91d15f5344c34998e7e443b4dda332138b64",
    "touch": "8e23ca11f433d72a0988cbcd56c650c4b6f48cc6",
    "index": "d5cac172cf5f0efe3ab4e2c37736c78c2b32921f",
}


class ScriptsTests(SynchronousTestCase):
    """Every script is the text it always was, shared helpers included."""

    def test_textsArePinned(self) -> None:
        """Each script's text, as sent to Redis (UTF-8), has its pinned SHA1, in this order."""
        self.assertEqual(
            [(script.name, sha1(script.text.encode("utf-8")).hexdigest()) for script in SCRIPTS],
            list(PINNED_SHA1.items()),
        )

    def test_scriptsShareHelpers(self) -> None:
        """Every script carries the shared Lua helpers and returns something."""
        for script in SCRIPTS:
            self.assertIn("local function ensure", script.text)
            self.assertIn("return", script.body)

    def test_oneFilePerScript(self) -> None:
        """lua/ holds the shared helpers and one file per script, named after it: no other."""
        names = sorted(p.name for p in (files("portshare.broker") / "lua").iterdir())
        self.assertEqual(
            names, sorted(["_common.lua", *(f"{script.name}.lua" for script in SCRIPTS)])
        )
