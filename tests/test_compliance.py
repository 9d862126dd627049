"""
Tests for the pure part of the compliance harness, C{compliance/run.py}.

Nothing here starts the service or the suite: the reports are small fake directories in the
shape kosoku writes (C{index.json} plus per-case C{AGENT_case_X_Y.json} files).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

from twisted.trial.unittest import SynchronousTestCase

RUN_PY = Path(__file__).resolve().parent.parent / "compliance" / "run.py"


def _loadHarness() -> ModuleType:
    """Import compliance/run.py, which is a script and not part of the package."""
    name = "portshare_compliance_run"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, RUN_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while building classes
    spec.loader.exec_module(module)
    return module


run = _loadHarness()

AGENT = "portshare/0.1.0 AutobahnPython/26.10.2"


def entry(
    behavior: str = "OK", behaviorClose: str = "OK", code: int | None = 1000, duration: int = 2
) -> dict[str, object]:
    """One case's entry in index.json, as kosoku writes it."""
    return {
        "behavior": behavior,
        "behaviorClose": behaviorClose,
        "remoteCloseCode": code,
        "duration": duration,
        "reportfile": "x.json",
    }


def outcome(caseId: str, behavior: str = "OK", behaviorClose: str = "OK") -> object:
    """A L{run.CaseOutcome} with a normal close code."""
    return run.CaseOutcome(caseId, behavior, behaviorClose, 1000, 1)


class LoadReportsTests(SynchronousTestCase):
    """
    L{run.loadReports} reads kosoku's report directory.
    """

    def makeDir(self) -> Path:
        path = Path(self.mktemp())
        path.mkdir()
        return path

    def test_index(self) -> None:
        """The outcomes come from index.json, in numeric case order, with the agent."""
        reports = self.makeDir()
        index = {
            AGENT: {
                "1.1.10": entry(),
                "1.1.9": entry(),
                "3.2": entry("NON-STRICT", "OK", None, 7),
                "12.1.1": entry(duration=300),
            }
        }
        (reports / "index.json").write_text(json.dumps(index))
        agent, outcomes = run.loadReports(reports)
        self.assertEqual(agent, AGENT)
        self.assertEqual([o.caseId for o in outcomes], ["1.1.9", "1.1.10", "3.2", "12.1.1"])
        self.assertEqual(outcomes[2], run.CaseOutcome("3.2", "NON-STRICT", "OK", None, 7))

    def test_perCaseFiles(self) -> None:
        """Without index.json, the per-case JSON reports are read."""
        reports = self.makeDir()
        for caseId, behavior in [("2.1", "OK"), ("4.1.3", "NON-STRICT")]:
            case = {"id": caseId, "agent": AGENT, **entry(behavior)}
            name = f"agent_case_{caseId.replace('.', '_')}.json"
            (reports / name).write_text(json.dumps(case))
        (reports / "agent_case_2_1.html").write_text("<html></html>")
        agent, outcomes = run.loadReports(reports)
        self.assertEqual(agent, AGENT)
        self.assertEqual(
            [(o.caseId, o.behavior) for o in outcomes], [("2.1", "OK"), ("4.1.3", "NON-STRICT")]
        )

    def test_empty(self) -> None:
        """An empty directory is an error, not an empty (passing) run."""
        self.assertRaises(run.ReportError, run.loadReports, self.makeDir())

    def test_twoAgents(self) -> None:
        """Results from two servers in one index are refused."""
        self.assertRaises(
            run.ReportError, run.parseIndex, {"a": {"1.1.1": entry()}, "b": {"1.1.1": entry()}}
        )


class CaseVerdictTests(SynchronousTestCase):
    """
    L{run.caseVerdict} puts every case in exactly one column.
    """

    def test_behaviours(self) -> None:
        """With a good close, the behaviour verdict is the column."""
        for behavior in ("OK", "NON-STRICT", "INFORMATIONAL"):
            self.assertEqual(run.caseVerdict(outcome("1.1.1", behavior)), behavior)
        self.assertEqual(
            run.caseVerdict(outcome("7.1.6", "INFORMATIONAL", "INFORMATIONAL")), "INFORMATIONAL"
        )

    def test_failedWins(self) -> None:
        """A failure on either axis is FAILED, even with an unclean close."""
        self.assertEqual(run.caseVerdict(outcome("1.1.1", "FAILED", "UNCLEAN")), "FAILED")
        self.assertEqual(run.caseVerdict(outcome("1.1.1", "OK", "FAILED")), "FAILED")

    def test_unclean(self) -> None:
        """An unclean close is UNCLEAN whatever the behaviour."""
        self.assertEqual(run.caseVerdict(outcome("1.1.1", "OK", "UNCLEAN")), "UNCLEAN")
        self.assertEqual(run.caseVerdict(outcome("1.1.1", "NON-STRICT", "UNCLEAN")), "UNCLEAN")

    def test_other(self) -> None:
        """Wrong close codes, unimplemented features and unknown verdicts are 'other'."""
        self.assertEqual(run.caseVerdict(outcome("1.1.1", "OK", "WRONG CODE")), "other")
        self.assertEqual(run.caseVerdict(outcome("1.1.1", "OK", "FAILED BY CLIENT")), "other")
        self.assertEqual(run.caseVerdict(outcome("12.1.1", "UNIMPLEMENTED")), "other")
        self.assertEqual(run.caseVerdict(outcome("1.1.1", "ERROR")), "other")


class SummaryTests(SynchronousTestCase):
    """
    L{run.summarize} and L{run.formatTable} count verdicts by section.
    """

    outcomes = [
        outcome("1.1.1"),
        outcome("1.1.2"),
        outcome("3.2", "NON-STRICT"),
        outcome("7.13.1", "INFORMATIONAL", "INFORMATIONAL"),
        outcome("10.1.1"),
        outcome("9.1.1", "OK", "UNCLEAN"),
        outcome("12.1.1", "UNIMPLEMENTED"),
    ]

    def test_counts(self) -> None:
        """Sections are numeric-ordered and each case is counted once."""
        summary = run.summarize(self.outcomes)
        self.assertEqual(list(summary), ["1", "3", "7", "9", "10", "12"])
        self.assertEqual(summary["1"]["OK"], 2)
        self.assertEqual(summary["3"]["NON-STRICT"], 1)
        self.assertEqual(summary["9"]["UNCLEAN"], 1)
        total = run.totals(summary)
        self.assertEqual(sum(total.values()), len(self.outcomes))
        self.assertEqual(total["other"], 1)

    def test_table(self) -> None:
        """The plain table has a header, a row per section and a total row."""
        lines = run.formatTable(run.summarize(self.outcomes)).splitlines()
        self.assertEqual(
            lines[0].split(),
            ["section", "cases", "OK", "NON-STRICT", "INFORMATIONAL", "FAILED", "UNCLEAN", "other"],
        )
        self.assertEqual(lines[-1].split(), ["total", "7", "3", "1", "1", "0", "1", "1"])
        self.assertEqual(len(lines), 1 + 6 + 1)

    def test_markdownTable(self) -> None:
        """The Markdown table has the same rows between pipes."""
        lines = run.formatTable(run.summarize(self.outcomes), markdown=True).splitlines()
        self.assertEqual(lines[1], "|---|---|---|---|---|---|---|---|")
        self.assertEqual(lines[-1], "| total | 7 | 3 | 1 | 1 | 0 | 1 | 1 |")


class GateTests(SynchronousTestCase):
    """
    L{run.gate} passes a run only when every expected case is OK or INFORMATIONAL.
    """

    good = [outcome("1.1.1"), outcome("7.13.1", "INFORMATIONAL", "INFORMATIONAL")]

    def test_pass(self) -> None:
        """OK and INFORMATIONAL cases pass; INFORMATIONAL ones are still listed."""
        result = run.gate(self.good, ["1.1.1", "7.13.1"], 2, 0)
        self.assertTrue(result.passed)
        self.assertEqual(result.problems, [])
        self.assertEqual([o.caseId for o in result.notOk], ["7.13.1"])

    def test_nonStrict(self) -> None:
        """A NON-STRICT case fails the run, even though kosoku itself exits 0 for it."""
        result = run.gate([*self.good, outcome("3.2", "NON-STRICT")], None, None, 0)
        self.assertFalse(result.passed)
        self.assertEqual(result.problems, ["1 case(s) NON-STRICT: 3.2"])

    def test_failedAndUnclean(self) -> None:
        """FAILED and UNCLEAN cases fail the run, each reported."""
        result = run.gate(
            [outcome("1.1.1", "FAILED"), outcome("2.1", "OK", "UNCLEAN")], None, None, 1
        )
        self.assertFalse(result.passed)
        self.assertEqual(result.problems, ["1 case(s) FAILED: 1.1.1", "1 case(s) UNCLEAN: 2.1"])

    def test_other(self) -> None:
        """An UNIMPLEMENTED (e.g. compression not negotiated) case fails the run."""
        result = run.gate([outcome("12.1.1", "UNIMPLEMENTED")], None, None, 0)
        self.assertFalse(result.passed)

    def test_missing(self) -> None:
        """An expected case without a result fails the run, and so does a short count."""
        result = run.gate(self.good, ["1.1.1", "1.1.2", "7.13.1"], 517, 0)
        self.assertFalse(result.passed)
        self.assertEqual(result.missing, ["1.1.2"])
        self.assertIn("only 2 of 517 cases have a result", result.problems)

    def test_runner(self) -> None:
        """A runner killed by the time limit, or crashing, fails the run."""
        self.assertFalse(run.gate(self.good, None, None, None).passed)
        self.assertFalse(run.gate(self.good, None, None, 2).passed)
        self.assertTrue(run.gate(self.good, None, None, 1).passed)


class SelectCasesTests(SynchronousTestCase):
    """
    L{run.selectCases} predicts which cases a run with -i/-x produces.
    """

    ids = ["1.1.1", "1.1.2", "1.2.1", "12.1.1", "12.2.1", "13.1.1"]

    def test_all(self) -> None:
        """No patterns select everything."""
        self.assertEqual(run.selectCases(self.ids, None, None), self.ids)

    def test_globs(self) -> None:
        """Includes and excludes are globs over the dotted id."""
        self.assertEqual(run.selectCases(self.ids, ["1.*"], ["1.2.*"]), ["1.1.1", "1.1.2"])
        self.assertEqual(
            run.selectCases(self.ids, None, ["12.*", "13.*"]), ["1.1.1", "1.1.2", "1.2.1"]
        )


class ListeningLineTests(SynchronousTestCase):
    """
    L{run.findListening} recognises the service's "listening" log line.
    """

    def test_found(self) -> None:
        """The host and port are read out of a twistd log line."""
        line = "2026-01-01T00:00:00+0000 [portshare#info] listening on tcp:127.0.0.1:41234\n"
        self.assertEqual(run.findListening(line), ("127.0.0.1", 41234))

    def test_other(self) -> None:
        """Other lines are not mistaken for it."""
        self.assertIsNone(run.findListening("Site starting on 41234"))


class MarkdownTests(SynchronousTestCase):
    """
    L{run.renderMarkdown} writes the generated compliance document.
    """

    def render(self, outcomes: list[object]) -> str:
        info = run.RunInfo(
            versions={
                "portshare": "0.1.0",
                "autobahn": "26.10.2",
                "twisted": "26.10.0",
                "kosoku": "0.1.0",
            },
            date="2026-01-01 00:00 UTC",
            command="python compliance/run.py",
            serverCommand="twistd -n --pidfile= portshare --port tcp:0 --echo",
            runnerCommand="kosoku ws://127.0.0.1:PORT/ws/echo -p 4",
            agent=AGENT,
            elapsed=12.5,
            platform="Linux x86_64",
        )
        return run.renderMarkdown(outcomes, run.gate(outcomes), info)

    def test_passing(self) -> None:
        """A passing run records versions, counts and the INFORMATIONAL cases."""
        text = self.render([outcome("1.1.1"), outcome("7.13.1", "INFORMATIONAL")])
        self.assertIn("Result: **PASS**: 2 cases, 1 OK, 1 INFORMATIONAL.", text)
        self.assertIn("| kosoku | 0.1.0 |", text)
        self.assertIn("| 7.13.1 | INFORMATIONAL |", text)
        self.assertIn("| total | 2 | 1 | 0 | 1 | 0 | 0 | 0 |", text)
        self.assertIn("2026-01-01 00:00 UTC", text)
        self.assertTrue(text.endswith("\n"))

    def test_failing(self) -> None:
        """A failing run says so and lists why."""
        text = self.render([outcome("3.2", "NON-STRICT")])
        self.assertIn("Result: **FAIL**", text)
        self.assertIn("- 1 case(s) NON-STRICT: 3.2", text)


# -- the echo endpoint's compliance-relevant behaviour, driven in memory ----------------------


class _EchoConnection:
    """One in-memory client of the service's shared port, on /ws/echo."""

    def __init__(self, service: object, extensions: str | None = None) -> None:
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        from portshare.testing import handshakeRequest, splitResponse

        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.protocol = service.tracker.buildProtocol(self.transport.getPeer())  # type: ignore[attr-defined]
        self.protocol.makeConnection(self.transport)
        request = handshakeRequest(path="/ws/echo")
        if extensions:
            request = request.replace(
                b"\r\n\r\n", f"\r\nSec-WebSocket-Extensions: {extensions}\r\n\r\n".encode()
            )
        self.protocol.dataReceived(request)
        self.head, self.pending = splitResponse(self.read())

    def read(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def frames(self) -> list[tuple[int, bytes]]:
        from portshare.testing import serverFrames

        frames, self.pending = self.pending + serverFrames(self.read()), []
        return frames


class EchoComplianceTests(SynchronousTestCase):
    """
    The settings of /ws/echo that the Autobahn testsuite depends on (compliance/FINDINGS.md).
    """

    def setUp(self) -> None:
        from portshare.testing import startedService

        self.service = startedService(self, echo=True)

    def failsAfterEcho(self, bad: bytes, code: int) -> None:
        from portshare.testing import CLOSE, TEXT, clientFrame, closeCode

        c = _EchoConnection(self.service)
        self.assertTrue(c.head.startswith(b"HTTP/1.1 101"), c.head)
        c.protocol.dataReceived(clientFrame(b"Hello, world!") + bad + clientFrame(b"", 0x9))
        frames = c.frames()
        self.assertEqual(frames[0], (TEXT, b"Hello, world!"))
        self.assertEqual([(op, closeCode(p)) for op, p in frames[1:]], [(CLOSE, code)])
        # Not aborted: an abort (Autobahn's default failByDrop=True) would discard the
        # echo that Twisted has buffered but not yet written.  StringTransport keeps it, so
        # the abort itself is what is checked here.
        self.assertFalse(c.transport.disconnected)

    def test_reservedBitsAfterMessage(self) -> None:
        """
        A message followed in the same read by a frame with RSV bits set is echoed, then the
        connection is failed with a 1002 close frame (cases 3.2-3.4), not dropped.
        """
        from portshare.testing import clientFrame

        for rsv in (2, 3, 4):
            self.failsAfterEcho(clientFrame(b"Hello, world!", rsv=rsv), 1002)

    def test_reservedOpcodesAfterMessage(self) -> None:
        """The same for reserved data and control opcodes (cases 4.1.3-4.1.5, 4.2.3-4.2.5)."""
        from portshare.testing import clientFrame

        for opcode in (5, 6, 7, 13, 14, 15):
            self.failsAfterEcho(clientFrame(b"", opcode=opcode), 1002)

    def test_continuationAfterMessage(self) -> None:
        """The same for a continuation frame with nothing to continue (case 5.15)."""
        from portshare.testing import clientFrame

        self.failsAfterEcho(clientFrame(b"fragment3", opcode=0, fin=False), 1002)

    def test_invalidUtf8AfterMessage(self) -> None:
        """Invalid UTF-8 after a good message: the echo, then a 1007 close frame."""
        from portshare.testing import clientFrame

        self.failsAfterEcho(clientFrame(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xed\xa0\x80"), 1007)

    def test_deflateEcho(self) -> None:
        """
        A compressed message is echoed compressed, at our zlib level, and inflates back.
        """
        import zlib

        from portshare.echo import DEFLATE_LEVEL
        from portshare.testing import clientFrame

        c = _EchoConnection(self.service, "permessage-deflate; client_max_window_bits")
        self.assertIn(b"Sec-WebSocket-Extensions: permessage-deflate", c.head)
        message = b"portshare " * 1000
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
        c.protocol.dataReceived(clientFrame(body[:-4], rsv=4))
        raw = c.read()
        self.assertEqual(raw[0] & 0x70, 0x40, "RSV1 (compressed) is set")
        expected = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -15)
        ours = expected.compress(message) + expected.flush(zlib.Z_SYNC_FLUSH)
        self.assertIn(ours[:-4], raw)
        self.assertEqual(
            zlib.decompressobj(-15).decompress(ours[:-4] + b"\x00\x00\xff\xff"), message
        )


class EchoSettingsTests(SynchronousTestCase):
    """
    The echo factory's deflate bounds and keepalive.
    """

    def test_acceptDeflateBounds(self) -> None:
        """
        The accepted offer caps our window at the client's request and at C{windowBits},
        asks the client for a smaller window when allowed, and bounds inflation.
        """
        from autobahn.websocket.compress import PerMessageDeflateOffer

        from portshare.echo import acceptDeflate

        plain = PerMessageDeflateOffer()
        accept = acceptDeflate([plain], maxMessageSize=1000)
        self.assertEqual((accept.window_bits, accept.request_max_window_bits), (15, 0))
        self.assertEqual(accept.max_message_size, 1000)
        nine = PerMessageDeflateOffer(request_max_window_bits=9)
        self.assertEqual(acceptDeflate([nine]).window_bits, 9)
        small = acceptDeflate([plain], windowBits=12)
        self.assertEqual((small.window_bits, small.request_max_window_bits), (12, 12))
        strict = PerMessageDeflateOffer(accept_max_window_bits=False)
        self.assertEqual(acceptDeflate([strict], windowBits=12).request_max_window_bits, 0)
        self.assertIsNone(acceptDeflate([]))

    def test_noPingDuringACase(self) -> None:
        """
        The echo endpoint pings less often than the suite's longest case timeout (480 s),
        whatever --ping-interval says, because the suite ends a case on a ping.
        """
        from twisted.internet.task import Clock

        from portshare.echo import buildEchoFactory
        from portshare.limits import Limits

        factory = buildEchoFactory(Limits(pingInterval=30.0), Clock())
        self.assertGreater(factory.autoPingInterval, 480)
        self.assertFalse(factory.failByDrop)
        self.assertEqual(factory.maxMessagePayloadSize, Limits().echoMaxMessageSize)
