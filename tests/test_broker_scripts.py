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
#: leaner PUBLISH; the generation passed in; TOUCH and INDEX added; see CHANGELOG.md).
PINNED_SHA1 = {
    "server": "30112767be818dd8d968495f6a0440235a0d478e",
    "publish": "926c27c9d0c11e24d8651c7c1f5137cb710ef6bc",
    "snapshot": "c1da90a3c42de16e5c061a0e07c8e7997c88b7c2",
    "history": "6ca807a8b30ba7c8ed91a6d74253fda9ec77e621",
    "catch-up": "6a3171f8e42b5f9d0a6cf182cb28788eb96a0ce7",
    "enter": "57836297a1912f2e66d8404b360eecf8e32450ea",
    "exit": "9235c30ae64ad19d410ab796be66fc98f760b2fc",
    "sync": "b6890f5a5fecfc2a1bed709ba1e7ca65e35008d4",
    "members": "117f932ca76a6ab92cc9dd458cd32eb8c65a98a0",
    "tick": "0776f8b95d2d4c9d88e927feeb0bb8498303c38a",
    "rooms": "917b285cadd6ee9b992ee9ed32da7a6469eb899a",
    "touch": "6ae9857b251b295d66684ff79a7d5b2076fd8fad",
    "index": "adc4a257c05abe0ee097d867e991b6bb1d555ab8",
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
