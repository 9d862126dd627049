"""
Tests for L{portshare.broker.scripts}: the Lua scripts the Redis broker runs, as Redis is given
them.
"""

from __future__ import annotations

from hashlib import sha1
from importlib.resources import files

from twisted.trial.unittest import SynchronousTestCase

from portshare.broker.scripts import SCRIPTS

#: The SHA1 of each script's full text (the shared prelude and the script), as computed from
#: the scripts written as Python strings in portshare/broker/rediscore.py at 59ef69d, before
#: they moved to .lua files.  Redis names a script by this SHA1 (EVALSHA): a change here is a
#: change of what Redis runs, never a mere move.
PINNED_SHA1 = {
    "server": "edd82696e8bff0cb52c182b9fd4ec2e2c9af5389",
    "publish": "86e9151a21ec67d0bb2df73b6cb9213e354bd368",
    "snapshot": "6f0adb8ce07aaee8702aac2891a2d6c38f25873b",
    "history": "428b5e0912e1010e1ca5aaed015a7812683a8103",
    "catch-up": "3679ae58607aba5aacc7973d368750b782911a7e",
    "enter": "26b2c10c3b3d52ac679d74c1eb4d1080730e2cff",
    "exit": "9e9f7409b62e90f5c58e2af6dacfe3beee669a0d",
    "sync": "12f543843860a29f0b88d9686ec095101f4dea7f",
    "members": "a960451107fe8be7a3fe18529ad554649a25dc59",
    "tick": "d0d6eca0d87f017636a74e0dd9000c3a9b0003cd",
    "rooms": "efcecb2959c9878d48b6e8296e3b9d31b65c1f1d",
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
