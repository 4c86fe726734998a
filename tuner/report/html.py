"""One self-contained HTML file: inline SVG pictures, inline CSS, no script, no network resource."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tuner import __version__
from tuner.profiles import render_socket_snippets, render_sysctl_d
from tuner.report import charts
from tuner.report.data import ReportData
from tuner.units import format_metric, format_value

__all__ = ["render_html"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;color:#222;
     padding:0 1em;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
.verdict{font-size:1.1em;padding:.6em .9em;border-radius:6px;background:#eef6ee;border:1px solid #9c9}
.verdict.none{background:#f5f5f5;border-color:#ccc} .partial{background:#fff6e0;border-color:#e0c060}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} td,th{padding:.25em .7em;border-bottom:1px solid #eee;
text-align:left} th{background:#fafafa} td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em} .muted{color:#777;font-size:.85em}
figure{margin:.5em 0} svg{max-width:100%;height:auto}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{_e(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _gain(g: Any) -> str:
    if not isinstance(g, (int, float)) or not math.isfinite(g):
        return str(g)
    return f"{g:,.0f}x" if g >= 100 else f"{g:.3g}x"


def _metrics_table(ev: Mapping[str, Any]) -> str:
    metrics = ev.get("metrics") or {}
    rows = []
    for name, m in metrics.items():
        if not isinstance(m, Mapping):
            continue
        rows.append(
            (
                name,
                format_metric(name, float(m.get("baseline", math.nan))),
                format_metric(name, float(m.get("recommended", math.nan))),
                _gain(m.get("gain")),
                f"{_gain(m.get('gain_lo'))} .. {_gain(m.get('gain_hi'))}",
                "yes" if m.get("significant") else "no",
            )
        )
    if not rows:
        return ""
    return _table(
        ("metric", "baseline", "recommended", "times better", "interval", "beyond noise"),
        rows,
        numeric=(1, 2, 3),
    )


def _context(data: ReportData) -> str:
    ev = data.evidence
    rows: list[tuple[str, str]] = []
    workload = data.profile.workload if data.profile and data.profile.workload else None
    if workload is not None:
        rows.append(("workload", workload.kind.value))
    elif data.header.get("workload"):
        rows.append(("workload", str(data.header["workload"].get("kind"))))
    if ev.get("path") or data.header.get("path"):
        rows.append(("path", str(ev.get("path") or data.header.get("path"))))
    for key, label in (
        ("backend", "emulated path"),
        ("sampler", "sampler"),
        ("seed", "seed"),
        ("trials", "search trials"),
        ("failed_trials", "failed trials"),
        ("stop_reason", "search stopped"),
        ("elapsed_s", "wall time (s)"),
        ("confidence", "confidence"),
    ):
        if key in ev:
            value = ev[key]
            rows.append((label, f"{value:.4g}" if isinstance(value, float) else str(value)))
    machine = ev.get("machine") or {}
    for key, value in dict(machine).items():
        rows.append((f"machine {key}", str(value)))
    out = _table(("", ""), rows) if rows else ""
    health = ev.get("path_health")
    if isinstance(health, Mapping) and health:
        out += "<h3>Path health</h3>" + _table(
            ("", ""), [(k, format_value(v)) for k, v in health.items() if not isinstance(v, Mapping)]
        )
    baseline = ev.get("baseline") or {}
    settings = baseline.get("settings") if isinstance(baseline, Mapping) else None
    if isinstance(settings, Mapping) and settings:
        source = baseline.get("source", "")
        out += f"<h3>Baseline (the target's own settings{', ' + _e(source) if source else ''})</h3>"
        out += _table(("knob", "value"), [(k, format_value(v)) for k, v in sorted(settings.items())])
    return out


def render_html(data: ReportData) -> str:
    ev = data.evidence
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>tuner report: {_e(data.title)}'
        f"</title><style>{_CSS}</style></head><body>",
        f"<h1>tuner report: {_e(data.title)}</h1>",
        f'<p class="muted">from {_e(", ".join(data.sources))}; written '
        f"{datetime.now(UTC).replace(microsecond=0).isoformat()} by tuner {__version__}</p>",
    ]
    if data.partial:
        parts.append(
            '<p class="verdict partial">The search is still running (or its profile was not given): '
            "this report shows the trials so far and no verdict.</p>"
        )
    else:
        cls = "verdict" if ev.get("significant") else "verdict none"
        parts.append(
            f'<p class="{cls}">{_e(ev.get("verdict") or "hand-written profile: nothing measured")}</p>'
        )
    if data.trials:
        parts += [
            "<h2>Search</h2>",
            '<p class="muted">Each trial\'s score in the order measured; the band is '
            "the baseline's range, the red line the best so far; crosses mark failed, invalid or pruned "
            "trials.</p>",
            f"<figure>{charts.convergence_svg(data)}</figure>",
        ]
    recommended = data.recommended if data.recommended is not None else data.best_assignment()
    base_samples = data.samples_of({})
    rec_samples = data.samples_of(recommended)
    metrics = list((ev.get("metrics") or {}).keys()) or sorted(set(base_samples) & set(rec_samples))
    figure = (
        charts.distributions_svg(base_samples, rec_samples, metrics) if data.trials and recommended else ""
    )
    table = _metrics_table(ev)
    if figure or table:
        parts += [
            "<h2>Before and after</h2>",
            '<p class="muted">Every sample of each metric, baseline beside '
            f"the {'best setting so far' if data.partial else 'recommended setting'}.</p>",
            f"<figure>{figure}</figure>" if figure else "",
            table,
        ]
    knobs = charts.knobs_svg(data) if data.trials else ""
    changed = ev.get("changed") or {}
    if knobs or changed or (data.profile and data.profile.assignment):
        parts.append("<h2>Knobs</h2>")
        if knobs:
            pick = "best so far" if data.partial else "recommended"
            parts += [
                f'<p class="muted">Score of every trial at each level of each knob; the shaded level is the '
                f"{pick} one.</p>",
                f"<figure>{knobs}</figure>",
            ]
        if changed:
            parts.append(
                _table(
                    ("knob", "baseline", "recommended"),
                    [
                        (k, format_value(v.get("from")), format_value(v.get("to")))
                        for k, v in changed.items()
                        if isinstance(v, Mapping)
                    ],
                )
            )
    context = _context(data)
    if context:
        parts += ["<h2>Context</h2>", context]
    if data.profile is not None:
        parts += ["<h2>Apply it</h2>", "<h3>sysctl.d</h3>", f"<pre>{_e(render_sysctl_d(data.profile))}</pre>"]
        if data.profile.socket:
            parts += ["<h3>In the application</h3>", f"<pre>{_e(render_socket_snippets(data.profile))}</pre>"]
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)
