#!/usr/bin/env python3
"""
Run the Autobahn testsuite against the real portshare service and gate on the result.

Theory of operation
===================

1. Start the service exactly as production does, through twistd and the plugin, on an
   ephemeral loopback port with the echo endpoint enabled::

       twistd -n --pidfile= portshare --port tcp:0:interface=127.0.0.1 --echo

   (run with this interpreter: C{python -c "... from twisted.scripts.twistd import run; run()"},
   because C{python -m twisted} is C{twist}, not C{twistd}).  The service logs
   C{listening on tcp:HOST:PORT} once its port is bound; we read its output until that line
   appears and keep draining it into C{REPORTS/server.log} afterwards.
2. Run the C{kosoku} fuzzing client (the Autobahn TestSuite case files on Python 3) against
   C{ws://127.0.0.1:PORT/ws/echo}, writing Autobahn-format reports (C{index.json} plus one
   JSON and one HTML file per case) into the reports directory.
3. Stop the service by its PID (SIGTERM, then SIGKILL after a grace period).
4. Parse the reports, print a summary by section, write C{docs/compliance.md}, and exit
   non-zero unless every selected case ran and is OK or INFORMATIONAL (no FAILED, NON-STRICT,
   UNCLEAN, WRONG CODE, UNIMPLEMENTED, ...).

Everything from "parse" on is pure functions over plain data (L{loadReports},
L{caseVerdict}, L{summarize}, L{formatTable}, L{gate}, L{renderMarkdown}) so that they can be
tested without running a server or the suite.  Only the standard library is imported at
module level; kosoku is run as a subprocess.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fnmatch
import importlib.metadata
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

#: The log line the service prints once its port is bound.
LISTENING_RE = re.compile(r"listening on tcp:([0-9.]+):(\d+)")

#: Cases in the whole Autobahn suite as kosoku ships it (1.x-10.x, 12.x, 13.x).
FULL_SUITE_CASES = 517

#: The columns of the summary, in order.  Every case lands in exactly one of them.
OK = "OK"
NON_STRICT = "NON-STRICT"
INFORMATIONAL = "INFORMATIONAL"
FAILED = "FAILED"
UNCLEAN = "UNCLEAN"
OTHER = "other"
COLUMNS = (OK, NON_STRICT, INFORMATIONAL, FAILED, UNCLEAN, OTHER)

#: Verdicts that pass the gate.
PASSING = frozenset({OK, INFORMATIONAL})

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# Pure part: reports -> verdicts -> summary -> gate -> markdown
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseOutcome:
    """
    What the suite said about one case.

    @ivar caseId: the case id, e.g. C{"3.2"}.
    @ivar behavior: Autobahn's verdict on the message exchange (C{OK}, C{NON-STRICT},
        C{INFORMATIONAL}, C{FAILED}, C{UNIMPLEMENTED}, ...).
    @ivar behaviorClose: Autobahn's verdict on the closing handshake (C{OK},
        C{INFORMATIONAL}, C{UNCLEAN}, C{WRONG CODE}, C{FAILED BY CLIENT}, C{FAILED}).
    @ivar remoteCloseCode: the close code the service sent, if any.
    @ivar duration: the case's run time in milliseconds.
    """

    caseId: str
    behavior: str
    behaviorClose: str
    remoteCloseCode: int | None = None
    duration: int = 0


def caseSortKey(caseId: str) -> tuple[int, ...]:
    """
    Order case ids numerically by component (C{1.2.10} after C{1.2.9}).

    @param caseId: a dotted case id.
    @return: a sort key.
    """
    return tuple(int(part) if part.isdigit() else 0 for part in caseId.split("."))


def section(caseId: str) -> str:
    """
    The section a case belongs to: the first component of its id.

    @param caseId: a dotted case id such as C{"12.3.4"}.
    @return: the section, such as C{"12"}.
    """
    return caseId.split(".", 1)[0]


def _outcomeFromEntry(caseId: str, entry: Mapping[str, object]) -> CaseOutcome:
    code = entry.get("remoteCloseCode")
    duration = entry.get("duration")
    return CaseOutcome(
        caseId=caseId,
        behavior=str(entry.get("behavior", "")),
        behaviorClose=str(entry.get("behaviorClose", "")),
        remoteCloseCode=code if isinstance(code, int) else None,
        duration=duration if isinstance(duration, int) else 0,
    )


class ReportError(Exception):
    """The reports directory does not hold a readable report."""


def parseIndex(index: Mapping[str, Mapping[str, Mapping[str, object]]]) -> list[CaseOutcome]:
    """
    Read the outcomes out of an Autobahn C{index.json} document.

    The document maps agent (the server's C{Server} header) to case id to a summary
    (C{behavior}, C{behaviorClose}, C{remoteCloseCode}, C{duration}, C{reportfile}).

    @param index: the parsed C{index.json}.
    @return: the outcomes, in case order.
    @raise ReportError: when the index holds no agent or more than one.
    """
    if len(index) != 1:
        raise ReportError(f"expected results for exactly one agent, found {sorted(index)!r}")
    (cases,) = index.values()
    outcomes = [_outcomeFromEntry(caseId, entry) for caseId, entry in cases.items()]
    return sorted(outcomes, key=lambda o: caseSortKey(o.caseId))


def loadReports(reportsDir: Path) -> tuple[str, list[CaseOutcome]]:
    """
    Load the outcomes of a kosoku run from its reports directory.

    C{index.json} is read when present; otherwise the per-case C{*_case_*.json} files are.

    @param reportsDir: the directory kosoku wrote with C{-o}.
    @return: the agent string and the outcomes, in case order.
    @raise ReportError: when there is no report to read.
    """
    indexPath = reportsDir / "index.json"
    if indexPath.is_file():
        with indexPath.open(encoding="utf-8") as f:
            index = json.load(f)
        outcomes = parseIndex(index)
        (agent,) = index
        return agent, outcomes
    agents: set[str] = set()
    outcomes = []
    for path in sorted(reportsDir.glob("*_case_*.json")):
        with path.open(encoding="utf-8") as f:
            case = json.load(f)
        agents.add(str(case.get("agent", "")))
        outcomes.append(_outcomeFromEntry(str(case["id"]), case))
    if not outcomes:
        raise ReportError(f"no index.json and no per-case reports in {reportsDir}")
    if len(agents) != 1:
        raise ReportError(f"expected results for exactly one agent, found {sorted(agents)!r}")
    return agents.pop(), sorted(outcomes, key=lambda o: caseSortKey(o.caseId))


def caseVerdict(outcome: CaseOutcome) -> str:
    """
    Put one case in exactly one summary column.

    A failure on either axis wins (C{FAILED}), then an unclean close (C{UNCLEAN}), then any
    close verdict other than OK/INFORMATIONAL or any unknown behaviour (C{other}: WRONG CODE,
    FAILED BY CLIENT, UNIMPLEMENTED, ERROR, NO_CLOSE, ...); otherwise the behaviour itself
    (C{OK}, C{NON-STRICT} or C{INFORMATIONAL}).

    @param outcome: the case's outcome.
    @return: one of L{COLUMNS}.
    """
    if outcome.behavior == FAILED or outcome.behaviorClose == FAILED:
        return FAILED
    if outcome.behaviorClose == UNCLEAN:
        return UNCLEAN
    if outcome.behaviorClose not in (OK, INFORMATIONAL):
        return OTHER
    if outcome.behavior in (OK, NON_STRICT, INFORMATIONAL):
        return outcome.behavior
    return OTHER


def summarize(outcomes: Iterable[CaseOutcome]) -> dict[str, Counter[str]]:
    """
    Count verdicts by section.

    @param outcomes: the cases' outcomes.
    @return: section -> verdict -> count, sections in numeric order.
    """
    bySection: dict[str, Counter[str]] = {}
    for outcome in outcomes:
        bySection.setdefault(section(outcome.caseId), Counter())[caseVerdict(outcome)] += 1
    return {key: bySection[key] for key in sorted(bySection, key=caseSortKey)}


def totals(summary: Mapping[str, Counter[str]]) -> Counter[str]:
    """
    Add up a summary's sections.

    @param summary: the result of L{summarize}.
    @return: verdict -> count over all sections.
    """
    total: Counter[str] = Counter()
    for counts in summary.values():
        total.update(counts)
    return total


def formatTable(summary: Mapping[str, Counter[str]], markdown: bool = False) -> str:
    """
    Render the summary as a table with one row per section and a total row.

    @param summary: the result of L{summarize}.
    @param markdown: render a Markdown table instead of aligned plain text.
    @return: the table, lines joined by newlines, no trailing newline.
    """
    header = ["section", "cases", *COLUMNS]
    rows = []
    for key, counts in summary.items():
        rows.append([key, str(sum(counts.values()))] + [str(counts[c]) for c in COLUMNS])
    total = totals(summary)
    rows.append(["total", str(sum(total.values()))] + [str(total[c]) for c in COLUMNS])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    )


def selectCases(
    allIds: Iterable[str], include: Sequence[str] | None, exclude: Sequence[str] | None
) -> list[str]:
    """
    The case ids a kosoku run with these C{-i}/C{-x} options is expected to produce.

    @param allIds: every case id of the suite.
    @param include: ids or C{*} globs to run; C{None} or empty for all.
    @param exclude: ids or C{*} globs to leave out.
    @return: the selected ids, in case order.
    """
    selected = []
    for caseId in allIds:
        if include and not any(fnmatch.fnmatchcase(caseId, p) for p in include):
            continue
        if exclude and any(fnmatch.fnmatchcase(caseId, p) for p in exclude):
            continue
        selected.append(caseId)
    return sorted(selected, key=caseSortKey)


@dataclass
class GateResult:
    """
    Whether a run passes, and why not.

    @ivar passed: True when every expected case ran and is OK or INFORMATIONAL.
    @ivar problems: human-readable reasons for failing, empty when passed.
    @ivar notOk: the outcomes that are not OK (INFORMATIONAL ones included, for the record).
    @ivar missing: expected case ids that have no result.
    """

    passed: bool
    problems: list[str] = field(default_factory=list)
    notOk: list[CaseOutcome] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def gate(
    outcomes: Sequence[CaseOutcome],
    expectedIds: Sequence[str] | None = None,
    expectedCount: int | None = None,
    runnerExitCode: int | None = 0,
) -> GateResult:
    """
    Decide whether a run passes.

    It fails when any case is not OK or INFORMATIONAL, when an expected case has no result,
    when fewer cases ran than expected, or when the runner did not exit normally (exit
    code 1 is kosoku's "some case did not pass" and is judged by the cases themselves).

    @param outcomes: the cases' outcomes.
    @param expectedIds: the case ids that should have a result, if known.
    @param expectedCount: how many cases should have a result, if known.
    @param runnerExitCode: kosoku's exit code; C{None} when it was killed by our timeout.
    @return: the verdict.
    """
    problems = []
    notOk = [o for o in outcomes if caseVerdict(o) != OK]
    bad = [o for o in notOk if caseVerdict(o) not in PASSING]
    counts = Counter(caseVerdict(o) for o in bad)
    for column in COLUMNS:
        if counts[column]:
            ids = ", ".join(o.caseId for o in bad if caseVerdict(o) == column)
            problems.append(f"{counts[column]} case(s) {column}: {ids}")
    got = {o.caseId for o in outcomes}
    missing = [i for i in (expectedIds or ()) if i not in got]
    if missing:
        shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
        problems.append(f"{len(missing)} expected case(s) have no result: {shown}")
    if expectedCount is not None and len(got) < expectedCount:
        problems.append(f"only {len(got)} of {expectedCount} cases have a result")
    if runnerExitCode is None:
        problems.append("the runner was stopped by the time limit")
    elif runnerExitCode not in (0, 1):
        problems.append(f"the runner exited with code {runnerExitCode}")
    return GateResult(passed=not problems, problems=problems, notOk=notOk, missing=missing)


@dataclass(frozen=True)
class RunInfo:
    """
    Facts about a run that the generated document records.

    @ivar versions: distribution name -> version (portshare, autobahn, twisted, kosoku, ...).
    @ivar date: when the run finished, ISO 8601 UTC.
    @ivar command: the harness command line.
    @ivar serverCommand: the service command line.
    @ivar runnerCommand: the kosoku command line (the port is ephemeral).
    @ivar agent: the C{Server} header kosoku saw.
    @ivar elapsed: wall-clock seconds the suite took.
    @ivar platform: a one-line description of the machine and Python.
    """

    versions: Mapping[str, str]
    date: str
    command: str
    serverCommand: str
    runnerCommand: str
    agent: str
    elapsed: float
    platform: str


def renderMarkdown(outcomes: Sequence[CaseOutcome], result: GateResult, info: RunInfo) -> str:
    """
    Render C{docs/compliance.md}.

    @param outcomes: the cases' outcomes.
    @param result: the gate's verdict on them.
    @param info: the run's facts.
    @return: the document text, ending with a newline.
    """
    summary = summarize(outcomes)
    total = totals(summary)
    lines = [
        "# Autobahn testsuite compliance",
        "",
        "<!-- Generated by compliance/run.py; do not edit by hand, run it again. -->",
        "",
        f"Result: **{'PASS' if result.passed else 'FAIL'}**: {sum(total.values())} cases, "
        + ", ".join(f"{total[c]} {c}" for c in COLUMNS if total[c])
        + ".",
        "",
        f"- Date: {info.date}",
        f"- Command: `{info.command}`",
        f"- Service: `{info.serverCommand}`",
        f"- Runner: `{info.runnerCommand}`",
        f"- Agent (Server header): `{info.agent}`",
        f"- Suite wall time: {info.elapsed:.1f} s",
        f"- Platform: {info.platform}",
        "",
        "| component | version |",
        "|---|---|",
    ]
    lines += [f"| {name} | {version} |" for name, version in info.versions.items()]
    lines += [
        "",
        "## Verdicts by section",
        "",
        "Each case is counted once: FAILED if either verdict failed, then UNCLEAN, then "
        "`other` (WRONG CODE, FAILED BY CLIENT, UNIMPLEMENTED, ...), else the behaviour "
        "verdict. The run passes only if every case is OK or INFORMATIONAL.",
        "",
        formatTable(summary, markdown=True),
        "",
        "## Cases that are not OK",
        "",
    ]
    if result.notOk:
        lines += [
            "| case | verdict | behavior | behaviorClose | close code |",
            "|---|---|---|---|---|",
        ]
        for o in result.notOk:
            lines.append(
                f"| {o.caseId} | {caseVerdict(o)} | {o.behavior} | {o.behaviorClose} "
                f"| {o.remoteCloseCode if o.remoteCloseCode is not None else '-'} |"
            )
    else:
        lines.append("None.")
    if result.problems:
        lines += ["", "## Problems", ""] + [f"- {p}" for p in result.problems]
    durations: dict[str, int] = {}
    for o in outcomes:
        durations[section(o.caseId)] = durations.get(section(o.caseId), 0) + o.duration
    lines += [
        "",
        "## Time by section",
        "",
        "Sum of the cases' own durations (cases run in parallel, so this exceeds wall time).",
        "",
        "| section | seconds |",
        "|---|---|",
    ]
    lines += [
        f"| {k} | {v / 1000:.1f} |"
        for k, v in sorted(durations.items(), key=lambda kv: caseSortKey(kv[0]))
    ]
    return "\n".join(lines) + "\n"


def findListening(line: str) -> tuple[str, int] | None:
    """
    Recognise the service's "listening" log line.

    @param line: one line of the service's output.
    @return: the host and port it announces, or C{None}.
    """
    match = LISTENING_RE.search(line)
    if match is None:
        return None
    return match.group(1), int(match.group(2))


# ---------------------------------------------------------------------------------------------
# Impure part: processes, files, clock
# ---------------------------------------------------------------------------------------------


def distributionVersion(name: str) -> str:
    """
    The installed version of a distribution, or a note saying why there is none.

    @param name: the distribution name.
    @return: a version string.
    """
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        if name == "portshare":
            # Running from a source tree on PYTHONPATH, not installed.
            try:
                import portshare

                return f"{portshare.__version__} (source tree, not installed)"
            except Exception:
                pass
        return "not installed"


def collectVersions() -> dict[str, str]:
    """
    The versions the generated document records.

    @return: name -> version.
    """
    versions = {
        name: distributionVersion(name)
        for name in ("portshare", "autobahn", "twisted", "txaio", "kosoku")
    }
    versions["python"] = platform.python_version()
    try:
        from autobahn.websocket import USES_NVX

        versions["autobahn NVX (native UTF-8/XOR)"] = "used" if USES_NVX else "not used"
    except Exception:
        pass
    return versions


def allSuiteCaseIds() -> list[str] | None:
    """
    Every case id the installed kosoku knows, or C{None} if kosoku can't be imported.

    Asked in a child process: importing C{kosoku.cases} puts kosoku's own Python 2-era shim
    of C{autobahn} first on C{sys.path}, which must not leak into this process.

    @return: case ids in case order.
    """
    try:
        out = subprocess.run(
            [sys.executable, "-c", "from kosoku.cases import CASES; print(*CASES, sep=chr(10))"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    ids = [line.strip() for line in out.splitlines() if line.strip()]
    return sorted(ids, key=caseSortKey) or None


def kosokuCommand(explicit: str | None) -> list[str]:
    """
    How to run kosoku: an explicit path, else the console script beside this interpreter,
    else the one on PATH.

    @param explicit: a command given on our command line, if any.
    @return: the command as an argument list.
    """
    if explicit:
        return shlex.split(explicit)
    beside = Path(sys.executable).parent / "kosoku"
    if beside.exists():
        return [str(beside)]
    import shutil

    found = shutil.which("kosoku")
    if found:
        return [found]
    raise SystemExit("kosoku is not installed: pip install 'kosoku==0.1.0' (extra 'compliance')")


class Server:
    """
    The service under test, run through twistd in the foreground.

    @ivar process: the child process.
    @ivar address: C{(host, port)} once it announced that it listens.
    """

    def __init__(self, argv: list[str], log: IO[str], env: Mapping[str, str]) -> None:
        self.argv = argv
        self._log = log
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=dict(env),
            start_new_session=True,
        )
        self.address: tuple[str, int] | None = None
        self._found = threading.Event()
        self._pump = threading.Thread(target=self._drain, daemon=True)
        self._pump.start()

    def _drain(self) -> None:
        # Keep reading so the pipe never fills and blocks the service.
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._log.write(line)
            self._log.flush()
            if self.address is None:
                found = findListening(line)
                if found is not None:
                    self.address = found
                    self._found.set()
        self._found.set()

    def waitListening(self, timeout: float) -> tuple[str, int]:
        """
        Wait for the "listening on" line.

        @param timeout: seconds to wait.
        @return: the announced host and port.
        @raise RuntimeError: when the service exits or stays silent.
        """
        self._found.wait(timeout)
        if self.address is None:
            code = self.process.poll()
            raise RuntimeError(
                "the service did not log 'listening on tcp:HOST:PORT' within "
                f"{timeout:.0f} s (exit code {code}); see the server log"
            )
        return self.address

    def stop(self, grace: float = 15.0) -> int | None:
        """
        Stop the service by its PID: SIGTERM (twistd shuts down cleanly), SIGKILL after
        C{grace} seconds.

        @return: its exit code.
        """
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._pump.join(5)
        return self.process.returncode


def runKosoku(argv: list[str], log: IO[str], timeout: float) -> int | None:
    """
    Run kosoku, echoing its output to ours and to a log.

    @return: its exit code, or C{None} if it had to be killed at C{timeout}.
    """
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    )

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            log.flush()
            sys.stdout.write("  kosoku: " + line)
            sys.stdout.flush()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        code: int | None = process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        code = None
    thread.join(5)
    return code


def buildParser() -> argparse.ArgumentParser:
    """The command line of this script."""
    parser = argparse.ArgumentParser(
        description="Run the Autobahn testsuite (kosoku) against portshare's /ws/echo.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "-p", "--parallelism", type=int, default=4, help="cases kosoku runs at once"
    )
    parser.add_argument(
        "--reports",
        type=Path,
        default=REPO / "compliance" / "reports",
        help="where kosoku writes its reports (git-ignored)",
    )
    parser.add_argument(
        "--doc",
        type=Path,
        default=REPO / "docs" / "compliance.md",
        help="the generated summary document",
    )
    parser.add_argument(
        "--no-doc", action="store_true", help="don't write the document (e.g. for partial runs)"
    )
    parser.add_argument(
        "-i",
        "--include",
        action="append",
        metavar="CASE",
        help="case id or glob to run (repeatable); default: the whole suite",
    )
    parser.add_argument(
        "-x",
        "--exclude",
        action="append",
        metavar="CASE",
        help="case id or glob to leave out (repeatable)",
    )
    parser.add_argument(
        "--kosoku",
        default=None,
        help="kosoku command; default: the one beside this Python, else PATH",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="seconds the suite may take before it is stopped",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=60.0,
        help="seconds the service may take to log that it listens",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the portshare plugin (repeatable)",
    )
    parser.add_argument("--path", default="/ws/echo", help="WebSocket path under test")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the suite and return the process exit code.

    @param argv: command line arguments (default: C{sys.argv[1:]}).
    @return: 0 when the run passes, 1 when it does not, 2 when it could not run.
    """
    args = buildParser().parse_args(argv)
    reports: Path = args.reports.resolve()
    reports.mkdir(parents=True, exist_ok=True)
    for stale in ("index.json",):
        with contextlib.suppress(FileNotFoundError):
            (reports / stale).unlink()
    for old in reports.glob("*_case_*.*"):
        old.unlink()

    serverArgv = [
        sys.executable,
        "-c",
        "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()",
        "-n",
        "--pidfile=",
        "portshare",
        "--port",
        "tcp:0:interface=127.0.0.1",
        "--echo",
        *args.server_arg,
    ]
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    print(f"starting: {shlex.join(serverArgv)}", flush=True)
    started = time.monotonic()
    with (
        (reports / "server.log").open("w", encoding="utf-8") as serverLog,
        (reports / "kosoku.log").open("w", encoding="utf-8") as kosokuLog,
    ):
        server = Server(serverArgv, serverLog, env)
        try:
            host, port = server.waitListening(args.start_timeout)
            url = f"ws://{host}:{port}{args.path}"
            runnerArgv = [
                *kosokuCommand(args.kosoku),
                url,
                "-p",
                str(args.parallelism),
                "-o",
                str(reports),
            ]
            for pattern in args.include or ():
                runnerArgv += ["-i", pattern]
            for pattern in args.exclude or ():
                runnerArgv += ["-x", pattern]
            print(f"service pid {server.process.pid} listening on {host}:{port}", flush=True)
            print(f"running: {shlex.join(runnerArgv)}", flush=True)
            suiteStarted = time.monotonic()
            runnerCode = runKosoku(runnerArgv, kosokuLog, args.timeout)
            elapsed = time.monotonic() - suiteStarted
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            server.stop()
            print((reports / "server.log").read_text(encoding="utf-8")[-4000:], file=sys.stderr)
            return 2
        finally:
            serverCode = server.stop()
    # twistd re-raises the signal that stopped it after a clean shutdown: -15 is normal.
    print(
        f"service stopped (exit code {serverCode}); suite took {elapsed:.1f} s, "
        f"{time.monotonic() - started:.1f} s in all",
        flush=True,
    )

    try:
        agent, outcomes = loadReports(reports)
    except (ReportError, OSError, ValueError) as e:
        print(f"error: cannot read the reports: {e}", file=sys.stderr)
        return 1
    allIds = allSuiteCaseIds()
    expectedIds = selectCases(allIds, args.include, args.exclude) if allIds else None
    expectedCount = None if (args.include or args.exclude) else FULL_SUITE_CASES
    result = gate(outcomes, expectedIds, expectedCount, runnerCode)

    print()
    print(formatTable(summarize(outcomes)))
    print()
    for o in result.notOk:
        print(
            f"  {o.caseId:<8} {caseVerdict(o):<14} behavior={o.behavior} "
            f"behaviorClose={o.behaviorClose} closeCode={o.remoteCloseCode}"
        )
    for problem in result.problems:
        print(f"FAIL: {problem}")
    print("PASS" if result.passed else "FAIL", flush=True)

    if not args.no_doc:
        runnerShown = [
            a if not a.startswith("ws://") else f"ws://127.0.0.1:PORT{args.path}"
            for a in runnerArgv
        ]
        runnerShown[0] = Path(runnerShown[0]).name
        with contextlib.suppress(ValueError):
            runnerShown[runnerShown.index(str(reports))] = os.path.relpath(reports, REPO)
        info = RunInfo(
            versions=collectVersions(),
            date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            command=shlex.join(
                ["python", "compliance/run.py", *(argv if argv is not None else sys.argv[1:])]
            ),
            serverCommand="twistd -n --pidfile= portshare --port tcp:0:interface=127.0.0.1 "
            "--echo" + "".join(" " + shlex.quote(a) for a in args.server_arg),
            runnerCommand=shlex.join(runnerShown),
            agent=agent,
            elapsed=elapsed,
            platform=f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
            f"{platform.python_implementation()} {platform.python_version()}",
        )
        args.doc.parent.mkdir(parents=True, exist_ok=True)
        args.doc.write_text(renderMarkdown(outcomes, result, info), encoding="utf-8")
        print(f"wrote {args.doc}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
