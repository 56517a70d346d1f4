"""Per task and variant: success with a Wilson interval, each embodied metric's mean with a
bootstrap interval over successful episodes, % change against the base, a paired comparison
over the seeds both solved, and the conventional inference metrics beside them.

A variant's "base" here is its reference (``compared_to``): the run's base unless the config's
``compare_to`` names another variant (e.g. a fine-tuned model against the model it came from);
the ``*_pct_vs_base`` and ``*_paired_*`` columns are against it.

``summarize`` is a pure function of the episode rows (``episodes.parquet``) and the inference
profiles, so the summary can be recomputed from the Parquet file alone.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from evaluation.analysis.stats import bootstrap_ci, is_finite, paired_comparison, percent_change, wilson_interval
from evaluation.schema import SEAM_COLUMNS
from policies.base import EPISODE_COUNTERS
from wrappers.metrics import METRIC_KEYS

# n_steps is completion_time_s times the control frequency: one of them is enough
SUMMARY_METRICS: tuple[str, ...] = tuple(k for k in METRIC_KEYS if k != "n_steps")
PROFILE_FIELDS = ("params", "nonzero_params", "weight_memory_mb", "weight_allocated_mb", "flops_per_call", "latency_median_ms", "latency_p90_ms",
                  "peak_memory_mb")
# -- the summary's columns, declared once: summarize() builds exactly these, write_csv writes
# them in this order, and readers name a metric's column with metric_column()
ROW_COLUMNS: tuple[str, ...] = ("task", "variant", "is_base", "compared_to", "latency_model", "episodes", "successes",
                                "success_rate", "success_ci_low", "success_ci_high", "paired_n")
# per metric: mean and bootstrap interval over successes, % change of the mean vs the reference,
# and the paired comparison over the seeds both solved (evaluation.analysis.stats.paired_comparison)
METRIC_STATS: tuple[str, ...] = ("mean", "ci_low", "ci_high", "pct_vs_base", "paired_diff", "paired_ci_low",
                                 "paired_ci_high", "paired_pct", "paired_base_mean", "paired_mde_pct")
EPISODE_COLUMNS: tuple[str, ...] = (
    *(f"{column}_mean" for column in SEAM_COLUMNS),  # means over successful episodes
    "tf_action_distance_mean", "tf_first_action_distance_mean",  # teacher-forced, over the reference's episodes
    "inference_calls_mean", "waiting_steps_mean", "stale_actions_mean",  # means over every episode
    *(f"{counter}_mean" for counter in EPISODE_COUNTERS),
    "latency_per_call_mean_ms", "inference_time_per_episode_ms",
)


def metric_column(metric: str, stat: str) -> str:
    """The summary column of ``stat`` (one of ``METRIC_STATS``) of ``metric`` (``SUMMARY_METRICS``)."""
    if metric not in SUMMARY_METRICS or stat not in METRIC_STATS:
        raise KeyError(f"no summary column for metric {metric!r} and stat {stat!r}: expected a metric in "
                       f"{SUMMARY_METRICS} and a stat in {METRIC_STATS}")
    return f"{metric}_{stat}"


SUMMARY_COLUMNS: tuple[str, ...] = (
    *ROW_COLUMNS,
    *(metric_column(m, stat) for m in SUMMARY_METRICS for stat in METRIC_STATS),
    *EPISODE_COLUMNS,
    *(f"profile_{field}" for field in PROFILE_FIELDS),
)

# what summary.md shows of each metric (the CSV has every one)
_MD_METRICS = ("completion_time_s", "ee_path_m", "joint_path_rad", "jerk_ms", "action_rate", "energy_j")


def summarize(
    episodes: list[dict],
    base_variant: str,
    tasks: list[str],
    variants: list[str],
    profiles: dict[tuple[str, str], dict] | None = None,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    references: dict[str, str] | None = None,
    interval: str = "expanded_bca",
) -> list[dict]:
    """One row per (task, variant) in the given order; see the module docstring. ``references``
    maps a variant to the variant it is compared with (default: ``base_variant``)."""
    profiles = profiles or {}
    references = references or {}
    rows: list[dict] = []
    for task in tasks:
        by_variant = {v: [e for e in episodes if e["task"] == task and e["variant"] == v] for v in variants}
        for variant in variants:
            group = by_variant[variant]
            if not group:
                continue
            reference = references.get(variant, base_variant)
            base_solved = solved_by_seed(by_variant.get(reference, []))
            base_means = {m: _mean([e[m] for e in base_solved.values()]) for m in SUMMARY_METRICS}
            n, successes = len(group), sum(bool(e["success"]) for e in group)
            low, high = wilson_interval(successes, n, confidence)
            solved = solved_by_seed(group)
            paired_seeds = sorted(set(solved) & set(base_solved))
            row = {
                "task": task,
                "variant": variant,
                "is_base": variant == base_variant,
                "compared_to": reference,
                "latency_model": group[0]["latency_model"],
                "episodes": n,
                "successes": successes,
                "success_rate": successes / n,
                "success_ci_low": low,
                "success_ci_high": high,
                "paired_n": len(paired_seeds),
            }
            for metric in SUMMARY_METRICS:
                values = [e[metric] for e in solved.values()]
                mean = _mean(values)
                ci = bootstrap_ci(values, confidence, resamples, seed, interval)
                paired = paired_comparison(
                    {s: e[metric] for s, e in base_solved.items()},
                    {s: e[metric] for s, e in solved.items()},
                    confidence,
                    resamples,
                    seed,
                    interval,
                )
                values = (mean, ci[0], ci[1], percent_change(mean, base_means[metric]), paired.mean_difference,
                          paired.ci_low, paired.ci_high, paired.percent_change, paired.base_mean, paired.mde_percent)
                row.update({metric_column(metric, stat): value for stat, value in zip(METRIC_STATS, values, strict=True)})
            for column in SEAM_COLUMNS:  # means over successful episodes, like the metrics
                row[f"{column}_mean"] = _mean([e.get(column) for e in solved.values()])
            # teacher-forced: this variant queried on its reference's episodes (evaluation.run.teacher_forcing)
            forced = [t for e in by_variant.get(reference, []) if variant != reference
                      for t in (e.get("teacher_forced") or []) if t["variant"] == variant]
            row["tf_action_distance_mean"] = _mean([t["action_distance"] for t in forced])
            row["tf_first_action_distance_mean"] = _mean([t["first_action_distance"] for t in forced])
            row["inference_calls_mean"] = _mean([e["inference_calls"] for e in group])
            row["waiting_steps_mean"] = _mean([e["waiting_steps"] for e in group])
            row["stale_actions_mean"] = _mean([e.get("stale_actions", 0) for e in group])
            for counter in EPISODE_COUNTERS:  # episodes of runs from before a counter existed count 0
                row[f"{counter}_mean"] = _mean([e.get(counter, 0) for e in group])
            # per call (what a model costs each query) and per episode (what an episode waited in total)
            row["latency_per_call_mean_ms"] = _mean([e["latency_mean_ms"] for e in group])
            row["inference_time_per_episode_ms"] = _mean([e["latency_mean_ms"] * e["inference_calls"] for e in group])
            profile = profiles.get((task, variant), {})
            for field in PROFILE_FIELDS:
                row[f"profile_{field}"] = profile.get(field)
            if tuple(row) != SUMMARY_COLUMNS:  # the declaration above and this function disagree
                raise AssertionError(f"summary row columns differ from SUMMARY_COLUMNS: "
                                     f"{sorted(set(row) ^ set(SUMMARY_COLUMNS))} or their order")
            rows.append(row)
    return rows


def solved_by_seed(group: list[dict]) -> dict[int, dict]:
    """seed -> episode row of the successful episodes in ``group``: what paired comparisons pair on."""
    return {int(e["seed"]): e for e in group if e["success"]}


def _mean(values) -> float:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(values)) if values else math.nan


# -- writing -------------------------------------------------------------------------------------
def write_csv(rows: list[dict], path: Path) -> Path:
    if not rows:
        raise ValueError("no summary rows to write")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(SUMMARY_COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return path


def format_number(value, digits: int = 3) -> str:
    """A table cell: '–' for a missing or non-finite value, integers and |x| >= 1000 with thousands
    separators and no decimals, otherwise ``digits`` significant digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (int, np.integer)) or (abs(value) >= 1000):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _pct(value: float) -> str:
    return "" if value is None or not math.isfinite(value) else f" ({value:+.1f}%)"


def markdown(rows: list[dict], confidence: float = 0.95, title: str = "Evaluation summary",
             notes: tuple[str, ...] = ()) -> str:
    """summary.md: success, the main embodied metrics (mean [CI] (% vs base)), paired
    comparisons and inference metrics, one table each per task; ``notes`` are paragraphs
    under the title."""
    level = f"{confidence:.0%}"
    lines = [f"# {title}", ""]
    for note in notes:
        lines += [note, ""]
    lines += [
        f"Success rate with a Wilson {level} interval; embodied metrics: mean over successful episodes "
        f"[bootstrap {level} interval] (% change of the mean against the base, or the variant named after "
        "'vs'). Paired: mean "
        "difference (variant - base) over the seeds both solved [bootstrap interval] (% change of "
        f"the paired means); MDE: the smallest % change this number of pairs could detect ({level} "
        "confidence, 80% power). Every metric and interval is in summary.csv.",
        "",
    ]
    for task in dict.fromkeys(r["task"] for r in rows):
        task_rows = [r for r in rows if r["task"] == task]
        base = next((r["variant"] for r in task_rows if r["is_base"]), None)
        lines += [f"## {task}", ""]
        header = ["variant", "latency", "success", *_MD_METRICS]
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for r in task_rows:
            cells = [
                r["variant"] + (" (base)" if r["is_base"] else "" if r["compared_to"] == base else f" (vs {r['compared_to']})"),
                r["latency_model"],
                f"{r['successes']}/{r['episodes']} = {r['success_rate']:.0%} "
                f"[{format_number(100 * r['success_ci_low'], 3)}, {format_number(100 * r['success_ci_high'], 3)}]%",
            ]
            for m in _MD_METRICS:
                cells.append(
                    f"{format_number(r[f'{m}_mean'])} [{format_number(r[f'{m}_ci_low'])}, {format_number(r[f'{m}_ci_high'])}]"
                    + ("" if r["is_base"] else _pct(r[f"{m}_pct_vs_base"]))
                )
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"Paired against the base, or the variant named after 'vs' ({task}); per-step error: the "
                  "variant queried on its reference's episodes (teacher-forced), mean L2 distance of its plan from "
                  "the reference's, in action units:", ""]
        header = ["variant", "pairs", "per-step error", *_MD_METRICS]
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for r in task_rows:
            if r["is_base"]:
                continue
            cells = [r["variant"] + ("" if r["compared_to"] == base else f" vs {r['compared_to']}"), str(r["paired_n"]),
                     format_number(r["tf_action_distance_mean"])]
            for m in _MD_METRICS:
                mde = r[f"{m}_paired_mde_pct"]
                cells.append(
                    f"{format_number(r[f'{m}_paired_diff'])} [{format_number(r[f'{m}_paired_ci_low'])}, "
                    f"{format_number(r[f'{m}_paired_ci_high'])}]{_pct(r[f'{m}_paired_pct'])}"
                    + (f" MDE ±{mde:.1f}%" if mde is not None and math.isfinite(mde) else "")
                )
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"Chunk seams ({task}): jerk and action change on the steps where a new chunk starts "
                  "vs within chunks (the two parts sum to the metric; means over successful episodes).", ""]
        header = ["variant", "jerk at seams", "jerk within chunks", "share at seams", "action change at seams",
                  "action change within chunks"]
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for r in task_rows:
            seam, within = r["jerk_ms_seam_mean"], r["jerk_ms_within_mean"]
            share = seam / (seam + within) if is_finite(seam) and is_finite(within) and seam + within > 0 else math.nan
            cells = [r["variant"], format_number(seam), format_number(within), "–" if not math.isfinite(share) else f"{share:.0%}",
                     format_number(r["action_rate_seam_mean"]), format_number(r["action_rate_within_mean"])]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"Inference ({task}): profile() on the first seed's observation; calls and "
                  "latency measured in the episodes.", ""]
        header = ["variant", "params", "non-zero", "weights (MB)", "FLOPs/call", "latency per call, median (ms)",
                  "p90 (ms)", "peak memory per call (MB)", "calls/episode", "inference time per episode (ms)"]
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for r in task_rows:
            cells = [r["variant"]] + [format_number(r[f"profile_{f}"]) for f in PROFILE_FIELDS]
            cells += [format_number(r["inference_calls_mean"]), format_number(r["inference_time_per_episode_ms"])]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
