"""
Turn a results JSON (from L{run}) into a markdown table with ratios and PNG plots.

    python bench/report.py bench/results/latest.json     # rewrites results.md and the PNGs

Ratios compare portshare with the best peer of the same run: "best peer" is the best of
every peer, picows included; "best Python peer" is the best of the Autobahn site,
websockets and aiohttp (the goals of issue 7 are stated against those).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

PEERS = ["autobahn", "websockets", "aiohttp", "picows"]
PYTHON_PEERS = ["autobahn", "websockets", "aiohttp"]
#: portshare at another commit, when the run had --baseline
BASELINE = "baseline"
#: portshare with an application mounted (bench/run.py's APP_VARIANT)
APP_VARIANT = "portshare-app"
#: portshare with --broker redis:// (and the run's own redis-server)
REDIS = "portshare-redis"
ORDER = ["portshare", REDIS, BASELINE, APP_VARIANT, *PEERS]


def dig(obj: Any, *path: Any) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def peakStep(cell: dict[str, Any], size: str) -> dict[str, Any] | None:
    steps = dig(cell, "sizes", size, "steps") or []
    return max(steps, key=lambda st: st["achieved"]) if steps else None


def perCpu(window: dict[str, Any] | None, key: str) -> float | None:
    """
    Work per CPU-second of the server: a rate divided by the share of a core the server got.
    On a shared machine this moves much less than the rate itself.
    """
    if not window or not window.get("server_cpu") or window.get(key) is None:
        return None
    return window[key] / (window["server_cpu"] / 100)


# each row: label, scenario, getter, higher-is-better, format
Row = tuple[str, str, Callable[[dict[str, Any]], Any], bool, str]


def fanoutRows(sizes: list[str]) -> list[Row]:
    rows: list[Row] = []
    for s in sizes:
        rows.append(
            (
                f"B fan-out S={s}: max sustained deliveries/s",
                "fanout",
                lambda c, s=s: dig(c, "sizes", s, "max_sustained"),
                True,
                "{:,.0f}",
            )
        )
    for s in sizes:
        rows.append(
            (
                f"B fan-out S={s}: peak deliveries/s",
                "fanout",
                lambda c, s=s: dig(c, "sizes", s, "peak"),
                True,
                "{:,.0f}",
            )
        )
    for s in sizes:
        rows.append(
            (
                f"B S={s}: deliveries per server CPU-second (peak step)",
                "fanout",
                lambda c, s=s: perCpu(peakStep(c, s), "achieved"),
                True,
                "{:,.0f}",
            )
        )
    for s in sizes:
        rows.append(
            (
                f"B S={s}: p50 ms at first step",
                "fanout",
                lambda c, s=s: dig(c, "sizes", s, "latency_first_step_ms", "p50"),
                False,
                "{:.1f}",
            )
        )
    for s in sizes:
        rows.append(
            (
                f"B S={s}: p99 ms at first step",
                "fanout",
                lambda c, s=s: dig(c, "sizes", s, "latency_first_step_ms", "p99"),
                False,
                "{:.1f}",
            )
        )
    return rows


def rows(results: dict[str, Any]) -> list[Row]:
    sizes = [str(s) for s in dig(results, "params", "fanout", "sizes") or []]
    return [
        ("A echo msgs/s", "echo", lambda c: c.get("msgs_per_s"), True, "{:,.0f}"),
        (
            "A echo msgs per server CPU-second",
            "echo",
            lambda c: perCpu(c, "msgs_per_s"),
            True,
            "{:,.0f}",
        ),
        ("A echo RTT p50 ms", "echo", lambda c: dig(c, "rtt_ms", "p50"), False, "{:.2f}"),
        ("A echo RTT p99 ms", "echo", lambda c: dig(c, "rtt_ms", "p99"), False, "{:.2f}"),
        *fanoutRows(sizes),
        (
            "C idle RSS per joined conn (KiB)",
            "idle",
            lambda c: c["rss_per_conn"] / 1024 if c.get("rss_per_conn") is not None else None,
            False,
            "{:.1f}",
        ),
        ("C handshakes/s", "idle", lambda c: c.get("handshakes_per_s"), True, "{:,.0f}"),
        ("C joins/s", "idle", lambda c: c.get("joins_per_s"), True, "{:,.0f}"),
        (
            "C connect + join /s",
            "idle",
            lambda c: c.get("connect_join_per_s"),
            True,
            "{:,.0f}",
        ),
        (
            "C bytes to members per join, first fifth of the room",
            "idle",
            lambda c: c["join_chunks"][0]["bytes_per_join"],
            False,
            "{:,.0f}",
        ),
        (
            "C bytes to members per join, last fifth of the room",
            "idle",
            lambda c: c["join_chunks"][-1]["bytes_per_join"],
            False,
            "{:,.0f}",
        ),
        (
            "C frames to members during joins",
            "idle",
            lambda c: c.get("frames_to_members_during_joins"),
            False,
            "{:,.0f}",
        ),
        ("D GET / req/s alone", "http", lambda c: dig(c, "alone", "rps"), True, "{:,.0f}"),
        (
            "D GET / req/s during fan-out at 10k deliveries/s",
            "http",
            lambda c: dig(c, "during_fanout_moderate", "rps"),
            True,
            "{:,.0f}",
        ),
        (
            "D during 10k/s / alone",
            "http",
            lambda c: dig(c, "during_fanout_moderate", "ratio_to_alone"),
            True,
            "{:.2f}",
        ),
        (
            "D GET / req/s during fan-out at 50k deliveries/s",
            "http",
            lambda c: dig(c, "during_fanout", "rps"),
            True,
            "{:,.0f}",
        ),
        (
            "D during 50k/s / alone",
            "http",
            lambda c: dig(c, "during_fanout", "ratio_to_alone"),
            True,
            "{:.2f}",
        ),
        (
            "E slow consumer cut after s",
            "slow",
            lambda c: c.get("cut_after_s") if c.get("cut") else None,
            False,
            "{:.1f}",
        ),
        (
            "E server RSS growth MiB",
            "slow",
            lambda c: c["rss_growth"] / 2**20 if c.get("rss_growth") is not None else None,
            False,
            "{:.1f}",
        ),
        ("E others' rate kept", "slow", lambda c: c.get("others_ratio"), True, "{:.2f}"),
        ("F inbound say/s", "publishers", lambda c: c.get("says_per_s"), True, "{:,.0f}"),
        (
            "F1 one publisher, one at a time, say/s",
            "publisher",
            lambda c: c.get("says_per_s"),
            True,
            "{:,.0f}",
        ),
        (
            "F says per server CPU-second",
            "publishers",
            lambda c: perCpu(c, "says_per_s"),
            True,
            "{:,.0f}",
        ),
    ]


def fmt(value: Any, pattern: str) -> str:
    if value is None:
        return "-"
    try:
        return pattern.format(value)
    except (ValueError, TypeError):
        return str(value)


def ratio(mine: Any, others: list[Any], higher: bool) -> str:
    vals = [v for v in others if isinstance(v, int | float) and v > 0]
    if not isinstance(mine, int | float) or not vals or mine <= 0:
        return "-"
    best = max(vals) if higher else min(vals)
    # ratios always read "higher is better for portshare"
    return f"{mine / best:.2f}x" if higher else f"{best / mine:.2f}x"


def table(results: dict[str, Any]) -> str:
    data = results["results"]
    servers = [s for s in ORDER if any(s in cells for cells in data.values())]
    withBaseline = BASELINE in servers
    withApp = APP_VARIANT in servers
    head = ["metric", *servers, "vs best peer", "vs best Python peer"]
    if withBaseline:
        head.append("vs baseline")
    if withApp:
        head.append("with app ÷ without")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, scenario, get, higher, pattern in rows(results):
        cells = data.get(scenario)
        if not cells:
            continue
        values: dict[str, Any] = {}
        for s in servers:
            cell = cells.get(s)
            try:
                values[s] = get(cell) if cell and "error" not in cell else None
            except (KeyError, TypeError):
                values[s] = None
        line = [label, *[fmt(values[s], pattern) for s in servers]]
        line.append(ratio(values.get("portshare"), [values.get(p) for p in PEERS], higher))
        line.append(ratio(values.get("portshare"), [values.get(p) for p in PYTHON_PEERS], higher))
        if withBaseline:
            line.append(ratio(values.get("portshare"), [values.get(BASELINE)], higher))
        if withApp:
            line.append(ratio(values.get(APP_VARIANT), [values.get("portshare")], higher))
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


def cpuTable(results: dict[str, Any]) -> str:
    """Server and generator CPU at the peak of each fan-out size: which side was the limit."""
    data = results["results"].get("fanout", {})
    sizes = [str(s) for s in dig(results, "params", "fanout", "sizes") or []]
    servers = [s for s in ORDER if s in data]
    if not servers:
        return ""
    lines = [
        "| S | " + " | ".join(servers) + " |",
        "|" + "---|" * (len(servers) + 1),
    ]
    for s in sizes:
        row = [s]
        for name in servers:
            steps = dig(data, name, "sizes", s, "steps") or []
            if not steps:
                row.append("-")
                continue
            peak = max(steps, key=lambda st: st["achieved"])
            row.append(
                f"{peak['achieved']:,} @ server {peak['server_cpu']:.0f}% / "
                f"gen {peak['gen_cpu']:.0f}% / other {peak.get('other_cpu', 0):.0f}%"
                + (f" / redis {peak['redis_cpu']:.0f}%" if "redis_cpu" in peak else "")
            )
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


#: issue 16's goals: the Redis broker's share of the memory broker's figure, in one run
REDIS_GOALS = {"publishers": 0.7, "publisher": 0.8, "fanout": 0.9}


def redisRows(results: dict[str, Any]) -> list[tuple[str, str, Any, Any, float]]:
    """(label, scenario, memory cell's figure and window, Redis cell's, goal) rows."""
    data = results["results"]
    out: list[tuple[str, str, Any, Any, float]] = []
    for scenario, label in (
        ("publishers", "F many publishers, say/s"),
        ("publisher", "F1 one publisher one at a time, say/s"),
    ):
        cells = data.get(scenario, {})
        if REDIS in cells:
            mem, red = cells.get("portshare"), cells.get(REDIS)
            out.append((label, scenario, _said(mem), _said(red), REDIS_GOALS[scenario]))
    cells = data.get("fanout", {})
    if REDIS in cells:
        for s in [str(s) for s in dig(results, "params", "fanout", "sizes") or []]:
            out.append(
                (
                    f"B fan-out S={s}, max sustained deliveries/s",
                    "fanout",
                    _sustained(cells.get("portshare"), s),
                    _sustained(cells.get(REDIS), s),
                    REDIS_GOALS["fanout"],
                )
            )
    return out


def _said(cell: Any) -> tuple[Any, Any]:
    if not cell or "error" in cell:
        return None, None
    return cell.get("says_per_s"), cell


def _sustained(cell: Any, size: str) -> tuple[Any, Any]:
    if not cell or "error" in cell:
        return None, None
    ok = [st for st in dig(cell, "sizes", size, "steps") or [] if st.get("ok")]
    best = max(ok, key=lambda st: st["achieved"]) if ok else None
    return dig(cell, "sizes", size, "max_sustained"), best


def _cpu(window: Any) -> str:
    if not window:
        return "-"
    text = f"portshare {window.get('server_cpu', 0):.0f}%"
    if "redis_cpu" in window:
        text += f" / redis {window['redis_cpu']:.0f}%"
    return text


def redisTable(results: dict[str, Any]) -> str:
    """The memory broker beside the Redis broker, the ratio and issue 16's goal for it."""
    rows_ = redisRows(results)
    if not rows_:
        return ""
    lines = [
        "| metric | memory | redis | redis / memory | goal | CPU (memory) | CPU (redis) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, _, (mem, memWin), (red, redWin), goal in rows_:
        r = f"{red / mem:.2f}x" if mem and red is not None else "-"
        lines.append(
            f"| {label} | {fmt(mem, '{:,.0f}')} | {fmt(red, '{:,.0f}')} | {r} | "
            f">= {goal}x | {_cpu(memWin)} | {_cpu(redWin)} |"
        )
    return "\n".join(lines)


def otherTable(results: dict[str, Any]) -> str:
    """CPU figures of the other scenarios (server / generator / rest of the machine)."""
    data = results["results"]
    servers = [s for s in ORDER if any(s in cells for cells in data.values())]
    picks = {
        "echo": lambda c: c,
        "idle": lambda c: c.get("join_phase"),
        "slow": lambda c: c.get("stall"),
        "publishers": lambda c: c,
        "publisher": lambda c: c,
        "http": lambda c: c.get("alone"),
    }
    lines = ["| scenario | " + " | ".join(servers) + " |", "|" + "---|" * (len(servers) + 1)]
    for scenario, pick in picks.items():
        if scenario not in data:
            continue
        row = [scenario]
        for s in servers:
            cell = data[scenario].get(s)
            fig = pick(cell) if cell and "error" not in cell else None
            if not fig:
                row.append("-")
            elif scenario == "http":
                row.append(f"server {fig.get('server_cpu', 0):.0f}% / wrk {fig['wrk_cpu']:.0f}%")
            else:
                redis = f" / redis {fig['redis_cpu']:.0f}%" if "redis_cpu" in fig else ""
                row.append(
                    f"server {fig['server_cpu']:.0f}% / gen {fig['gen_cpu']:.0f}% / "
                    f"other {fig.get('other_cpu', 0):.0f}%{redis}"
                )
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def drawPlots(results: dict[str, Any], out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    data = results["results"].get("fanout", {})
    sizes = [str(s) for s in dig(results, "params", "fanout", "sizes") or []]
    servers = [s for s in ORDER if s in data and "error" not in data[s]]
    made = []
    if servers and sizes:
        fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4), squeeze=False)
        for ax, s in zip(axes[0], sizes, strict=True):
            for name in servers:
                steps = dig(data, name, "sizes", s, "steps") or []
                if steps:
                    ax.plot(
                        [st["offered"] / 1000 for st in steps],
                        [st["achieved"] / 1000 for st in steps],
                        marker="o",
                        label=name,
                        linewidth=2.5 if name == "portshare" else 1.2,
                    )
            top = max(results["params"]["fanout"]["steps"]) / 1000
            ax.plot([0, top], [0, top], color="grey", linestyle=":", linewidth=0.8)
            ax.set_title(f"fan-out, one room of S={s}")
            ax.set_xlabel("offered deliveries/s (k)")
            ax.set_ylabel("delivered/s (k)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / "fanout.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        made.append(path)

        fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4), squeeze=False)
        for ax, s in zip(axes[0], sizes, strict=True):
            for name in servers:
                steps = [
                    st
                    for st in dig(data, name, "sizes", s, "steps") or []
                    if st["latency_ms"]["p99"] is not None
                ]
                if steps:
                    line = ax.plot(
                        [st["offered"] / 1000 for st in steps],
                        [st["latency_ms"]["p99"] for st in steps],
                        marker="o",
                        label=f"{name} p99",
                    )
                    ax.plot(
                        [st["offered"] / 1000 for st in steps],
                        [st["latency_ms"]["p50"] for st in steps],
                        linestyle="--",
                        color=line[0].get_color(),
                        linewidth=0.8,
                    )
            ax.set_yscale("log")
            ax.set_title(f"publish-to-receive latency, S={s} (dashed: p50)")
            ax.set_xlabel("offered deliveries/s (k)")
            ax.set_ylabel("ms")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / "latency.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        made.append(path)
    return made


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    nvx = m.get("nvx", {})
    parts = [
        f"Run {results['started']} ({results['profile']} profile), portshare "
        f"{m['portshare_commit']}; {m['nproc']} cores ({m['cpu']}), Linux {m['kernel']}, "
        f"Python {m['python']}; {versions}; {m.get('wrk') or 'no wrk'}.",
        f"NVX active: {nvx.get('active')} (validator {nvx.get('utf8validator')}).",
        f"portshare options: `{' '.join(results.get('portshare_options', []))}`.",
    ]
    if "quiet" in results:
        q = results["quiet"]
        parts.append(
            f"Load average at start {q['load1']} (waited {q['waited_s']} s); machine busy "
            f"{q.get('busy_before')} % of a core just before."
        )
    return "\n".join(
        [
            " ".join(parts),
            "",
            table(results),
            "",
            "CPU at each fan-out size's peak step (delivered/s @ server / generator / rest of "
            "the machine, % of one core):",
            "",
            cpuTable(results),
            "",
            "CPU in the other scenarios:",
            "",
            otherTable(results),
            "",
            *(
                [
                    "The memory broker beside the Redis broker (the same run; CPU in % of one "
                    "core, at the window of the figure):",
                    "",
                    redisTable(results),
                    "",
                ]
                if redisRows(results)
                else []
            ),
        ]
    )


def writeReport(results: dict[str, Any], out: Path, plots: bool = True) -> str:
    """Write C{results.md} (and the PNGs) into C{out}; @return: the markdown."""
    text = render(results)
    (out / "results.md").write_text(text)
    if plots:
        drawPlots(results, out)
    return text


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else Path(__file__).parent / "results" / "latest.json"
    results = json.loads(path.read_text())
    print(writeReport(results, path.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
