"""A run folder as one self-contained HTML page: for deciding whether a change is good.

`write_report(folder)` reads `run.json` and `trials.jsonl` and writes `report.html` beside them.
The page needs nothing else: no scripts, no external assets; the plots are inline SVG drawn by
matplotlib (the `eval` extra). Every piece of text from the run is escaped.

Pass rates and pass^k are over complete trials; incomplete ones (an NL assertion not judged) are
counted beside them, greyed in the per-task table, and never listed as failures.
"""

from __future__ import annotations

import html
import io
import re
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, ValidationError
from .results import RunStore, TrialResult, summarize
from .stats import pass_hat_k

REPORT_FILE = "report.html"
MAX_FAILURES = 10
NOT_JUDGED = "not judged"

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#1f2328;padding:0 16px;line-height:1.4}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;margin-top:32px;border-bottom:1px solid #d0d7de;
padding-bottom:4px}
table{border-collapse:collapse;font-size:.9em;margin:8px 0}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f6f8fa}td.l,th.l{text-align:left}
tr.fail td{background:#ffebe9}tr.flaky td{background:#fff8c5}tr.pass td{background:#dafbe1}
tr.incomplete td{background:#f6f8fa;color:#59636e}
.cfg td{text-align:left}.cfg th{text-align:left;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;min-width:110px}
.card .v{font-size:1.5em;font-weight:600}.card .k{color:#59636e;font-size:.85em}
.bad{color:#cf222e}.good{color:#1a7f37}
.notice{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:8px 12px;margin:8px 0}
.nj{color:#9a6700;font-style:italic}
.plots{display:flex;flex-wrap:wrap;gap:16px}.plot{flex:1 1 320px}.plot svg{width:100%;height:auto}
details{border:1px solid #d0d7de;border-radius:6px;padding:6px 10px;margin:8px 0}
summary{cursor:pointer;font-weight:600}
.msg{margin:4px 0;white-space:pre-wrap}.role{font-weight:600;display:inline-block;min-width:80px}
.user{color:#0969da}.assistant{color:#8250df}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85em}
pre{background:#f6f8fa;padding:6px;border-radius:4px;white-space:pre-wrap;word-break:break-word;margin:2px 0}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return f'<span class="nj">{NOT_JUDGED}</span>' if value is None else fmt.format(value)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return re.sub(r"<metadata>.*?</metadata>\s*", "", text[text.find("<svg"):], flags=re.DOTALL)


def _plots(summary: dict[str, Any], trials: list[TrialResult]) -> dict[str, str]:
    try:
        import matplotlib
    except ModuleNotFoundError as exc:
        raise ConfigError("the HTML report needs matplotlib", hint="install concierge[eval]") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: dict[str, str] = {}
    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 10}):
        curve = summary["pass_hat_k"]
        figure, ax = plt.subplots(figsize=(4.6, 3.2))
        ks = sorted(curve)
        ax.plot(ks, [curve[k] for k in ks], marker="o", color="#0969da")
        ax.set(xlabel="k (trials that must all pass)", ylabel="pass^k", ylim=(0, 1.05), title="pass^k")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
        plots["pass_k"] = _svg(figure)
        plt.close(figure)

        latencies = [x for t in trials for x in t.turn_latency_ms]
        if latencies:
            figure, ax = plt.subplots(figsize=(4.6, 3.2))
            ax.hist(latencies, bins=min(40, max(5, len(latencies) // 5)), color="#8250df")
            ax.set(xlabel="ms per turn", ylabel="turns", title="Per-turn latency")
            ax.grid(alpha=0.3)
            plots["latency"] = _svg(figure)
            plt.close(figure)

        costs = [t.cost_usd for t in trials]
        if any(costs):
            figure, ax = plt.subplots(figsize=(4.6, 3.2))
            ax.hist(costs, bins=min(40, max(5, len(costs) // 5)), color="#1a7f37")
            ax.set(xlabel="USD per conversation", ylabel="conversations", title="Cost per conversation")
            ax.grid(alpha=0.3)
            plots["cost"] = _svg(figure)
            plt.close(figure)
    return plots


def _header(config: dict[str, Any], summary: dict[str, Any]) -> str:
    keys = ("agent", "user", "judge", "tasks", "trials", "max_turns", "started")
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(config[k])}</td></tr>"
                   for k in keys if config.get(k) is not None)
    rate, reward = summary["pass_rate"], summary["mean_reward"]
    cards = [("pass rate", _pct(rate), "" if rate is None else "good" if rate >= 1 else "bad" if rate < 0.5 else "")]
    cards += [(f"pass^{k}", f"{v:.1%}", "") for k, v in sorted(summary["pass_hat_k"].items())]
    cards += [("mean reward", "–" if reward is None else f"{reward:.3f}", ""),
              ("trials", f"{summary['trials']:,} ({summary['tasks']:,} tasks)", ""),
              ("incomplete", f"{summary['incomplete']:,}", "bad" if summary["incomplete"] else "good"),
              ("errors", str(summary["errors"]), "bad" if summary["errors"] else "good")]
    if summary["cost_usd"]["total"]:
        cards.append(("total cost", f"${summary['cost_usd']['total']:,.4f}", ""))
    out = [f'<table class="cfg">{rows}</table>', '<div class="cards">']
    out += [f'<div class="card"><div class="v {cls}">{_e(v)}</div><div class="k">{_e(k)}</div></div>'
            for k, v, cls in cards]
    out.append("</div>")
    if summary["partial"]:
        out.append(f'<div class="notice"><b>partial:</b> {summary["incomplete"]:,} of {summary["trials"]:,} '
                   "trials are incomplete: NL assertions not judged (no judge model). They count as neither "
                   "pass nor fail; pass rate and pass^k are over the complete trials only.</div>")
    return "\n".join(out)


def _task_table(trials: list[TrialResult], components: list[str], k: int) -> str:
    by_task: dict[str, list[TrialResult]] = defaultdict(list)
    for t in trials:
        by_task[t.task_id].append(t)

    def order(item: tuple[str, list[TrialResult]]) -> tuple[float, list[Any]]:
        # lowest success rate over complete trials first, tasks with none last, then by id with
        # numbers in numeric order
        done = [r for r in item[1] if r.complete]
        natural = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", item[0])]
        return (sum(r.success for r in done) / len(done) if done else 2.0, natural)

    head = ("<tr><th class='l'>task</th><th>trials</th><th>incomplete</th><th>successes</th>"
            f"<th>pass^{k}</th><th>mean reward</th>"
            + "".join(f"<th>{_e(c)}</th>" for c in components) + "<th class='l'>stop reasons</th></tr>")
    rows = []
    for task_id, runs in sorted(by_task.items(), key=order):
        done = [r for r in runs if r.complete]
        wins = sum(r.success for r in done)
        cls = "incomplete" if not done else "pass" if wins == len(done) else "fail" if wins == 0 else "flaky"
        reliability = pass_hat_k(wins, len(done), min(k, len(done))) if done else None
        reward = statistics.fmean(r.reward for r in done) if done else None
        cells = [f"<td class='l'><code>{_e(task_id)}</code></td>", f"<td>{len(runs)}</td>",
                 f"<td>{len(runs) - len(done)}</td>", f"<td>{wins}/{len(done)}</td>",
                 f"<td>{_pct(reliability)}</td>", f"<td>{'–' if reward is None else f'{reward:.3f}'}</td>"]
        for name in components:
            judged = [v for r in runs if (v := r.components.get(name)) is not None]
            present = any(name in r.components for r in runs)
            if not present:
                cells.append("<td>–</td>")
            else:
                missing = sum(1 for r in runs if name in r.components and r.components[name] is None)
                text = _num(statistics.fmean(judged) if judged else None)
                if judged and missing:
                    text += f' <span class="nj">({missing} {NOT_JUDGED})</span>'
                cells.append(f"<td>{text}</td>")
        stops = Counter(r.stop_reason for r in runs)
        cells.append("<td class='l'>" + ", ".join(f"{_e(s)}×{n}" for s, n in stops.most_common()) + "</td>")
        rows.append(f"<tr class='{cls}'>{''.join(cells)}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _latency_table(summary: dict[str, Any]) -> str:
    rows = []
    for key, label in (("turn_latency_ms", "per turn"), ("first_response_ms", "first model response")):
        p = summary[key]
        rows.append(f"<tr><td class='l'>{label}</td><td>{_ms(p['p50'])}</td><td>{_ms(p['p95'])}</td>"
                    f"<td>{_ms(p['p99'])}</td></tr>")
    return ("<table><tr><th class='l'>latency (ms)</th><th>p50</th><th>p95</th><th>p99</th></tr>"
            + "".join(rows) + "</table>")


def _failure(t: TrialResult) -> str:
    parts = [f"<details><summary><code>{_e(t.task_id)}</code> trial {t.trial} · reward {t.reward:.3f} · "
             f"stop: {_e(t.stop_reason)}" + (" · <span class='bad'>error</span>" if t.error else "") + "</summary>"]
    if t.error:
        parts.append(f"<p class='bad'>error: <code>{_e(t.error)}</code></p>")
    if t.components:
        parts.append("<p>components: " + ", ".join(f"{_e(name)} = {_num(value)}"
                                                     for name, value in sorted(t.components.items())) + "</p>")
    parts.append("<h4>Conversation</h4>")
    parts += [f"<div class='msg'><span class='role {_e(m.get('role', ''))}'>{_e(m.get('role', '?'))}:</span> "
              f"{_e(m.get('text', ''))}</div>" for m in t.conversation]
    if not t.conversation:
        parts.append("<p>(no messages)</p>")
    if t.tool_calls:
        parts.append("<h4>Tool calls</h4><table><tr><th class='l'>tool</th><th class='l'>arguments</th>"
                     "<th class='l'>error</th></tr>")
        for call in t.tool_calls:
            arguments = ", ".join(f"{k}={v!r}" for k, v in (call.get("arguments") or {}).items())
            error = call.get("error")
            parts.append(f"<tr><td class='l'><code>{_e(call.get('name', '?'))}</code></td>"
                         f"<td class='l'><pre>{_e(arguments)}</pre></td>"
                         f"<td class='l{' bad' if error else ''}'>{_e(error) if error else ''}</td></tr>")
        parts.append("</table>")
    parts.append("</details>")
    return "\n".join(parts)


def render_report(config: dict[str, Any], trials: list[TrialResult]) -> str:
    """The report page for a run's settings and trials, as one HTML string."""
    if not trials:
        raise ValidationError("the run has no trials to report on", hint="run some trials first")
    summary = summarize(trials)
    plots = _plots(summary, trials)
    k = max(summary["pass_hat_k"], default=1)
    components = sorted(summary["components"])
    failures = sorted((t for t in trials if t.outcome == "fail"), key=lambda t: (t.task_id, t.trial))
    title = f"Eval report · {config.get('agent', 'run')}"
    cost_block = (f"<div class='plot'>{plots['cost']}</div>" if "cost" in plots else
                  "<div class='plot notice'>no cost recorded (local/scripted models)</div>")
    latency_block = (f"<div class='plot'>{plots['latency']}</div>" if "latency" in plots else
                     "<div class='plot notice'>no turn latencies recorded</div>")
    body = [
        f"<h1>{_e(title)}</h1>", _header(config, summary),
        "<h2>Per task</h2>",
        ("<p>Failing tasks first. Red: no complete trial passed; yellow: some passed; green: all passed; "
         "grey: no complete trial (not judged). Successes and pass^k are over complete trials.</p>"),
        _task_table(trials, components, k),
        "<h2>Reliability, latency and cost</h2>",
        f"<div class='plots'><div class='plot'>{plots['pass_k']}</div>{latency_block}{cost_block}</div>",
        _latency_table(summary),
        f"<h2>Sample failures ({min(len(failures), MAX_FAILURES)} of {len(failures)})</h2>",
    ]
    if failures:
        body += [_failure(t) for t in failures[:MAX_FAILURES]]
    elif summary["incomplete"]:
        body.append("<p>No complete trial failed.</p>")
    else:
        body.append("<p class='good'>Every trial passed.</p>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(folder: Path | str) -> Path:
    """Write `report.html` into a run folder and return its path."""
    store = RunStore(folder)
    config = store.config()
    trials = store.load()
    if not trials:
        raise ValidationError(f"{store.folder} has no finished trials", hint="run the eval before the report")
    path = store.folder / REPORT_FILE
    path.write_text(render_report(config, trials), encoding="utf-8")
    return path
