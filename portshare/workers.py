"""
C{--workers N}: N processes serving the same listening ports on one machine.

Theory of operation:
 - The parent (the C{twistd portshare --workers N} process) binds every C{--port} itself,
   before twistd drops privileges, and logs C{listening on ADDRESS} as a single process does
   (so C{tcp:0} stays discoverable).  It never accepts on them: it stops reading them at
   once.
 - It then starts N workers.  Each is C{twistd -n portshare} with the parent's portshare
   options, except that every C{--port} is replaced by C{systemd:domain=...:index=i}: the
   parent hands the bound sockets to the worker as descriptors 3, 4, ... with the
   environment of systemd's socket activation (C{LISTEN_FDS}, C{LISTEN_FDNAMES};
   C{LISTEN_PID} is set by the worker itself), which Twisted's C{systemd:} endpoint adopts
   with C{adoptStreamPort}.  Every worker accepts from the same kernel queue.
 - The workers share nothing but the broker, so N > 1 needs a shared one (Redis): with the
   in-memory broker each worker would be a separate chat.  L{checkWorkers} refuses that.
 - The parent stops its workers when it stops (SIGTERM to each, then SIGKILL after the
   shutdown timeout); a worker asks the kernel for SIGTERM should the parent die without
   stopping it (Linux C{PR_SET_PDEATHSIG}).  A worker that exits on its own is started again
   after a growing delay.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.logger import ILogObserver, Logger, jsonFileLogObserver
from twisted.python.failure import Failure

#: set in a worker's environment to the parent's pid
PARENT_ENV = "PORTSHARE_WORKER_PARENT"

_FAMILIES = {"IPv4Address": "INET", "IPv6Address": "INET6", "UNIXAddress": "UNIX"}


def checkWorkers(workers: int, ports: Sequence[str], shared: bool) -> None:
    """
    Refuse a C{--workers} setting that cannot work.

    @param shared: whether the broker is shared between processes (not C{memory}).
    @raise ValueError: with a message for the command line.
    """
    if workers < 1:
        raise ValueError("--workers must be 1 or more")
    if workers == 1:
        return
    if not shared:
        raise ValueError(
            f"--workers {workers} needs a shared broker: with --broker memory each worker "
            "would be a separate chat; pass --broker redis://host:port/db"
        )
    for description in ports:
        kind = description.split(":", 1)[0].lower()
        if kind not in ("tcp", "tcp6", "unix", "systemd"):
            raise ValueError(
                f"--workers shares tcp:, tcp6:, unix: and systemd: ports, not {description!r} "
                "(terminate TLS in front of the workers, e.g. at the load balancer)"
            )


def _takesValue(arg: str, long: str, short: str | None) -> tuple[bool, bool]:
    """(whether C{arg} is this option, whether its value is the next argument)."""
    if arg == f"--{long}" or (short is not None and arg == f"-{short}"):
        return True, True
    if arg.startswith(f"--{long}=") or (short is not None and arg.startswith(f"-{short}")):
        return True, False
    return False, False


def workerArgv(argv: Sequence[str], families: Sequence[str], admin: int = 0) -> list[str]:
    """
    A worker's portshare options: the parent's, without C{--workers}, C{--port} and
    C{--admin-port}, with one C{--port systemd:domain=FAMILY:index=i} per inherited socket,
    the last C{admin} of them as C{--admin-port}.
    """
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        matched = False
        for long, short in (("port", "p"), ("workers", None), ("admin-port", None)):
            isIt, valueNext = _takesValue(arg, long, short)
            if isIt:
                matched, skip = True, valueNext
                break
        if not matched:
            out.append(arg)
    public = len(families) - admin
    for index, family in enumerate(families):
        option = "--port" if index < public else "--admin-port"
        out += [option, f"systemd:domain={family}:index={index}"]
    return out


def _dieWithParent(parent: int) -> None:
    """Ask Linux for SIGTERM when the parent dies; exit if it already has."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        sys.exit("portshare worker: the parent process is gone")


def runWorker() -> None:
    """
    A worker's entry point (run by the parent as C{python -c ...}, which sets C{LISTEN_PID}
    before Twisted is imported): C{twistd -n portshare} with the arguments given.
    """
    _dieWithParent(int(os.environ.get(PARENT_ENV, "0")))
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", "--nodaemon", "--pidfile=", "portshare", *sys.argv[1:]]
    run()


_BOOT = (
    "import os, sys; os.environ['LISTEN_PID'] = str(os.getpid()); "
    "from portshare.workers import runWorker; runWorker()"
)


class _NoConnections(Factory):
    """The parent's factory for the ports it binds; it never accepts on them."""

    noisy = False

    def buildProtocol(self, addr: Any) -> Protocol | None:
        return None


class _Worker(ProcessProtocol):
    def __init__(self, owner: WorkersService, number: int) -> None:
        self.owner = owner
        self.number = number
        self.ended: Deferred[None] = Deferred()
        self.pid: int | None = None

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]
        self.transport.closeStdin()  # type: ignore[union-attr]

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)
        self.owner.workerEnded(self, reason)


class WorkersService(Service):
    """
    Binds the ports and runs C{workers} worker processes on them (see the module docstring).

    @ivar listening: the addresses bound, as C{listening on} logs them.
    @ivar workers: the running workers' process protocols, by number.
    @param jsonLogs: log as C{--log-format json} does (the workers get that option too).
    """

    log = Logger()

    def __init__(
        self,
        ports: Sequence[str],
        workers: int,
        argv: Sequence[str],
        reactor: Any,
        shutdownTimeout: float = 5.0,
        python: str = sys.executable,
        jsonLogs: bool = False,
        adminPorts: Sequence[str] = (),
    ) -> None:
        #: every endpoint the parent binds: the public ones, then the admin ones
        self.ports = list(ports) + list(adminPorts)
        self.adminCount = len(adminPorts)
        self.count = workers
        self.argv = list(argv)
        self.reactor = reactor
        self.shutdownTimeout = shutdownTimeout
        self.python = python
        self.jsonLogs = jsonLogs
        self.listening: list[str] = []
        self.workers: dict[int, _Worker] = {}
        self._bound: list[Any] = []
        self._families: list[str] = []
        self._restarts: dict[int, int] = {}
        self._pending: dict[int, Any] = {}

    def setServiceParent(self, parent: Any) -> None:
        super().setServiceParent(parent)
        if self.jsonLogs and hasattr(parent, "setComponent"):
            # as a single process does with --log-format json (see portshare.tap)
            sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
            parent.setComponent(ILogObserver, jsonFileLogObserver(sys.stdout, recordSeparator=""))

    def privilegedStartService(self) -> None:
        from twisted.internet.endpoints import serverFromString

        from portshare.service import formatAddress

        super().privilegedStartService()
        for n, description in enumerate(self.ports):
            bound: list[Any] = []
            problems: list[Failure] = []
            d = serverFromString(self.reactor, description).listen(_NoConnections())
            d.addCallbacks(bound.append, problems.append)
            if problems:
                problems[0].raiseException()
            port = bound[0]
            port.stopReading()  # the workers accept; the parent only holds the socket
            address = port.getHost()
            self._bound.append(port)
            self._families.append(_FAMILIES[type(address).__name__])
            shown = formatAddress(address)
            self.listening.append(shown)
            if n < len(self.ports) - self.adminCount:
                self.log.info("listening on {address}", address=shown, endpoint=description)
            else:
                self.log.info("admin endpoint on {address}", address=shown, endpoint=description)

    def startService(self) -> None:
        if not self._bound:
            self.privilegedStartService()
        super().startService()
        for number in range(1, self.count + 1):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        self._pending.pop(number, None)
        if not self.running:
            return
        env = dict(os.environ)
        env.update(
            {
                "LISTEN_FDS": str(len(self._bound)),
                "LISTEN_FDNAMES": ":".join(f"port{i}" for i in range(len(self._bound))),
                PARENT_ENV: str(os.getpid()),
            }
        )
        env.pop("LISTEN_PID", None)
        childFDs: dict[int, Any] = {0: "w", 1: 1, 2: 2}
        for index, port in enumerate(self._bound):
            childFDs[3 + index] = port.fileno()
        worker = _Worker(self, number)
        args = [self.python, "-c", _BOOT, *workerArgv(self.argv, self._families, self.adminCount)]
        self.reactor.spawnProcess(worker, self.python, args, env=env, childFDs=childFDs)
        self.workers[number] = worker
        self.log.info("worker {number} started (pid {pid})", number=number, pid=worker.pid)

    def workerEnded(self, worker: _Worker, reason: Failure) -> None:
        """A worker exited: start it again later, unless the service is stopping."""
        if self.workers.get(worker.number) is worker:
            del self.workers[worker.number]
        status = getattr(reason.value, "exitCode", None)
        if not self.running:
            self.log.info(
                "worker {number} (pid {pid}) stopped", number=worker.number, pid=worker.pid
            )
            return
        restarts = self._restarts[worker.number] = self._restarts.get(worker.number, 0) + 1
        delay = min(30.0, 0.5 * 2 ** min(restarts, 6))
        self.log.warn(
            "worker {number} (pid {pid}) exited ({status}); starting it again in {delay}s",
            number=worker.number,
            pid=worker.pid,
            status=status,
            delay=delay,
        )
        self._pending[worker.number] = self.reactor.callLater(delay, self._spawn, worker.number)

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        workers = list(self.workers.values())
        for worker in workers:
            self._signal(worker, "TERM")
        if workers:
            ended = DeferredList([w.ended for w in workers])
            # the workers wait for their WebSockets at most the shutdown timeout
            ended.addTimeout(self.shutdownTimeout + 10, self.reactor)
            try:
                await ended
            except Exception:
                for worker in workers:
                    if not worker.ended.called:
                        self.log.warn("worker {number} did not stop: killed", number=worker.number)
                        self._signal(worker, "KILL")
                await DeferredList([w.ended for w in workers])
        for port in self._bound:
            await port.stopListening()
        self._bound = []
        self.listening = []

    def _signal(self, worker: _Worker, name: str) -> None:
        with contextlib.suppress(Exception):  # already gone
            worker.transport.signalProcess(name)  # type: ignore[union-attr]
