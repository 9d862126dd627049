"""
Is Autobahn's native accelerator (NVX) active in this interpreter?

Prints one JSON object: whether the NVX modules were built (C{HAS_NVX}) and are used
(C{USES_NVX}), and which UTF-8 validator and XOR masker classes Autobahn's WebSocket protocol
module actually resolves, since those are what C{/ws} and C{/ws/echo} run per frame.  Without
NVX both are pure Python and echo loses about a third of its rate.
"""

import json
import os
import sys

import autobahn
import autobahn.websocket as ws
from autobahn.websocket import protocol


def qualname(obj):
    return f"{obj.__module__}.{obj.__qualname__}"


def main():
    validator = protocol.Utf8Validator()
    status = {
        "autobahn": autobahn.__version__,
        "HAS_NVX": ws.HAS_NVX,
        "USES_NVX": ws.USES_NVX,
        "AUTOBAHN_USE_NVX": os.environ.get("AUTOBAHN_USE_NVX"),
        "utf8validator": qualname(type(validator)),
        "xormasker_small": qualname(type(protocol.create_xor_masker(b"abcd", 64))),
        "xormasker_large": qualname(type(protocol.create_xor_masker(b"abcd", 1 << 20))),
    }
    status["active"] = bool(ws.USES_NVX) and "nvx" in status["utf8validator"]
    print(json.dumps(status))
    return 0


if __name__ == "__main__":
    sys.exit(main())
