"""``report.html``: one self-contained page (plots embedded as base64 PNG, no external assets)
that answers the suite's question first: which variant moves worse than its reference, and by
how much.

It opens with **the answer**: per task, one sentence naming each variant's significant paired
changes (the rule ``vla-envs findings`` reads intervals by, ``evaluation.analysis.findings.verdict``
with no expected direction: an interval that excludes 0 over at least ``MIN_PAIRS`` pairs),
the variants whose success differs (Wilson intervals apart), and those with too few pairs.

Per task, in this order:

1. **Paired change** (the headline): for every variant, the paired % change of each main
   metric against its reference with its bootstrap interval, over the seeds both solved; the
   grey band is the minimum detectable effect at the run's n, so "no change" reads honestly.
   Success rates with Wilson intervals beside it.
2. **Success against cost**: success rate against latency per call, FLOPs per call and weight
   memory, the Pareto front (no other variant both cheaper and more successful) marked.
3. **Per-episode distributions** of the main metrics (successful episodes).
4. **One episode of the base and one variant on the same seed** (the variant with the largest
   significant paired change, ``most_changed_variant``, unless ``report.trace_variant`` names
   one): joint velocity, joint torque and commanded actions, with the steps where a new chunk
   was queried marked.
5. The paired and inference tables, then every summary column.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.analysis.findings import MIN_PAIRS, Verdict, metric_words, verdict
from evaluation.analysis.stats import is_finite
from evaluation.analysis.summary import SUMMARY_METRICS, metric_column
from evaluation.schema import GitRecord, RunRecord
from policies.base import EPISODE_COUNTERS
from wrappers.metrics import METRIC_LABELS

# the metrics the figures show (summary.csv has every one)
REPORT_METRICS = ("completion_time_s", "jerk_ms", "energy_j", "action_rate", "ee_path_m", "joint_rotation_rad")
# success against these costs: (summary column, axis label)
COSTS = (
    ("profile_latency_median_ms", "latency per call, median (ms)"),
    ("profile_flops_per_call", "FLOPs per call (MFLOP)"),
    ("profile_weight_memory_mb", "weight memory as stored (MB)"),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless, and no GUI event loop in worker-free report code
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _name(row: dict, base: str) -> str:
    return row["variant"] if row["compared_to"] in (base, row["variant"]) else f"{row['variant']} (vs {row['compared_to']})"


# -- the answer --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    metric: str
    percent: float  # paired % change of the means
    low: float  # its interval, % of the reference's paired mean
    high: float


def paired_percent(row: dict, metric: str) -> Change | None:
    """A summary row's paired change of ``metric`` as % of the reference's paired mean, or None
    where there is none (no pairs, a zero reference mean)."""
    pct, reference = row.get(metric_column(metric, "paired_pct")), row.get(metric_column(metric, "paired_base_mean"))
    if not (is_finite(pct) and is_finite(reference) and reference != 0):
        return None
    low, high = (100 * row[metric_column(metric, f"paired_ci_{side}")] / abs(reference) for side in ("low", "high"))
    return Change(metric, pct, low, high)


def significant_changes(row: dict, metrics: tuple[str, ...] = REPORT_METRICS) -> list[Change]:
    """The metrics whose paired interval excludes 0 over at least ``MIN_PAIRS`` pairs (the
    findings' verdict with no expected direction), largest change first."""
    changes = []
    for metric in metrics:
        change = paired_percent(row, metric)
        if change is not None and verdict("none", change.low, change.high, row["paired_n"]) is Verdict.CHANGED:
            changes.append(change)
    return sorted(changes, key=lambda c: -abs(c.percent))


def most_changed_variant(rows: list[dict]) -> str | None:
    """The variant with the largest significant paired change of a report metric (None: no
    variant changed significantly)."""
    best = max(((abs(c.percent), r["variant"]) for r in rows if not r["is_base"] for c in significant_changes(r)),
               default=None)
    return None if best is None else best[1]


def _success_differs(row: dict, reference: dict) -> bool:
    return row["success_ci_high"] < reference["success_ci_low"] or row["success_ci_low"] > reference["success_ci_high"]


def _signed(percent: float) -> str:
    """A signed % with the digits that keep a small significant change off "+0": one decimal
    under 10 %, none above."""
    return f"{percent:+.1f}" if abs(percent) < 10 else f"{percent:+.0f}"


def answer_sentence(rows: list[dict]) -> str:
    """One task's answer in words (plain text): each variant's significant changes with their
    intervals, success that differs, too few pairs, and the variants that changed nothing."""
    by_name = {r["variant"]: r for r in rows}
    base = next((r for r in rows if r["is_base"]), None)
    clauses, unchanged = [], []
    for row in rows:
        if row["is_base"]:
            continue
        reference = by_name.get(row["compared_to"], base)
        parts = []
        if reference is not None and _success_differs(row, reference):
            parts.append(f"solves {row['successes']}/{row['episodes']} against {reference['variant']}'s "
                         f"{reference['successes']}/{reference['episodes']}")
        if row["paired_n"] < MIN_PAIRS:
            parts.append(f"too few paired successes to compare motion ({row['paired_n']} < {MIN_PAIRS})")
        else:
            parts += [f"{metric_words(c.metric)} {_signed(c.percent)} % [{_signed(c.low)}, {_signed(c.high)}]"
                      for c in significant_changes(row)]
        name = _name(row, base["variant"] if base else row["compared_to"])
        if parts:
            clauses.append(f"{name}: {', '.join(parts)}")
        else:
            unchanged.append(name)
    if unchanged:
        clauses.append(f"{', '.join(unchanged)}: no significant change in "
                       f"{', '.join(metric_words(m) for m in REPORT_METRICS)}")
    if not clauses:
        return f"{rows[0]['task']}: no variants."
    reference_text = f" against {base['variant']} ({base['successes']}/{base['episodes']} solved)" if base else ""
    return f"{rows[0]['task']}{reference_text}: " + "; ".join(clauses) + "."


# -- 1. paired change ------------------------------------------------------------------------
def forest_plot(rows: list[dict]) -> str | None:
    """Paired % change (bootstrap interval) per metric and variant, the MDE band behind it;
    success rates (Wilson) in the first panel."""
    base = next((r["variant"] for r in rows if r["is_base"]), None)
    others = [r for r in rows if not r["is_base"]]
    if not others:
        return None
    plt = _pyplot()
    columns = len(REPORT_METRICS) + 1
    fig, axes = plt.subplots(1, columns, figsize=(2.25 * columns, 0.45 * len(rows) + 1.6), sharey=False, layout="constrained")
    y_all = np.arange(len(rows))[::-1]
    ax = axes[0]
    rates = np.array([r["success_rate"] for r in rows]) * 100
    low = rates - np.array([r["success_ci_low"] for r in rows]) * 100
    high = np.array([r["success_ci_high"] for r in rows]) * 100 - rates
    ax.errorbar(rates, y_all, xerr=[low, high], fmt="o", color="tab:green", capsize=3)
    ax.set_yticks(y_all, [r["variant"] + (" (base)" if r["is_base"] else "") for r in rows], fontsize=8)
    ax.set_xlim(-2, 102)
    ax.set_xlabel("success (%), Wilson interval", fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    y = np.arange(len(others))[::-1]
    for ax, metric in zip(axes[1:], REPORT_METRICS):
        for yi, row in zip(y, others):
            mde = row[metric_column(metric, "paired_mde_pct")]
            if is_finite(mde):
                ax.fill_betweenx([yi - 0.3, yi + 0.3], -mde, mde, color="0.85", linewidth=0)
            change = paired_percent(row, metric)
            if change is not None:
                # the answer's rule: grey unless read as a change (fewer pairs are not read);
                # every metric here is a cost, so higher is worse
                read = verdict("none", change.low, change.high, row["paired_n"]) is Verdict.CHANGED
                color = "0.3" if not read else "tab:red" if change.low > 0 else "tab:blue"
                ax.errorbar([change.percent], [yi], xerr=[[change.percent - change.low], [change.high - change.percent]],
                            fmt="o", color=color, capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, [_name(r, base) for r in others] if ax is axes[1] else [""] * len(others), fontsize=8)
        ax.set_ylim(-0.7, len(others) - 0.3)
        ax.set_title(METRIC_LABELS[metric], fontsize=8)
        ax.set_xlabel("paired change (%)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(alpha=0.3, axis="x")
    axes[1].tick_params(axis="y", labelleft=True)
    fig.suptitle(f"{rows[0]['task']}: change against the reference over the seeds both solved "
                 "(red: worse, blue: better, grey band: smallest change this run could detect)", fontsize=10)
    return _png(fig)


# -- 2. success against cost --------------------------------------------------------------
def pareto_front(costs: np.ndarray, success: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both (cost lower or equal, success higher
    or equal, one strictly), sorted by cost."""
    front = []
    for i in range(len(costs)):
        dominated = any(
            costs[j] <= costs[i] and success[j] >= success[i] and (costs[j] < costs[i] or success[j] > success[i])
            for j in range(len(costs))
        )
        if not dominated:
            front.append(i)
    return np.array(sorted(front, key=lambda i: costs[i]), dtype=int)


def pareto_plot(rows: list[dict]) -> str | None:
    plt = _pyplot()
    panels = [(field, label) for field, label in COSTS if sum(is_finite(r.get(field)) for r in rows) >= 2]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.4), squeeze=False, layout="constrained")
    for ax, (field, label) in zip(axes[0], panels):
        points = [r for r in rows if is_finite(r.get(field))]
        cost = np.array([r[field] for r in points], dtype=float)
        success = np.array([r["success_rate"] for r in points]) * 100
        front = pareto_front(cost, success)
        if field == "profile_flops_per_call":
            cost = cost / 1e6  # MFLOP: matplotlib's "1e8" offset label is easy to miss
        if cost.min() > 0 and cost.max() / cost.min() > 20:
            ax.set_xscale("log")  # an expert's microseconds beside a model's milliseconds
        ax.scatter(cost, success, color="0.5", zorder=2)
        ax.step(cost[front], success[front], where="post", color="tab:orange", zorder=1, label="Pareto front")
        ax.scatter(cost[front], success[front], color="tab:orange", zorder=3)
        _label_points(ax, cost, success, [r["variant"] for r in points])
        ax.set_xlabel(label)
        ax.set_ylabel("success (%)")
        ax.set_ylim(-3, 105)
        ax.grid(alpha=0.3)
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=7, loc="outside lower center")
    fig.suptitle(f"{rows[0]['task']}: success against inference cost", fontsize=10)
    return _png(fig)


def label_groups(x: np.ndarray, y: np.ndarray, names: list[str], x_tolerance: float, y_tolerance: float) -> list[tuple[int, list[str]]]:
    """Points closer than the tolerances on both axes share one label: (first point's index,
    the names there), in the points' order."""
    groups: list[tuple[int, list[str]]] = []
    for i, name in enumerate(names):
        for first, members in groups:
            if abs(x[first] - x[i]) <= x_tolerance and abs(y[first] - y[i]) <= y_tolerance:
                members.append(name)
                break
        else:
            groups.append((i, [name]))
    return groups


def _label_points(ax, x: np.ndarray, y: np.ndarray, names: list[str]) -> None:
    """One label per group of (near-)coincident points, joined by commas, each label moved down
    the axes until it no longer overlaps one already placed (in display pixels)."""
    fig = ax.figure
    fig.canvas.draw()  # fixes the axes' transform and limits
    to_pixels = ax.transData.transform
    pixels = to_pixels(np.column_stack([x, y]))
    placed: list = []
    renderer = fig.canvas.get_renderer()
    for first, members in label_groups(pixels[:, 0], pixels[:, 1], names, 6.0, 6.0):
        offset = 3
        for _ in range(30):
            label = ax.annotate(", ".join(members), (x[first], y[first]), textcoords="offset points",
                                xytext=(4, offset), fontsize=7)
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            label.remove()
            offset -= 9
        else:
            placed.append(box)
            ax.add_artist(label)


# -- 3. distributions ---------------------------------------------------------------------
def distribution_plot(rows: list[dict], episodes: list[dict]) -> str | None:
    task = rows[0]["task"]
    variants = [r["variant"] for r in rows]
    solved = [e for e in episodes if e["task"] == task and e["success"]]
    if not solved:
        return None
    plt = _pyplot()
    columns = 3
    n_rows = math.ceil(len(REPORT_METRICS) / columns)
    fig, axes = plt.subplots(n_rows, columns, figsize=(4.4 * columns, 2.9 * n_rows), squeeze=False, layout="constrained")
    rng = np.random.default_rng(0)  # jitter only: the same picture every time
    for ax, metric in zip(axes.flat, REPORT_METRICS):
        for index, variant in enumerate(variants):
            values = np.array([e[metric] for e in solved if e["variant"] == variant], dtype=float)
            values = values[np.isfinite(values)]
            if len(values):
                ax.scatter(index + rng.uniform(-0.18, 0.18, len(values)), values, s=8, alpha=0.5)
                ax.hlines(values.mean(), index - 0.3, index + 0.3, color="black", linewidth=1.5)
        ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(METRIC_LABELS[metric], fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{task}: every successful episode (black: mean)", fontsize=10)
    return _png(fig)


# -- 4. one episode, base and variant -------------------------------------------------------
def trace_plot(base_steps, variant_steps, base_title: str, variant_title: str) -> str:
    """Joint velocity, torque and commanded actions of two episodes (pyarrow steps tables) side
    by side; dotted lines where a new chunk starts (``chunk_start``; runs before it: where the
    policy was queried)."""
    plt = _pyplot()
    fig, axes = plt.subplots(3, 2, figsize=(13, 7.5), sharex="col", sharey="row", layout="constrained")
    for column, (steps, title) in enumerate(((base_steps, base_title), (variant_steps, variant_title))):
        time_s = steps.column("time_s").to_numpy()
        marker = "chunk_start" if "chunk_start" in steps.column_names else "queried"
        queried = np.asarray(steps.column(marker).to_pylist(), dtype=bool)
        for row, (field, label) in enumerate((("qvel", "joint velocity (rad/s)"), ("torque", "joint torque (N m)"),
                                              ("action", "commanded action (action units)"))):
            ax = axes[row][column]
            values = _matrix(steps.column(field).to_pylist())
            for j in range(values.shape[1]):
                ax.plot(time_s, values[:, j], lw=1, label=f"{'a' if field == 'action' else 'j'}{j + 1}")
            for t in time_s[queried]:
                ax.axvline(t, color="0.6", linestyle=":", linewidth=0.7)
            ax.set_ylabel(label, fontsize=8)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(title, fontsize=9)
            if row == 2:
                ax.set_xlabel("time (s)")
        axes[2][column].legend(fontsize=6, ncol=4)
    fig.suptitle("one seed, base and variant (dotted: a new chunk starts)", fontsize=10)
    return _png(fig)


def _matrix(cells: list) -> np.ndarray:
    """A list column as a 2-D float array; a missing row (the reset row has no action) is NaN."""
    width = max((len(c) for c in cells if c is not None), default=0)
    return np.array([c if c is not None else [math.nan] * width for c in cells], dtype=float)


# -- 5. tables ------------------------------------------------------------------------------
def _cell(value) -> str:
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return html.escape("–" if value is None else str(value))


def _html_table(header: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def paired_table(rows: list[dict]) -> str:
    base = next((r["variant"] for r in rows if r["is_base"]), None)
    header = ["variant", "success", "pairs", "per-step error, teacher-forced: plan / next action (action units)"]
    header += [METRIC_LABELS[m] for m in REPORT_METRICS]
    body = []
    for r in rows:
        success = (f"{r['successes']}/{r['episodes']}<br><small>[{_percent(r.get('success_ci_low'))}, "
                   f"{_percent(r.get('success_ci_high'))}] %</small>")
        if r["is_base"]:  # the reference: its own success and means, which the rows below change
            means = [f"{_cell(r.get(metric_column(m, 'mean')))}<br><small>mean</small>" for m in REPORT_METRICS]
            body.append([f"{html.escape(r['variant'])} (base)", success, "–", "–", *means])
            continue
        forced = f"{_cell(r.get('tf_action_distance_mean'))} / {_cell(r.get('tf_first_action_distance_mean'))}"
        cells = [html.escape(_name(r, base)), success, str(r["paired_n"]), forced]
        few = r["paired_n"] < MIN_PAIRS
        if few:
            cells[2] += f"<br><small>fewer than {MIN_PAIRS}: intervals not read</small>"
        for m in REPORT_METRICS:
            change, mde = paired_percent(r, m), r[metric_column(m, "paired_mde_pct")]
            if change is None:
                cells.append("–")
                continue
            # every pair equal: an MDE of 0 would claim a precision the run does not have
            note = "every pair equal" if change.low == change.high else f"MDE ±{_cell(mde)}%"
            text = f"{change.percent:+.1f}% [{change.low:+.1f}, {change.high:+.1f}]<br><small>{note}</small>"
            cells.append(f'<span style="color:#999">{text}</span>' if few else text)
        body.append(cells)
    return _html_table(header, body)


def _percent(fraction) -> str:
    return f"{100 * fraction:.1f}" if is_finite(fraction) else "–"


def inference_table(rows: list[dict]) -> str:
    header = ["variant", "params", "weight memory as stored (MB)", "weight memory allocated (MB)", "FLOPs per call", "latency per call, median (ms)",
              "peak memory per call (MB)", "calls per episode", "inference time per episode (ms)", "latency model",
              "waiting steps per episode", "stale actions per episode",
              *(f"{counter.replace('_', ' ')} per episode" for counter in EPISODE_COUNTERS)]
    fields = ["profile_params", "profile_weight_memory_mb", "profile_weight_allocated_mb", "profile_flops_per_call", "profile_latency_median_ms",
              "profile_peak_memory_mb", "inference_calls_mean", "inference_time_per_episode_ms", "latency_model",
              "waiting_steps_mean", "stale_actions_mean", *(f"{counter}_mean" for counter in EPISODE_COUNTERS)]
    return _html_table(header, [[html.escape(r["variant"])] + [_cell(r.get(f)) for f in fields] for r in rows])


def full_table(rows: list[dict]) -> str:
    fields = ["variant", "compared_to", "latency_model", "success_rate", "success_ci_low", "success_ci_high"]
    fields += [metric_column(m, "mean") for m in SUMMARY_METRICS]
    return _html_table(fields, [[_cell(r.get(f)) for f in fields] for r in rows])


def _img(data: str | None, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">' if data else ""


def write_report(path: Path, rows: list[dict], record: RunRecord, episodes: list[dict] | None = None,
                 traces: dict[str, tuple] | None = None) -> Path:
    """``traces``: task -> (base steps, variant steps, base title, variant title)."""
    episodes = episodes or []
    traces = traces or {}
    sections = []
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    for task in tasks:
        task_rows = [r for r in rows if r["task"] == task]
        parts = [f"<h2>{html.escape(task)}</h2>",
                 # the page opens with every task's answer; a long page repeats each at its section
                 f'<p class="answer">{html.escape(answer_sentence(task_rows))}</p>' if len(tasks) > 1 else "",
                 "<h3>How each variant moves compared with its reference</h3>", _img(forest_plot(task_rows), "paired change"),
                 paired_table(task_rows),
                 "<h3>Success against inference cost</h3>", _img(pareto_plot(task_rows), "success against cost"),
                 inference_table(task_rows),
                 "<h3>Every episode</h3>", _img(distribution_plot(task_rows, episodes), "distributions")]
        if task in traces:
            parts += ["<h3>One seed, base and variant</h3>", _img(trace_plot(*traces[task]), "traces")]
        else:
            parts.append("<p>No joint traces: steps were not recorded (recording.record_steps).</p>")
        parts += ["<details><summary>Every summary column (means over successful episodes)</summary>",
                  full_table(task_rows), "</details>"]
        sections.append("\n".join(p for p in parts if p))
    answers = "".join(f"<p>{html.escape(answer_sentence([r for r in rows if r['task'] == task]))}</p>"
                      for task in dict.fromkeys(r["task"] for r in rows))
    git = record.git or GitRecord()
    packages = ", ".join(f"{k} {v}" for k, v in (record.packages or {}).items() if v)
    title = html.escape(record.config.get("name") or "vla-envs evaluation")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1360px; padding: 0 1em; }}
table {{ border-collapse: collapse; font-size: 12px; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; vertical-align: top; }}
th {{ background: #f3f3f3; }}
small {{ color: #777; }}
img {{ display: block; margin: 1em 0; max-width: 100%; }}
details {{ overflow-x: auto; }}
.answers {{ background: #f6f8fa; border-left: 4px solid #0969da; padding: 0.2em 1em; font-size: 15px; }}
.answers h2 {{ font-size: 17px; margin: 0.6em 0 0.2em; }}
.answer {{ font-weight: 600; }}
</style></head><body>
<h1>{title}</h1>
<section class="answers"><h2>The answer</h2>{answers}</section>
<p>Changes are paired: each variant against its reference (the base, or the variant it names
with <code>compare_to</code>) over the seeds both solved, with bootstrap intervals; success
rates have Wilson intervals; MDE is the smallest change this run's number of pairs could detect
(95 % confidence, 80 % power); with fewer than {MIN_PAIRS} pairs an interval is not read. Commit {html.escape(str(git.commit))}{" (uncommitted changes)" if git.dirty else ""};
{html.escape(packages)}; machine {html.escape(str(record.machine.platform if record.machine is not None else None))}.</p>
{"".join(sections)}
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
