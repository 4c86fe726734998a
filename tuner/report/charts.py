"""The report's pictures, drawn with matplotlib (Agg) and returned as inline SVG text.

matplotlib stays in this module and is imported only when a report is drawn, so no other command pays
for it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from tuner.report.data import ReportData, TrialPoint

__all__ = ["convergence_svg", "distributions_svg", "knobs_svg"]

_ROLE_STYLE = {
    "baseline": ("#777777", "s"),
    "search": ("#1f77b4", "o"),
    "simplify": ("#9467bd", "D"),
    "confirm": ("#2ca02c", "^"),
    "confirm-ahead": ("#98df8a", "^"),  # measured in the search's last batch (see TrialRole.AHEAD)
}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}
    )
    return plt


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    _plt().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # inline: no XML prolog or DOCTYPE


def _level_text(value: Any) -> str:
    """A knob level on an axis: sizes in KiB/MiB, the rest as :func:`tuner.units.format_value` writes it."""
    from tuner.units import format_size, format_value

    if isinstance(value, int) and not isinstance(value, bool) and value >= 1024 and value % 1024 == 0:
        return format_size(value)
    return format_value(value)


def convergence_svg(data: ReportData) -> str:
    """Score of each trial in order, the best so far, the baseline's band; phases by marker, failed and
    invalid trials marked at the bottom."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.4))
    trials = sorted(data.trials, key=lambda t: t.number)
    scores = [t.value for t in trials if t.usable]
    base = [t.value for t in trials if t.usable and t.role == "baseline"]
    if base:
        ax.axhspan(min(base), max(base), color="#999999", alpha=0.2, label="baseline (range)")
        ax.axhline(sorted(base)[len(base) // 2], color="#777777", lw=1, ls="--")
    for role, (color, marker) in _ROLE_STYLE.items():
        pts = [(i, t.value) for i, t in enumerate(trials) if t.usable and t.role == role]
        if pts:
            ax.scatter(*zip(*pts), color=color, marker=marker, s=28, label=role, zorder=3)
    best: list[tuple[int, float]] = []
    for i, t in enumerate(trials):
        if t.usable and t.role in ("baseline", "search"):
            if not best or data.better(t.value, best[-1][1]):
                best.append((i, t.value))
            else:
                best.append((i, best[-1][1]))
    if best:
        ax.step(*zip(*best), where="post", color="#d62728", lw=1.3, label="best so far")
    bad = [i for i, t in enumerate(trials) if not t.usable]
    if bad and scores:
        floor = min(scores)
        ax.scatter(
            bad,
            [floor] * len(bad),
            marker="x",
            color="#d62728",
            s=30,
            label="failed / invalid / pruned",
            zorder=4,
        )
    if scores and min(scores) > 0 and max(scores) / min(scores) > 30:
        ax.set_yscale("log")
    ax.set_xlabel("measurement, in order")
    ax.set_ylabel(
        f"{data.objective or 'score'} ({'lower' if data.direction == 'min' else 'higher'} is better)"
    )
    ax.legend(loc="best", fontsize=7, frameon=False)
    return _svg(fig)


def distributions_svg(
    baseline: Mapping[str, Sequence[float]],
    recommended: Mapping[str, Sequence[float]],
    metrics: Sequence[str],
) -> str:
    """Box plots of each metric's samples, baseline beside recommended, so overlap is visible."""
    plt = _plt()
    shown = [m for m in metrics if baseline.get(m) and recommended.get(m)][:6]
    if not shown:
        return ""
    fig, axes = plt.subplots(1, len(shown), figsize=(2.6 * len(shown), 3.0), squeeze=False)
    for ax, metric in zip(axes[0], shown):
        b, r = list(baseline[metric]), list(recommended[metric])
        parts = ax.boxplot([b, r], widths=0.55, patch_artist=True, showfliers=True)
        for patch, color in zip(parts["boxes"], ("#bbbbbb", "#2ca02c")):
            patch.set_facecolor(color)
        for x, ys in ((1, b), (2, r)):
            ax.scatter([x] * len(ys), ys, s=8, color="#333333", alpha=0.6, zorder=3)
        ax.set_xticks([1, 2], ["baseline", "recommended"])
        ax.set_title(metric, fontsize=9)
        values = [v for v in b + r if v > 0]
        if values and max(values) / min(values) > 30:
            ax.set_yscale("log")
    fig.tight_layout()
    return _svg(fig)


def knobs_svg(data: ReportData) -> str:
    """For each knob of the space: the score of every trial at each level, the recommended level marked."""
    plt = _plt()
    knobs = [k for k in data.space if any(t.usable for t in data.trials)][:12]
    if not knobs:
        return ""
    cols = min(3, len(knobs))
    rows = math.ceil(len(knobs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    usable: list[TrialPoint] = [t for t in data.trials if t.usable]
    baseline = dict(data.header.get("space", {}).get("baseline", {})) if data.header else {}
    recommended = dict(data.recommended if data.recommended is not None else data.best_assignment())
    for ax, knob in zip(axes.flat, knobs):
        levels = list(data.space[knob])
        labels = [_level_text(v) for v in levels]
        xs: list[int] = []
        ys: list[float] = []
        for t in usable:
            value = (
                t.assignment[knob] if knob in t.assignment else _baseline_level(levels, baseline.get(knob))
            )
            idx = _index(levels, value)
            if idx is None:
                continue
            xs.append(idx)
            ys.append(t.value)
        ax.scatter(xs, ys, s=14, color="#1f77b4", alpha=0.7)
        pick = _index(
            levels, recommended[knob] if knob in recommended else _baseline_level(levels, baseline.get(knob))
        )
        if pick is not None:
            ax.axvspan(pick - 0.35, pick + 0.35, color="#2ca02c", alpha=0.18)
        ax.set_xticks(range(len(levels)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_title(
            knob + (f" (baseline {_level_text(baseline[knob])})" if knob in baseline else ""), fontsize=8
        )
        if ys and min(ys) > 0 and max(ys) / min(ys) > 30:
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(knobs) :]:
        ax.axis("off")
    fig.tight_layout()
    return _svg(fig)


def _baseline_level(levels: Sequence[Any], value: Any) -> Any:
    """The level a trial that leaves a knob alone runs at: the baseline's value, else unset (off)."""
    if value is not None:
        return value
    return None if None in levels or False not in levels else False


def _index(levels: Sequence[Any], value: Any) -> int | None:
    norm = tuple(value) if isinstance(value, list) else value
    for i, level in enumerate(levels):
        if (tuple(level) if isinstance(level, list) else level) == norm:
            return i
    return None
