"""The figure beside ``docs/findings.md`` (``vla-envs findings``): per tested finding and expected
metric, each variant's paired % change per task with its interval, against the paper's reported
value or range (``paper_range``). ``evaluation.analysis.findings`` has the numbers; this module draws them.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from evaluation.analysis.findings import (
    DIRECTION_WORDS,
    MIN_PAIRS,
    Expectation,
    FindingResult,
    is_finite,
    metric_words,
)
from vla_envs.files import atomic_path

# % changes beyond this are drawn at the axis edge (a triangle, the value printed beside it) so one
# outlier does not squash the rest of its panel
FIGURE_CLIP_PERCENT = 300.0
_FIGURE_WIDTH_IN, _FIGURE_DPI = 10.0, 100  # 1000 px wide
_PAPER_PERCENT = re.compile(r"([+\-\u2212]?)\s*(\d+(?:\.\d+)?)\s*%")
_BAND_COLOR = "tab:orange"
# the PNG text entry that marks a figure as this module's: `vla-envs findings` replaces or deletes
# only a figure carrying it (or the one an earlier findings page links to)
FIGURE_MARKER = ("vla-envs", "findings figure")


def paper_range(text: str) -> tuple[float, float] | None:
    """The paper's reported value or range in an ``Expectation.paper`` string, in %: (min, max) of
    the signed numbers followed by '%' ("+3.5% to +19.5%" -> (3.5, 19.5), "+46.2%" -> (46.2, 46.2),
    "+104% / +237% / +275%" -> (104, 275)); "up to X%" spans 0 to X ("up to -25.8%" -> (-25.8, 0));
    None when no number parses ("T_inf added to every cycle")."""
    values = [float(number) * (-1.0 if sign in ("-", "\u2212") else 1.0)
              for sign, number in _PAPER_PERCENT.findall(text)]
    if not values:
        return None
    if re.search(r"\bup to\b", text, flags=re.IGNORECASE):
        values.append(0.0)
    return (min(values), max(values))


def _figure_groups(results: list[FindingResult]) -> list[tuple[FindingResult, Expectation, list[str]]]:
    """(finding, expected metric, its variants with a result, in the finding's order): one panel
    each, for every tested finding."""
    groups = []
    for result in results:
        variants = [v for v in result.variants if any(r.variant == v for r in result.results)]
        if variants:
            groups += [(result, expectation, variants) for expectation in result.finding.expectations]
    return groups


@dataclass(frozen=True)
class _Point:
    """One task's paired % change on one figure row."""

    task: str
    n_pairs: int
    percent: float
    low: float
    high: float


def _figure_row(result: FindingResult, variant: str, metric: str, tasks: list[str]) -> tuple[
        str, list[_Point], list[tuple[str, str]]]:
    """A row's reference, its points (in ``tasks`` order) and the tasks with nothing to draw, and
    why."""
    by_task = {r.task: r for r in result.results if r.variant == variant}
    points, missing = [], []
    for task in (t for t in tasks if t in by_task):
        change = by_task[task].changes[metric]
        if change.n_pairs == 0:
            missing.append((task, "no pairs"))
        elif not is_finite(change.percent):
            missing.append((task, "reference mean 0, no %"))
        else:
            low, high = change.percent_interval
            low, high = (low, high) if is_finite(low) and is_finite(high) else (change.percent, change.percent)
            points.append(_Point(task, change.n_pairs, change.percent, low, high))
    return next(iter(by_task.values())).reference, points, missing


def _row_label(variant: str, reference: str, base: str, points: list[_Point], missing: list[tuple[str, str]]) -> str:
    """'prune30' over 'vs latency_50ms; no pairs: Door': the variant, then its reference when not
    the base and the row's tasks with nothing to draw, and why (a count beyond two tasks)."""
    details = [] if reference == base else [f"vs {reference}"]
    for why in dict.fromkeys(w for _, w in missing):
        names = [t for t, w in missing if w == why]
        if len(names) == len(missing) and not points:
            details.append(why)
        elif len(names) <= 2:
            details.append(f"{why}: {', '.join(names)}")
        else:
            details.append(f"{why} on {len(names)} tasks")
    return "\n".join([variant, "; ".join(details)]) if details else variant


def findings_figure(results: list[FindingResult], tasks: list[str], base: str, confidence: float, path: Path,
                    min_pairs: int = MIN_PAIRS) -> bool:
    """Write ``path`` (PNG, atomically): one panel per tested finding and expected metric, a row per
    variant in the finding's order, per task (a colour, a small offset) the paired % change with its
    interval; 0 and the paper's reported value or range (``paper_range``, shaded) marked. Points
    over fewer than ``min_pairs`` pairs are hollow; a row lacking a task says why under its name (a
    task with nothing drawn anywhere says it once, in the legend); values beyond
    ±``FIGURE_CLIP_PERCENT`` sit at the axis edge as a triangle with the value printed. Each panel
    has its own x scale. Returns False (and writes nothing) when no finding was tested."""
    groups = _figure_groups(results)
    if not groups:
        return False
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from evaluation.pages.report import _pyplot

    panels = [(result, expectation, [(variant, *_figure_row(result, variant, expectation.metric, tasks))
                                     for variant in variants])
              for result, expectation, variants in groups]
    drawn = {p.task for _, _, rows in panels for _, _, points, _ in rows for p in points}
    undrawn = [t for t in tasks if t not in drawn]  # said once, in the legend

    plt = _pyplot()
    colors = plt.get_cmap("tab10").colors
    color_of = {task: colors[i % len(colors)] for i, task in enumerate(tasks)}
    labels = [[_row_label(variant, reference, base, points, [(t, w) for t, w in missing if t not in undrawn])
               for variant, reference, points, missing in rows] for _, _, rows in panels]
    label_chars = max(len(line) for panel in labels for label in panel for line in label.splitlines())
    title_chars = max(50, int((_FIGURE_WIDTH_IN - 0.4 - 0.062 * label_chars) / 0.078))
    row_in = max(0.34, 0.09 * len(tasks) + 0.14)
    titles = [textwrap.wrap(f"{result.finding.study}: {metric_words(e.metric)} {DIRECTION_WORDS[e.direction]} "
                            + (f"(paper {e.paper})" if paper_range(e.paper) else f"(paper: {e.paper}; no number to mark)"),
                            title_chars) for result, e, _ in panels]
    rows_per_panel = [len(rows) for _, _, rows in panels]
    height = 1.0 + sum(0.45 + 0.16 * len(t) for t in titles) + row_in * sum(rows_per_panel)
    fig, axes = plt.subplots(len(panels), 1, figsize=(_FIGURE_WIDTH_IN, height), squeeze=False,
                             layout="constrained", gridspec_kw={"height_ratios": rows_per_panel})
    step = min(0.7 / len(tasks), 0.2)
    offsets = {t: (len(tasks) - 1) / 2 * step - i * step for i, t in enumerate(tasks)}  # first task on top
    clip = FIGURE_CLIP_PERCENT
    any_clipped = False
    for ax, (result, expectation, rows), title, row_labels in zip(axes[:, 0], panels, titles, labels):
        band = paper_range(expectation.paper)
        xs = [0.0] + ([max(-clip, min(clip, b)) for b in band] if band else [])
        for i, (_, _, points, _) in enumerate(rows):
            for point in points:
                y = len(rows) - 1 - i + offsets[point.task]
                c_pct, c_low, c_high = (max(-clip, min(clip, v)) for v in (point.percent, point.low, point.high))
                xs += [c_pct, c_low, c_high]
                color = color_of[point.task]
                hollow = point.n_pairs < min_pairs
                ax.plot([c_low, c_high], [y, y], color=color, lw=1.4, alpha=0.6 if hollow else 1.0,
                        ls=(0, (2, 1.5)) if hollow else "-", solid_capstyle="butt")
                pct = point.percent
                marker = ">" if pct > clip else "<" if pct < -clip else "o"
                ax.plot([c_pct], [y], marker=marker, ms=6 if marker == "o" else 8, color=color,
                        mfc="white" if hollow else color, mew=1.3, ls="none", zorder=3)
                for end, c_end in ((point.low, c_low), (point.high, c_high)):
                    if end != c_end and c_end != c_pct:
                        ax.plot([c_end], [y], marker=">" if end > 0 else "<", ms=6, color=color, ls="none")
                if marker != "o":
                    ax.annotate(f"{pct:+,.0f}%", (c_pct, y), xytext=(-7 if pct > 0 else 7, 0), textcoords="offset points",
                                ha="right" if pct > 0 else "left", va="center", fontsize=7, color=color)
                any_clipped = any_clipped or (point.low, pct, point.high) != (c_low, c_pct, c_high)
        if band:
            low, high = (max(-clip, min(clip, b)) for b in band)
            if high - low > 0:
                ax.axvspan(low, high, color=_BAND_COLOR, alpha=0.22, lw=0, zorder=0)
            else:
                ax.axvline(low, color=_BAND_COLOR, alpha=0.7, lw=3, zorder=0)
        ax.axvline(0, color="black", lw=0.9, zorder=1)
        left, right = min(xs), max(xs)
        pad = 0.07 * max(right - left, 2.0)
        ax.set_xlim(left - pad, right + pad)
        ax.set_ylim(-0.5, len(rows) - 0.5)
        ax.set_yticks(range(len(rows))[::-1], row_labels, fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.xaxis.set_major_formatter(lambda value, _: f"{value:+g}%" if value else "0")
        ax.grid(alpha=0.3, axis="x")
        ax.set_title("\n".join(title), loc="left", fontsize=9, fontweight="bold")
    axes[-1, 0].set_xlabel("paired change against the reference (%; each panel has its own scale)", fontsize=8.5)
    handles = [Line2D([], [], color=color_of[t], marker="o", ls="-", lw=1.4, ms=5,
                      label=t + (" (nothing to draw)" if t in undrawn else "")) for t in tasks]
    handles += [Line2D([], [], color="0.35", marker="o", mfc="white", ls=(0, (2, 1.5)), lw=1.4, ms=5,
                       label=f"fewer than {min_pairs} pairs"),
                Patch(color=_BAND_COLOR, alpha=0.35, label="paper's value or range")]
    if any_clipped:
        handles.append(Line2D([], [], color="0.35", marker=">", ls="none", ms=7, label=f"beyond ±{clip:g}%"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=8.5, frameon=False)
    fig.suptitle(f"The paper's findings: paired % change of each expected metric over the seeds both solved "
                 f"({confidence:.0%} interval)", fontsize=10.5)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=_FIGURE_DPI, metadata=dict([FIGURE_MARKER]))
    finally:
        plt.close(fig)
    return True


def is_findings_figure(path: Path) -> bool:
    """Whether ``path`` is a PNG carrying ``FIGURE_MARKER`` (written by ``findings_figure``)."""
    from PIL import Image

    key, value = FIGURE_MARKER
    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.text.get(key) == value
    except (OSError, SyntaxError, ValueError):  # not an image PIL can read: not ours
        return False


def figure_link(figure: str, confidence: float, min_pairs: int = MIN_PAIRS) -> list[str]:
    """The figure's lines at the top of the summary: the image (by its name relative to the page)
    and a one-line caption."""
    return [f"![Paired % change of each tested finding's expected metrics against the paper's values]({figure})", "",
            (f"*Figure: per tested finding and expected metric, each variant's paired % change per task (colour) with "
             f"its {confidence:.0%} interval, 0 (black) and the paper's reported value or range (shaded); hollow: "
             f"fewer than {min_pairs} pairs.*"), ""]


