"""``report.html``: one self-contained page (plots embedded as base64 PNG, no external assets).

Per task: inference latency and FLOPs against completion time, jerk and energy; success rates
with Wilson intervals; every embodied metric as bars with bootstrap intervals; the joint
velocity and torque traces of one episode; the summary table.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np

from evaluation.summary import SUMMARY_METRICS

_TRADE_OFF_METRICS = ("completion_time_s", "jerk_ms", "energy_j")


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


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def _errors(rows: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and asymmetric error bars (nan where a variant solved nothing)."""
    means = np.array([r[f"{metric}_mean"] for r in rows], dtype=float)
    low = np.array([r[f"{metric}_ci_low"] for r in rows], dtype=float)
    high = np.array([r[f"{metric}_ci_high"] for r in rows], dtype=float)
    return means, np.nan_to_num(np.vstack([means - low, high - means]))


def trade_off_plot(rows: list[dict], x_field: str, x_label: str) -> str | None:
    """Each embodied metric against an inference cost, one labelled point per variant."""
    points = [r for r in rows if _finite(r.get(x_field))]
    if not points:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(_TRADE_OFF_METRICS), figsize=(4.4 * len(_TRADE_OFF_METRICS), 3.4), layout="constrained")
    x = np.array([r[x_field] for r in points], dtype=float)
    for ax, metric in zip(axes, _TRADE_OFF_METRICS):
        means, errors = _errors(points, metric)
        ax.errorbar(x, means, yerr=errors, fmt="o", capsize=3)
        for xi, yi, r in zip(x, means, points):
            if math.isfinite(yi):
                ax.annotate(r["variant"], (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
        positive = x[x > 0]
        if len(positive) == len(x) and positive.max() / positive.min() > 20:
            ax.set_xscale("log")  # an expert's microseconds beside a model's milliseconds
        ax.set_xlabel(x_label)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{x_label} vs embodied cost (means over successful episodes, {points[0]['task']})")
    return _png(fig)


def success_plot(rows: list[dict]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(rows) + 1), 3.2))
    rates = np.array([r["success_rate"] for r in rows])
    errors = np.vstack([rates - [r["success_ci_low"] for r in rows], [r["success_ci_high"] for r in rows] - rates])
    ax.bar([r["variant"] for r in rows], rates, yerr=errors, capsize=3, color="tab:green", alpha=0.8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (Wilson interval)")
    ax.tick_params(axis="x", rotation=30)
    ax.set_title(f"Success ({rows[0]['task']})")
    return _png(fig)


def metric_bars_plot(rows: list[dict]) -> str:
    plt = _pyplot()
    columns = 4
    n_rows = math.ceil(len(SUMMARY_METRICS) / columns)
    fig, axes = plt.subplots(n_rows, columns, figsize=(4.0 * columns, 3.0 * n_rows), squeeze=False)
    names = [r["variant"] for r in rows]
    for ax, metric in zip(axes.flat, SUMMARY_METRICS):
        means, errors = _errors(rows, metric)
        ax.bar(names, np.nan_to_num(means), yerr=errors, capsize=3, alpha=0.8)
        ax.set_title(metric, fontsize=9)
        ax.tick_params(axis="x", rotation=45, labelsize=7)
    for ax in list(axes.flat)[len(SUMMARY_METRICS):]:
        ax.axis("off")
    fig.suptitle(f"Embodied metrics, mean over successful episodes with bootstrap intervals ({rows[0]['task']})")
    fig.tight_layout()
    return _png(fig)


def trace_plot(steps, title: str) -> str:
    """Joint velocity and torque against time for one episode's steps table (pyarrow)."""
    plt = _pyplot()
    time_s = steps.column("time_s").to_numpy()
    qvel = np.array(steps.column("qvel").to_pylist(), dtype=float)
    torque = np.array(steps.column("torque").to_pylist(), dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for ax, values, label in ((axes[0], qvel, "joint velocity (rad/s)"), (axes[1], torque, "joint torque (N m)")):
        for joint in range(values.shape[1]):
            ax.plot(time_s, values[:, joint], lw=1, label=f"j{joint + 1}")
        ax.set_xlabel("time (s)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    return _png(fig)


def _table(rows: list[dict]) -> str:
    fields = ["variant", "latency_model", "success_rate", "success_ci_low", "success_ci_high"]
    fields += [f"{m}_mean" for m in SUMMARY_METRICS] + [f"{m}_pct_vs_base" for m in ("completion_time_s", "energy_j", "jerk_ms")]
    fields += ["paired_n", "profile_params", "profile_flops_per_call", "profile_latency_median_ms", "inference_calls_mean"]

    def cell(value) -> str:
        if isinstance(value, float):
            return "–" if not math.isfinite(value) else f"{value:.4g}"
        return html.escape("–" if value is None else str(value))

    head = "".join(f"<th>{html.escape(f)}</th>" for f in fields)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(f))}</td>" for f in fields) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(data: str | None, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">' if data else ""


def write_report(path: Path, rows: list[dict], info: dict, traces: dict[str, tuple[object, str]]) -> Path:
    """``traces``: task -> (steps table of the chosen episode, its title)."""
    sections = []
    for task in dict.fromkeys(r["task"] for r in rows):
        task_rows = [r for r in rows if r["task"] == task]
        parts = [f"<h2>{html.escape(task)}</h2>", _table(task_rows)]
        parts.append(_img(trade_off_plot(task_rows, "profile_latency_median_ms", "inference latency per call, median (ms)"), "latency"))
        parts.append(_img(trade_off_plot(task_rows, "profile_flops_per_call", "FLOPs per call"), "flops"))
        parts.append(_img(success_plot(task_rows), "success"))
        parts.append(_img(metric_bars_plot(task_rows), "metrics"))
        if task in traces:
            steps, title = traces[task]
            parts.append(_img(trace_plot(steps, title), "traces"))
        else:
            parts.append("<p>No joint traces: steps were not recorded (recording.record_steps).</p>")
        sections.append("\n".join(p for p in parts if p))
    git = info.get("git", {})
    packages = ", ".join(f"{k} {v}" for k, v in info.get("packages", {}).items() if v)
    title = html.escape(info.get("config", {}).get("name") or "vla-envs evaluation")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; }}
table {{ border-collapse: collapse; font-size: 12px; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
th {{ background: #f3f3f3; }}
img {{ display: block; margin: 1em 0; max-width: 100%; }}
</style></head><body>
<h1>{title}</h1>
<p>Commit {html.escape(str(git.get("commit")))}{" (uncommitted changes)" if git.get("dirty") else ""};
{html.escape(packages)}; machine {html.escape(str(info.get("machine", {}).get("platform")))};
latency {html.escape(str(info.get("config", {}).get("latency")))}. Embodied metrics are means over
successful episodes with bootstrap intervals; success rates have Wilson intervals.</p>
{"".join(sections)}
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
