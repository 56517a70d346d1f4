"""``docs/findings.md``: the Markdown of ``vla-envs findings RUN`` (``evaluation.analysis.findings`` has
the declared findings, the numbers and the verdict rule; this module lays them out).

Sections: a header (what run, how long, on what machine, the command that regenerates the page),
the method and the verdict rule, one summary row per declared finding, a section per finding
(per task and variant: success of both with Wilson intervals, the paired % change of each of the
paper's metrics with its interval, the verdicts, the trend across levels), then what the paper
could not measure (energy, effort, the actuator ledger, chunk seams, per-step error against
closed-loop change).

Beside the page, ``<stem>.png`` (``evaluation.pages.findings_figure``), linked near the top of the summary.
Both are marked as this command's (``PAGE_MARKER``, ``FIGURE_MARKER``): a file at either path that
`vla-envs findings` did not write is never replaced or deleted.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from pathlib import Path

from evaluation.analysis.findings import (
    ACTION_RATE,
    DIRECTION_WORDS,
    FINDINGS,
    JERK,
    MIN_PAIRS,
    PAPER,
    PAPER_METRICS,
    SPEEDUP_PAPER,
    SUITE_METRICS,
    TEACHER_FORCED_FIELD,
    FindingResult,
    PairedChange,
    SuccessRate,
    TaskResult,
    Verdict,
    conclusions,
    episodes_by_cell,
    evaluate,
    is_finite,
    metric_unit,
    metric_words,
    paired_change,
    plural,
    pooled_statements,
    recorded_columns,
    teacher_forced_error,
    trend_statements,
)
from evaluation.analysis.summary import format_number
from evaluation.pages.findings_figure import FIGURE_MARKER, figure_link, findings_figure, is_findings_figure
from evaluation.run.config import EvalConfig
from evaluation.run.record import RunFolderError, read_run
from evaluation.schema import INTERVAL_METHODS, SEAM_COLUMNS, GitRecord, RunRecord
from vla_envs.errors import VlaEnvsError
from vla_envs.files import atomic_path
from wrappers.metrics import METRIC_LABELS

DEFAULT_OUTPUT = Path("docs/findings.md")


# The page's first line: `vla-envs findings` replaces only a page that starts with it, or (pages
# written before it had the marker, docs/findings.md among them) with PAGE_HEADING.
PAGE_MARKER = "<!-- written by `vla-envs findings`: edits are lost when the page is regenerated -->"
PAGE_HEADING = "# The paper's findings on this suite: "


class FindingsOutputError(VlaEnvsError, ValueError):
    """An ``--output`` the page cannot be written to (the message names it and what was expected)."""

_VERDICT_RULE = (
    f"Verdict per variant, task and expected metric, from the paired interval: fewer than {MIN_PAIRS} seeds both "
    f"solved: **{Verdict.TOO_FEW.value}**; interval includes 0 (touching counts): **{Verdict.NO_CHANGE.value}**; "
    f"excludes 0 on the paper's side: **{Verdict.REPRODUCED.value}**; on the other side: **{Verdict.OPPOSITE.value}**; "
    f"where the paper saw no change, an interval that excludes 0 is a **{Verdict.CHANGED.value}** "
    "(`evaluation.analysis.findings.verdict`)."
)
_SUITE_INTRO = (
    "The same variants, paired the same way; cells are the mean paired difference (variant - reference) in the "
    "column's units [interval] (% of the reference's paired mean). Energy is the true mechanical energy, the sum "
    "over physics substeps of sum_j |tau_j qd_j| dt, and effort the sum of tau_j^2 dt (the paper has kinematic "
    "proxies only); the actuator ledger is the positive and negative work and how close the joints came to their "
    "torque and speed limits (the peak fraction; the share of substeps at >= 98 % of the torque limit). Chunk seams "
    "split jerk and action change into the steps where a new chunk's first action ran and the rest. Drift: the "
    "per-step error is the variant queried on its reference's observations (teacher forcing, "
    "`evaluation.run.teacher_forcing`); a large closed-loop change with a small per-step error is drift, a per-step error "
    "that explains the change is the compression itself."
)


# -- cells --------------------------------------------------------------------------------------
def _num(value, digits: int = 3) -> str:
    """The summary's cells (``summary.format_number``), and scientific outside [1e-3, 1e5): the
    ledger's fractions and their differences are often 1e-4."""
    if is_finite(value) and value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.{digits - 1}e}"
    return format_number(value if is_finite(value) else None, digits)


def _signed(value, digits: int = 3) -> str:
    text = _num(value, digits)
    return text if text == "–" or text.startswith("-") else f"+{text}"


def _pct_cell(change: PairedChange) -> str:
    """'+12.3% [+4.1, +20.5]' (% of the reference's paired mean), or the difference and its
    interval in the column's units when the reference's mean is 0."""
    if change.n_pairs == 0:
        return "–"
    if is_finite(change.percent):
        low, high = change.percent_interval
        return f"{change.percent:+.1f}% [{low:+.1f}, {high:+.1f}]"
    return f"{_signed(change.difference)} [{_signed(change.ci_low)}, {_signed(change.ci_high)}] {metric_unit(change.column)}"


def _diff_cell(change: PairedChange) -> str:
    """'+0.41 [+0.12, +0.70] (+12%)': the paired difference in the column's units, its interval,
    and the % change when the reference's mean is not 0."""
    if change.n_pairs == 0:
        return "–"
    pct = f" ({change.percent:+.0f}%)" if is_finite(change.percent) else ""
    return f"{_signed(change.difference)} [{_signed(change.ci_low)}, {_signed(change.ci_high)}]{pct}"


def _success_cell(rate: SuccessRate) -> str:
    if not rate.episodes:
        return "–"
    return f"{rate.successes}/{rate.episodes} = {rate.rate:.0%} [{100 * rate.ci_low:.0f}, {100 * rate.ci_high:.0f}]%"


def _verdict_cell(result: TaskResult) -> str:
    """'jerk: reproduced; completion time: no significant change (MDE ±4.1%)': a 'no change' is
    only as strong as the smallest change the pairs could have detected."""
    def one(metric: str, found: Verdict) -> str:
        mde = result.changes[metric].mde_percent
        detail = f" (MDE ±{mde:.1f}%)" if found is Verdict.NO_CHANGE and is_finite(mde) else ""
        return f"{metric_words(metric)}: {found.value}{detail}"

    return "; ".join(one(m, v) for m, v in result.verdicts.items())


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [line(header), "|" + " --- |" * len(header), *(line(row) for row in rows), ""]


# -- the header ---------------------------------------------------------------------------------
def _duration(seconds) -> str:
    if not is_finite(seconds):
        return "not recorded"
    if seconds >= 3600:
        return f"{seconds:,.0f} s ({seconds / 3600:.2f} h)"
    if seconds >= 120:
        return f"{seconds:,.0f} s ({seconds / 60:.1f} min)"
    return f"{seconds:.1f} s"


def _seeds(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(str(s) for s in seeds)


def _timestamp(text) -> datetime | None:
    """run.json's ``started`` / ``finished`` (runner: ``%Y-%m-%dT%H:%M:%S%z``), None if absent."""
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z") if text else None
    except ValueError:
        return None


def _latency_text(latency) -> str:
    return latency if isinstance(latency, str) else ", ".join(f"{k} {v}" for k, v in latency.model_dump().items())


def _timing_rows(record: RunRecord, episodes: list[dict]) -> list[tuple[str, str]]:
    """When and how long: run.json's start and episode wall time are the last call's, its ``calls``
    list has every call (runs from before it was recorded lack it); the episodes' own ``wall_s``
    cover every part of a run filled over several ``--resume`` calls."""
    started, finished = record.started, record.finished
    start, end = _timestamp(started), _timestamp(finished)
    elapsed = (end - start).total_seconds() if start and end else math.nan
    workers, backend = record.workers, record.backend
    last_wall = record.episodes_wall_s
    summed = sum(float(row["wall_s"]) for row in episodes if is_finite(row.get("wall_s")))
    span = f"; {_duration(elapsed)} from start to finish, profiling and report included" if is_finite(elapsed) else ""
    rows = [
        ("started, finished", f"{started or 'not recorded'}, {finished or 'not recorded'}{span}"),
        ("episodes' wall time", (f"{_duration(last_wall)} with {plural(int(workers), 'worker')} ({backend})"
                                 if is_finite(last_wall) and is_finite(workers) else "not recorded")),
        ("episode time, summed", (f"{_duration(summed)} over {len(episodes)} episodes (each episode's own wall_s, "
                                  "every --resume part included)")),
    ]
    calls = record.calls
    if len(calls) > 1:
        parts = "; ".join(f"{c.started}: {c.episodes_run} episodes in {_duration(c.episodes_wall_s)} "
                          f"on {c.hostname} ({plural(c.workers or 1, 'worker')}, {c.backend})"
                          for c in calls)
        total = sum(c.episodes_wall_s for c in calls)
        rows.append(("calls", f"{len(calls)} `vla-envs eval` calls, {_duration(total)} of episodes in all: {parts}"))
    elif is_finite(last_wall) and is_finite(workers) and summed > 1.05 * last_wall * max(int(workers), 1):
        rows.append(("note", (f"the episodes' own times add up to more than the last `vla-envs eval` call could hold "
                              f"({_duration(summed)} > {workers} × {_duration(last_wall)}): part of the run ran in "
                              "earlier calls (--resume), and run.json keeps only the last call's start and wall time")))
    return rows


def run_facts(run_dir: Path, config: EvalConfig, record: RunRecord, episodes: list[dict]) -> list[tuple[str, str]]:
    """(label, value) rows of the header: what the run was, what it took and where, from run.json
    and the episode rows."""
    counts = sorted({len(rows) for rows in episodes_by_cell(episodes).values()})
    per_cell = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]} (uneven)"
    variants = config.variant_names
    listed = ", ".join(v + ("" if config.reference_of(v) == variants[0] else f" (vs {config.reference_of(v)})")
                       for v in variants[1:])
    total = str(len(episodes))
    if len(counts) == 1:
        total += f" ({plural(len(config.tasks), 'task')} × {plural(len(variants), 'variant')} × {per_cell})"
    git = record.git or GitRecord()
    commit = (git.commit or "not recorded") + (" (with uncommitted changes)" if git.dirty else "")
    images = f", {config.env.image_size} px images" if "rgb" in config.env.obs_mode else ""
    execution = config.execution
    rows = [
        ("run", f"{config.name or run_dir.name} (folder `{run_dir}`)"),
        ("config", f"`{record.config_path}`" if record.config_path else "not recorded"),
        ("tasks", f"{len(config.tasks)}: {', '.join(config.tasks)}"),
        ("variants", f"{len(variants)}: {variants[0]} (base)" + (f", {listed}" if listed else "")),
        ("episodes per task and variant", per_cell),
        ("total episodes", total),
        ("seeds", _seeds(config.seed_list)),
        ("observations", f"{config.env.obs_mode}{images}"),
        ("execution", (f"{execution.schedule}, {execution.execute_steps or 'all'} actions per chunk; latency "
                       f"{_latency_text(config.latency)} (variants may override)")),
        ("statistics", (f"{config.stats.confidence:.0%} intervals ({config.stats.interval} bootstrap), "
                        f"{config.stats.bootstrap_resamples} bootstrap "
                        f"resamples, seed {config.stats.bootstrap_seed}; verdicts need {MIN_PAIRS} paired successes")),
        ("git commit", commit),
        ("status", record.status or "not recorded"),
        *_timing_rows(record, episodes),
    ]
    machine = record.machine
    if machine is not None:
        rows.append(("machine", (f"{machine.hostname}: {machine.platform}, {machine.processor}, "
                                 f"{machine.cpu_count} CPUs, Python {machine.python}")))
    if record.packages:
        rows.append(("packages", ", ".join(f"{k} {v}" for k, v in record.packages.items() if v)))
    renderer = record.renderer
    if renderer is not None and renderer.used:
        rows.append(("renderer", f"MUJOCO_GL={renderer.MUJOCO_GL}, {renderer.render_quality} quality"))
    return rows


# -- sections -----------------------------------------------------------------------------------
def _summary_rows(results: list[FindingResult]) -> list[list[str]]:
    rows = []
    for result in results:
        finding = result.finding
        if finding.not_testable is not None:
            ours, pooled = "–", "not testable by this suite"
        elif not result.variants:
            ours, pooled = "–", "not tested: the run has none of its variants"
        else:
            ours = ", ".join(result.variants)
            pooled = "; ".join(pooled_statements(result)) or "no episodes"
        rows.append([finding.study, finding.paper_result, ours, _headline(result), pooled])
    return rows


def _in_short(results: list[FindingResult]) -> list[str]:
    """One bullet per finding: reproduced or not, in words (``findings.conclude``), for the
    variant nearest the paper's setting, and how many tasks decided it."""
    lines = []
    for result in results:
        finding = result.finding
        if finding.not_testable is not None:
            lines.append(f"- **{finding.study}**: not testable by this suite.")
            continue
        found = conclusions(result)
        if not found:
            lines.append(f"- **{finding.study}**: not tested (the run has none of its variants).")
            continue
        parts = [f"{metric_words(c.metric)} {DIRECTION_WORDS[c.direction]}: **{c.word}** "
                 f"({c.agreeing} of {plural(c.decided, 'task')} with {MIN_PAIRS}+ pairs"
                 + (f"; {c.tasks - c.decided} with fewer" if c.tasks > c.decided else "") + ")"
                 for c in found]
        lines.append(f"- **{finding.study}**, {found[0].variant} vs {result.results[0].reference if result.results else 'base'}: "
                     + "; ".join(parts) + ".")
    lines += ["", ("Wording (`evaluation.analysis.findings.conclude`), per expected metric, over the tasks with enough pairs: all "
                   "agree with the paper: reproduced; more than half: mostly; some: partly; none: not reproduced. Other "
                   "variants and levels: the sections below.")]
    return lines


def _headline(result: FindingResult) -> str:
    """Our direction and magnitude, plainly, for the finding's first variant in the run (the
    level nearest the paper's setting): per task, the expected metrics' paired % change with its
    interval, then success of reference -> variant."""
    rows = [r for r in result.results if result.variants and r.variant == result.variants[0]]
    if not rows:
        return "–"
    parts = []
    for expectation in result.finding.expectations:
        per_task = ", ".join(f"{r.task} {_pct_cell(r.changes[expectation.metric])}"
                             if r.changes[expectation.metric].n_pairs else f"{r.task} no pairs" for r in rows)
        parts.append(f"{metric_words(expectation.metric)}: {per_task}")
    success = ", ".join(f"{r.task} {r.reference_success.successes}->{r.variant_success.successes}"
                        f"/{r.variant_success.episodes}" for r in rows)
    return f"{rows[0].variant} vs {rows[0].reference}: " + "; ".join(parts) + f"; success {success}"


def _finding_section(result: FindingResult, min_pairs: int) -> list[str]:
    finding = result.finding
    expected = ", ".join(f"{metric_words(e.metric)} {DIRECTION_WORDS[e.direction]} ({e.paper})"
                         for e in finding.expectations)
    lines = [f"### {finding.study}", "", f"Paper ({finding.source}): {finding.paper_result}.", "",
             f"Expected: {expected}.", ""]
    if finding.not_testable is not None:
        return [*lines, f"Not testable by this suite: {finding.not_testable}.", ""]
    if finding.mapping:
        lines += [f"Our test: {finding.mapping}.", ""]
    if not result.variants:
        wanted = (f"none of the variants it needs ({', '.join(finding.variants)})" if finding.variants
                  else "no variant with simulated latency")
        return [*lines, f"Not tested: the run has {wanted}.", ""]
    missing = [v for v in finding.variants if not any(c in v for c in "*?[") and v not in result.variants]
    if missing:
        lines += [f"Not in this run: {', '.join(missing)}.", ""]
    header = ["task", "variant", "vs", "success (reference)", "success (variant)", "pairs",
              *(metric_words(m) for m in PAPER_METRICS), "verdict"]
    rows = [[r.task, r.variant, r.reference, _success_cell(r.reference_success), _success_cell(r.variant_success),
             str(r.changes[PAPER_METRICS[0]].n_pairs), *(_pct_cell(r.changes[m]) for m in PAPER_METRICS),
             _verdict_cell(r)]
            for r in result.results]
    lines += _table(header, rows)
    trends = trend_statements(result, min_pairs)
    if trends:
        lines += ["Trend across levels:", "", *(f"- {t}" for t in trends), ""]
    return lines


def _seam_label(column: str) -> str:
    """'jerk_ms_seam' -> 'mean squared joint jerk at chunk seams (rad²/s⁶)' (schema.SEAM_COLUMNS:
    <metric>_seam + <metric>_within = <metric>)."""
    parent, part = column.rsplit("_", 1)
    where = "at chunk seams" if part == "seam" else "within chunks"
    return f"{metric_words(parent)} {where} ({metric_unit(parent)})"


def _suite_section(config: EvalConfig, episodes: list[dict], variants: list[str]) -> list[str]:
    lines = ["## What the suite measures that the paper could not", "", _SUITE_INTRO, ""]
    if not variants:
        return [*lines, "No variant of this run tests a finding.", ""]
    recorded = recorded_columns(episodes)
    absent = [c for c in (*SUITE_METRICS, *SEAM_COLUMNS, TEACHER_FORCED_FIELD) if c not in recorded]
    if absent:
        names = ", ".join(f"`{c}`" for c in absent)
        lines += [(f"Not recorded in this run: episodes.parquet has no values for {names} (a run made before these "
                   "columns existed), so they are left out below."), ""]
    cells = episodes_by_cell(episodes)
    stats = config.stats
    suite = [c for c in SUITE_METRICS if c in recorded]
    seams = [c for c in SEAM_COLUMNS if c in recorded]
    for task in config.tasks:
        pairs = [(v, config.reference_of(v)) for v in variants
                 if (task, v) in cells and (task, config.reference_of(v)) in cells]
        if not pairs:
            continue
        lines += [f"### {task}", ""]
        for columns, labels, title in ((suite, [METRIC_LABELS[c] for c in suite], "Energy and actuator ledger"),
                                       (seams, [_seam_label(c) for c in seams], "Chunk seams")):
            if not columns:
                continue
            rows = []
            for variant, reference in pairs:
                found = [paired_change(cells[(task, reference)], cells[(task, variant)], c, stats) for c in columns]
                rows.append([variant, reference, str(found[0].n_pairs), *(_diff_cell(ch) for ch in found)])
            lines += [f"{title} ({task}):", "", *_table(["variant", "vs", "pairs", *labels], rows)]
        if TEACHER_FORCED_FIELD in recorded:
            rows = []
            for variant, reference in pairs:
                error = teacher_forced_error(cells[(task, reference)], variant, stats)
                action, jerk = (paired_change(cells[(task, reference)], cells[(task, variant)], c, stats)
                                for c in (ACTION_RATE, JERK))
                rows.append([variant, reference, str(error.episodes), _num(error.queries_mean),
                             f"{_num(error.action_distance)} [{_num(error.ci_low)}, {_num(error.ci_high)}]",
                             _num(error.first_action_distance), _pct_cell(action), _pct_cell(jerk)])
            lines += [(f"Per-step error against closed-loop change ({task}; error in action units, over the "
                       "reference's episodes, successful or not; closed loop: paired % change):"), ""]
            lines += _table(["variant", "vs", "episodes", "queries per episode", "per-step error (plan) [interval]",
                             "per-step error (next action)", f"closed loop: {metric_words(ACTION_RATE)}",
                             f"closed loop: {metric_words(JERK)}"], rows)
    return lines


def render(run_dir: Path, config: EvalConfig, record: RunRecord, episodes: list[dict], results: list[FindingResult],
           command: str, generated: str, min_pairs: int = MIN_PAIRS, figure: str | None = None) -> str:
    """The whole page: header, method, one summary row per finding (after ``figure``, the name of
    the figure beside the page, when there is one), a section per finding, then what the paper
    could not measure."""
    level = f"{config.stats.confidence:.0%}"
    method = (
        "Like the paper, each metric is compared over successful episodes: over the seeds both the variant and its "
        "reference (the base, or the variant's `compare_to`) solved, paired. % change = 100 · mean(v - b) / "
        f"|mean(b)|; the {level} interval is the seeded {INTERVAL_METHODS[config.stats.interval]} bootstrap of the mean "
        "paired difference "
        "(`evaluation.analysis.stats.paired_comparison`: the numbers `summary.csv` calls `*_paired_*`) divided by |mean(b)|. "
        f"Success: successes / episodes with a Wilson {level} interval, over every episode."
    )
    intro = (f"The headline findings of {PAPER} (and the Speedup Paradox of {SPEEDUP_PAPER}), re-tested on the "
             "variants of this run that stand for each study.")
    lines = [f"{PAGE_HEADING}{config.name or run_dir.name}", "",
             f"Generated on {generated} from the run in `{run_dir}`. Regenerate with:", "", f"    {command}", "",
             intro, "", "## The run", "",
             *_table(["", ""], [[k, v] for k, v in run_facts(run_dir, config, record, episodes)]),
             "## In short", "", *_in_short(results), "",
             "## Method", "", method, "", _VERDICT_RULE, "", "## Summary", "",
             *(figure_link(figure, config.stats.confidence, min_pairs) if figure else []),
             *_table(["paper study", "paper's result", "our variants", "ours (first variant)", "verdict across tasks"],
                    _summary_rows(results)),
             "## The findings one by one", ""]
    for result in results:
        lines += _finding_section(result, min_pairs)
    lines += _suite_section(config, episodes, list(dict.fromkeys(v for r in results for v in r.variants)))
    return "\n".join(lines).rstrip() + "\n"


def write_findings(run_dir: str | Path, output: str | Path = DEFAULT_OUTPUT, command: str | None = None,
                   generated: str | None = None) -> tuple[Path, list[FindingResult]]:
    """Read a finished run, write its findings page to ``output`` (first line ``PAGE_MARKER``) and,
    when a finding was tested, its figure beside it (``output`` with the suffix ``.png``; a stale
    one from an earlier page is removed when none was); returns (path, results).
    ``RunFolderError`` naming the folder and what was expected when it is not a finished run;
    ``FindingsOutputError``, before anything is written, when ``output`` or the figure's path
    holds a file `vla-envs findings` did not write (``_check_outputs``)."""
    run_dir, output = Path(run_dir), Path(output)
    figure = output.with_suffix(".png")
    if figure == output:
        raise FindingsOutputError(f"output {output}: expected a Markdown file (its figure is written beside it as .png)")
    _check_outputs(output, figure)
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} is not a folder: expected the folder of a finished `vla-envs eval` run "
                             "(holding run.json and episodes.parquet)")
    config, record, episodes, _ = read_run(run_dir)
    if not episodes:
        raise RunFolderError(f"{run_dir / 'episodes.parquet'} has no rows: expected the episodes of a finished run")
    results = evaluate(config, episodes, FINDINGS)
    command = command or f"vla-envs findings {run_dir} --output {output}"
    generated = generated or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    drawn = findings_figure(results, list(config.tasks), config.variant_names[0], config.stats.confidence, figure)
    if not drawn:
        figure.unlink(missing_ok=True)
    text = PAGE_MARKER + "\n" + render(run_dir, config, record, episodes, results, command, generated,
                                      figure=figure.name if drawn else None)
    with atomic_path(output) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return output, results


def _check_outputs(output: Path, figure: Path) -> None:
    """Refuse (``FindingsOutputError``) to replace a page or figure `vla-envs findings` did not
    write: a page must start with ``PAGE_MARKER`` (or, written before the marker, with
    ``PAGE_HEADING``); a figure must carry ``FIGURE_MARKER`` or be the one that page links to."""
    page = None
    if output.exists() or output.is_symlink():
        try:
            page = output.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise FindingsOutputError(f"output {output} exists and cannot be read as a findings page ({exc}): "
                                      "expected a page `vla-envs findings` wrote, or a new path") from None
        first = page.split("\n", 1)[0]
        if first != PAGE_MARKER and not first.startswith(PAGE_HEADING):
            raise FindingsOutputError(
                f"output {output} exists and was not written by `vla-envs findings` (its first line is "
                f"{first[:80]!r}; expected {PAGE_MARKER!r}, or {PAGE_HEADING.strip()!r} on a page from before "
                "that marker): choose another --output, or move the file away")
    if (figure.exists() or figure.is_symlink()) and not is_findings_figure(figure):
        if page is None or f"]({figure.name})" not in page:
            raise FindingsOutputError(
                f"{figure} exists and was not written by `vla-envs findings` (it has no PNG text entry "
                f"{FIGURE_MARKER[0]}={FIGURE_MARKER[1]!r}, and no findings page at {output} links to it): "
                "the page's figure would replace it; choose another --output, or move the file away")
