"""
The floor under scenario F1 with Redis: one client's blocking round trips to a redis-server
(PING, and a script like the publish script), in microseconds each.

    python bench/redis_rtt.py --port 6379 [--count 5000]

Run it against a redis-server started for the purpose (this script starts none and writes
only the keys C{rtt{x}}, C{rttlog{x}}, C{rttch{x}}).  One C{say} at a time through Redis
waits for at least one such round trip more than through the memory broker, so this bounds
F1's Redis / memory ratio on the machine: at best memory_cycle / (memory_cycle + rtt).
"""

from __future__ import annotations

import argparse
import socket
import time

import hiredis

SCRIPT = (
    "redis.call('INCR', KEYS[1]); "
    "redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'n', 'a', 't', 'b'); "
    "redis.call('PUBLISH', KEYS[3], ARGV[1]); return 1"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=5000)
    args = parser.parse_args()
    s = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = hiredis.Reader()

    def call(*command: object) -> object:
        s.sendall(hiredis.pack_command(command))  # type: ignore[arg-type]
        while True:
            reader.feed(s.recv(65536))
            reply = reader.gets()
            if reply is not False:
                return reply

    sha = call("SCRIPT", "LOAD", SCRIPT).decode()  # type: ignore[union-attr]
    for name, command in (
        ("PING", ("PING",)),
        ("EVALSHA", ("EVALSHA", sha, 3, "rtt{x}", "rttlog{x}", "rttch{x}", "x" * 60)),
    ):
        t = time.perf_counter()
        for _ in range(args.count):
            call(*command)
        print(f"{name}: {(time.perf_counter() - t) / args.count * 1e6:.1f} us per round trip")
    call("DEL", "rtt{x}", "rttlog{x}")
    s.close()


if __name__ == "__main__":
    main()
