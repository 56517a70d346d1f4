"""The paper's headline findings re-tested on an evaluation run (``vla-envs findings RUN``).

arXiv:2603.19131 reports each compression study as the % change of an embodied metric against
the uncompressed model, averaged over successful episodes. ``FINDINGS`` declares each study once:
the paper's numbers, the direction of each effect, and which of this suite's variants test it.
``evaluate`` compares each such variant with its reference (the run's base, or the variant's
``compare_to``) per task, paired over the seeds both solved, the way the summary does
(``evaluation.analysis.stats.paired_comparison`` with the run's ``stats`` settings), and ``verdict`` reads
the interval by a declared rule. ``evaluation.pages.findings_markdown`` writes the page (``docs/findings.md``).

The % change and its interval, over the n seeds both the reference and the variant solved, with
b_s and v_s their values on seed s (in the metric's units)::

    d_s = v_s - b_s
    pct = 100 * mean(d) / |mean(b)|          (= 100 * (mean(v) - mean(b)) / |mean(b)|)
    [lo, hi] = 100 * bootstrap_ci(d) / |mean(b)|

``bootstrap_ci`` is the seeded bootstrap interval (the run's ``stats.interval``: BCa unless it
says percentile) of the mean of the paired differences, so
``pct`` equals ``summary.csv``'s ``<metric>_paired_pct`` and the interval is the summary's paired
interval as a % of the reference's paired mean (held fixed).
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from evaluation.analysis.stats import bootstrap_ci, is_finite, paired_comparison, wilson_interval
from evaluation.analysis.summary import SUMMARY_METRICS, solved_by_seed
from evaluation.run.config import EvalConfig, StatsConfig
from evaluation.schema import EPISODE_SCHEMA, TEACHER_FORCED_TYPE
from wrappers.metrics import LEDGER_KEYS, METRIC_LABELS

PAPER = "arXiv:2603.19131"
SPEEDUP_PAPER = "arXiv:2606.28529"

# -- the columns compared, checked against the schema's declarations at import ------------------
SUCCESS_FIELD = "success"
TEACHER_FORCED_FIELD = "teacher_forced"
# the paper's kinematic metrics (success is reported beside them with Wilson intervals)
PAPER_METRICS: tuple[str, ...] = ("completion_time_s", "ee_path_m", "joint_path_rad", "jerk_ms", "action_rate")
COMPLETION_TIME, EE_PATH, JOINT_PATH, JERK, ACTION_RATE = PAPER_METRICS
# what the paper could not measure: true mechanical energy and effort, then the actuator ledger
ENERGY_METRICS: tuple[str, ...] = ("energy_j", "effort_nm2s")
SUITE_METRICS: tuple[str, ...] = ENERGY_METRICS + LEDGER_KEYS
# teacher-forced per-step error (evaluation.run.teacher_forcing), in action units
TEACHER_FORCED_DISTANCES: tuple[str, ...] = ("action_distance", "first_action_distance")


def _check_declared(names: Iterable[str], declared: Iterable[str], where: str) -> None:
    unknown = sorted(set(names) - set(declared))
    if unknown:
        raise RuntimeError(f"evaluation.analysis.findings names columns {unknown} that {where} does not declare; "
                           "expected names from it (a column was renamed?)")


_check_declared(PAPER_METRICS + SUITE_METRICS, SUMMARY_METRICS, "evaluation.analysis.summary.SUMMARY_METRICS")
_check_declared((SUCCESS_FIELD, TEACHER_FORCED_FIELD), EPISODE_SCHEMA.names, "evaluation.schema.EPISODE_SCHEMA")
_check_declared(TEACHER_FORCED_DISTANCES, [f.name for f in TEACHER_FORCED_TYPE.value_type],
                "evaluation.schema.TEACHER_FORCED_TYPE")

# -- the verdict rule --------------------------------------------------------------------------
Direction = Literal["up", "down", "none"]
_SIGN: dict[str, int] = {"up": 1, "down": -1, "none": 0}
# fewer paired successes than this and the interval is not read: a bootstrap over 2-4 pairs
# is too narrow to mean anything
MIN_PAIRS = 5


class Verdict(str, Enum):
    """How our paired interval reads against the paper's direction (``verdict``)."""

    REPRODUCED = "reproduced"  # interval excludes 0, on the paper's side
    NO_CHANGE = "no significant change"  # interval includes 0 (with 'none', what the paper found)
    OPPOSITE = "opposite"  # interval excludes 0, on the other side
    CHANGED = "significant change"  # the paper found no change ('none'); the interval excludes 0
    TOO_FEW = "too few successes"  # fewer than MIN_PAIRS seeds both solved


def verdict(direction: Direction, ci_low: float, ci_high: float, n_pairs: int, min_pairs: int = MIN_PAIRS) -> Verdict:
    """The rule, on a paired interval [ci_low, ci_high] (any units; only its sign matters):

    - n_pairs < min_pairs, or the interval is not finite  -> TOO_FEW
    - ci_low <= 0 <= ci_high (a closed interval: touching 0 includes it) -> NO_CHANGE
    - the interval is on the side of ``direction`` ('up': > 0, 'down': < 0) -> REPRODUCED
    - on the other side -> OPPOSITE; ``direction`` 'none' (the paper saw no change) -> CHANGED
    """
    if direction not in _SIGN:
        raise ValueError(f"direction={direction!r}: expected one of {sorted(_SIGN)}")
    if n_pairs < min_pairs or not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return Verdict.TOO_FEW
    if ci_low > ci_high:
        raise ValueError(f"interval [{ci_low}, {ci_high}]: expected ci_low <= ci_high")
    if ci_low <= 0.0 <= ci_high:
        return Verdict.NO_CHANGE
    observed = 1 if ci_low > 0.0 else -1
    if _SIGN[direction] == 0:
        return Verdict.CHANGED
    return Verdict.REPRODUCED if observed == _SIGN[direction] else Verdict.OPPOSITE


# -- the paper's findings, declared once ------------------------------------------------------
@dataclass(frozen=True)
class Expectation:
    """The paper's effect on one metric: its direction and the number(s) it reported."""

    metric: str  # one of PAPER_METRICS
    direction: Direction
    paper: str


@dataclass(frozen=True)
class Finding:
    key: str
    study: str  # the paper's study, as it names it
    paper_result: str  # the paper's reported numbers
    expectations: tuple[Expectation, ...]
    variants: tuple[str, ...] = ()  # our variant names (fnmatch patterns), weakest compression first
    mapping: str = ""  # how our variants stand for the paper's setting
    trend: bool = False  # the variants are levels of one knob: report the trend across them
    # "names": the variants above; "simulated_latency": every variant whose latency model differs
    # from its reference's (whatever it is called: latency_*, *_async, device models)
    select: Literal["names", "simulated_latency"] = "names"
    not_testable: str | None = None  # why this suite cannot test it
    source: str = PAPER


FINDINGS: tuple[Finding, ...] = (
    Finding(
        key="pruning", study="weight pruning 5% (Bridge)",
        paper_result="success -0.2%, end-effector path +46.2%, completion time +13.6%",
        expectations=(Expectation(EE_PATH, "up", "+46.2%"), Expectation(COMPLETION_TIME, "up", "+13.6%")),
        variants=("prune10", "prune30", "prune50", "prune70"), trend=True,
        mapping="unstructured magnitude pruning of the policy's weights; prune10 is the level nearest the "
                "paper's 5%, prune30/50/70 give the trend",
    ),
    Finding(
        key="int4", study="int4 weight fake-quantization",
        paper_result="jerk up to +19.5% (pi0), +14.1% (MolmoAct), +3.5% (pi0.5); success at most -1.8%",
        expectations=(Expectation(JERK, "up", "+3.5% to +19.5%"),),
        variants=("int4", "int4_*"),
        mapping="fake int4 weight quantization (policies.compression, per-row scales); int4_latency_* against the "
                "same latency without int4",
    ),
    Finding(
        key="int8", study="int8 weight fake-quantization",
        paper_result="jerk +0.4% (pi0), -3.4% (pi0.5), +0.8% (MolmoAct)",
        expectations=(Expectation(JERK, "none", "-3.4% to +0.8%"),),
        variants=("int8", "dynamic_int8"), mapping="fake int8 weights (int8) and torch dynamic int8 (dynamic_int8)",
    ),
    Finding(
        key="tokens", study="visual token pruning 12% / 56% / 78% (pi0.5)",
        paper_result="jerk 204% / 337% / 375% of baseline (+104% / +237% / +275%)",
        expectations=(Expectation(JERK, "up", "+104% / +237% / +275%"),),
        variants=("tokens75", "tokens50", "tokens25"), trend=True,
        mapping="attention-ranked visual token keep ratios 0.75 / 0.5 / 0.25 (25% / 50% / 75% pruned)",
    ),
    Finding(
        key="fast", study="FAST action tokenizer (pi0-FAST)",
        paper_result="jerk +28.0% to +50.6%, completion time -1.5% to -5.6%",
        expectations=(Expectation(JERK, "up", "+28.0% to +50.6%"),
                      Expectation(COMPLETION_TIME, "down", "-1.5% to -5.6%")),
        variants=("fast", "fast_budget8", "fast_budget8_relaxed", "dct6", "dct4", "dct2", "dct4_q10", "downsample2",
                  "downsample4"),
        mapping="FAST as pi0-FAST ships it (DCT, scale 10, rounding, BPE tokens of a vocabulary fitted on the "
                "experts' chunks; fast), with an 8-token decoding budget whose overruns decode to zeros "
                "(fast_budget8, openpi) or relaxed (fast_budget8_relaxed, LeRobot); and its DCT stage alone: the "
                "first k coefficients kept (dct6/4/2), quantized (dct4_q10), or the chunk down-sampled and "
                "interpolated (downsample2/4)",
    ),
    Finding(
        key="prompting", study="in-context prompting for efficiency",
        paper_result="jerk down up to 25.8%, action rate down up to 9.5%, completion time up to +11.2%",
        expectations=(Expectation(JERK, "down", "up to -25.8%"), Expectation(ACTION_RATE, "down", "up to -9.5%"),
                      Expectation(COMPLETION_TIME, "up", "up to +11.2%")),
        not_testable="the suite's policies cannot be prompted: TinyVLA reads at most 12 words from the closed "
                     "vocabulary of its training instructions (any other word is one unknown token), and the "
                     "scripted experts read no instruction",
    ),
    Finding(
        key="smoothness_finetuning", study="fine-tuning with a jerk or action-rate loss",
        paper_result="jerk down 13.2% to 24.0%, completion time up to +3.8%",
        expectations=(Expectation(JERK, "down", "-13.2% to -24.0%"),
                      Expectation(COMPLETION_TIME, "up", "up to +3.8%")),
        variants=("tinyvla_smooth",),
        mapping="TinyVLA fine-tuned with the smoothness loss (configs/policies/tinyvla_smooth.yaml), against its "
                "compare_to (the model it came from) or the base",
    ),
    Finding(
        key="speedup_paradox", study="Speedup Paradox: cycle C = T_inf + n T_act", source=SPEEDUP_PAPER,
        paper_result="a faster but less accurate model can need more chunks and finish later; invisible while "
                     "simulated time stands still during inference",
        expectations=(Expectation(COMPLETION_TIME, "up", "T_inf added to every cycle"),),
        select="simulated_latency",
        mapping="every variant whose latency model differs from its reference's (fixed latencies, profiled, "
                "device models, async execution): simulated time runs while the policy computes",
    ),
)


def _check_findings(findings: tuple[Finding, ...]) -> None:
    keys = [f.key for f in findings]
    if len(set(keys)) != len(keys):
        raise RuntimeError(f"evaluation.analysis.findings.FINDINGS repeats keys {sorted({k for k in keys if keys.count(k) > 1})}")
    for finding in findings:
        _check_declared([e.metric for e in finding.expectations], PAPER_METRICS, "evaluation.analysis.findings.PAPER_METRICS")
        bad = [e.direction for e in finding.expectations if e.direction not in _SIGN]
        if bad:
            raise RuntimeError(f"finding {finding.key!r}: directions {bad}, expected one of {sorted(_SIGN)}")


_check_findings(FINDINGS)


# -- numbers ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairedChange:
    """A variant against its reference on one column, over the seeds both solved."""

    column: str
    n_pairs: int
    reference_mean: float  # the reference's mean over the pairs (column units)
    difference: float  # mean paired difference, variant - reference (column units)
    ci_low: float  # bootstrap interval of the difference (column units)
    ci_high: float
    mde_percent: float  # the smallest % change these pairs could detect (stats.minimum_detectable_effect)

    @property
    def _scale(self) -> float:
        ok = math.isfinite(self.reference_mean) and self.reference_mean != 0.0
        return 100.0 / abs(self.reference_mean) if ok else math.nan

    @property
    def percent(self) -> float:
        """100 * mean(d) / |mean(b)|: the summary's ``*_paired_pct``."""
        return self.difference * self._scale

    @property
    def percent_interval(self) -> tuple[float, float]:
        return (self.ci_low * self._scale, self.ci_high * self._scale)


def paired_change(reference: list[dict], variant: list[dict], column: str, stats: StatsConfig) -> PairedChange:
    """``column`` of ``variant``'s episodes against ``reference``'s, paired over the seeds both
    solved (``summary.solved_by_seed``; episodes without a finite value left out), by
    ``stats.paired_comparison`` with the run's confidence, resamples and seed."""
    def by_seed(rows: list[dict]) -> dict[int, float]:
        return {seed: float(row[column]) for seed, row in solved_by_seed(rows).items() if is_finite(row.get(column))}

    paired = paired_comparison(by_seed(reference), by_seed(variant), stats.confidence, stats.bootstrap_resamples,
                               stats.bootstrap_seed, stats.interval)
    return PairedChange(column, paired.n_pairs, paired.base_mean, paired.mean_difference, paired.ci_low,
                        paired.ci_high, paired.mde_percent)


@dataclass(frozen=True)
class SuccessRate:
    successes: int
    episodes: int
    ci_low: float  # Wilson interval (stats.wilson_interval), fractions
    ci_high: float

    @property
    def rate(self) -> float:
        return self.successes / self.episodes if self.episodes else math.nan


def success_rate(rows: list[dict], confidence: float) -> SuccessRate:
    successes = sum(bool(row[SUCCESS_FIELD]) for row in rows)
    low, high = wilson_interval(successes, len(rows), confidence)
    return SuccessRate(successes, len(rows), low, high)


@dataclass(frozen=True)
class TaskResult:
    """One variant that tests a finding, on one task."""

    task: str
    variant: str
    reference: str
    reference_success: SuccessRate
    variant_success: SuccessRate
    changes: dict[str, PairedChange]  # PAPER_METRICS -> change
    verdicts: dict[str, Verdict]  # the finding's expected metrics -> verdict


@dataclass(frozen=True)
class FindingResult:
    finding: Finding
    variants: tuple[str, ...]  # the run's variants that test it (empty: not tested)
    results: tuple[TaskResult, ...]


def episodes_by_cell(episodes: list[dict]) -> dict[tuple[str, str], list[dict]]:
    cells: dict[tuple[str, str], list[dict]] = {}
    for row in episodes:
        cells.setdefault((row["task"], row["variant"]), []).append(row)
    return cells


def finding_variants(finding: Finding, config: EvalConfig) -> tuple[str, ...]:
    """The run's variants that test ``finding``, in the finding's order (never the base: it has
    nothing to be compared with)."""
    if finding.not_testable is not None:
        return ()
    compared = [v for v in config.variant_names if config.reference_of(v) != v]
    if finding.select == "simulated_latency":
        return tuple(v for v in compared if config.latency_for(v) != "frozen"
                     and config.latency_for(v) != config.latency_for(config.reference_of(v)))
    chosen: list[str] = []
    for pattern in finding.variants:
        chosen += [v for v in compared if fnmatch.fnmatchcase(v, pattern) and v not in chosen]
    return tuple(chosen)


def evaluate(config: EvalConfig, episodes: list[dict], findings: tuple[Finding, ...] = FINDINGS,
             min_pairs: int = MIN_PAIRS) -> list[FindingResult]:
    """Each finding's variants against their references, per task of the run (a pure function of
    the config and the episode rows)."""
    cells = episodes_by_cell(episodes)
    stats = config.stats
    out = []
    for finding in findings:
        variants = finding_variants(finding, config)
        results = []
        for task in config.tasks:
            for variant in variants:
                reference = config.reference_of(variant)
                ref_rows, var_rows = cells.get((task, reference), []), cells.get((task, variant), [])
                if not var_rows or not ref_rows:
                    continue
                changes = {m: paired_change(ref_rows, var_rows, m, stats) for m in PAPER_METRICS}
                verdicts = {e.metric: verdict(e.direction, changes[e.metric].ci_low, changes[e.metric].ci_high,
                                              changes[e.metric].n_pairs, min_pairs)
                            for e in finding.expectations}
                results.append(TaskResult(task, variant, reference, success_rate(ref_rows, stats.confidence),
                                          success_rate(var_rows, stats.confidence), changes, verdicts))
        out.append(FindingResult(finding, variants, tuple(results)))
    return out


def metric_words(column: str) -> str:
    """A metric's words without its unit: 'jerk_ms' -> 'mean squared joint jerk'."""
    return re.sub(r"\s*\([^)]*\)$", "", METRIC_LABELS[column])


def metric_unit(column: str) -> str:
    match = re.search(r"\(([^)]*)\)$", METRIC_LABELS[column])
    return match.group(1) if match else ""


DIRECTION_WORDS = {"up": "up", "down": "down", "none": "unchanged"}


def pooled_statements(result: FindingResult) -> list[str]:
    """Per variant and expected metric: on how many of the tasks each verdict came out, e.g.
    'prune10, end-effector path length up: reproduced on 3, no significant change on 1 of 4 tasks'."""
    lines = []
    for variant in result.variants:
        rows = [r for r in result.results if r.variant == variant]
        if not rows:
            continue
        for expectation in result.finding.expectations:
            verdicts = [row.verdicts[expectation.metric] for row in rows]
            counts = ", ".join(f"{v.value} on {verdicts.count(v)}" for v in Verdict if v in verdicts)
            lines.append(f"{variant}, {metric_words(expectation.metric)} {DIRECTION_WORDS[expectation.direction]}: "
                         f"{counts} of {plural(len(rows), 'task')}")
    return lines


@dataclass(frozen=True)
class Conclusion:
    """One expected metric of a finding, on its first variant (the level nearest the paper's),
    over the tasks with enough pairs: how many gave the paper's answer."""

    variant: str
    metric: str
    direction: Direction
    agreeing: int  # tasks whose verdict is the paper's answer (REPRODUCED; NO_CHANGE where it saw none)
    decided: int  # tasks with at least MIN_PAIRS pairs
    tasks: int
    word: str


def conclude(agreeing: int, decided: int) -> str:
    """The declared wording: every decided task agrees -> 'reproduced'; more than half ->
    'mostly reproduced'; none -> 'not reproduced'; otherwise 'partly reproduced'; no task with
    enough pairs -> 'undecided (too few successes)'."""
    if not 0 <= agreeing <= decided:
        raise ValueError(f"agreeing={agreeing}, decided={decided}: expected 0 <= agreeing <= decided")
    if decided == 0:
        return "undecided (too few successes)"
    if agreeing == decided:
        return "reproduced"
    if agreeing == 0:
        return "not reproduced"
    return "mostly reproduced" if 2 * agreeing > decided else "partly reproduced"


def conclusions(result: FindingResult) -> list[Conclusion]:
    """Per expected metric of ``result``'s finding, the conclusion on its first variant in the run."""
    if not result.variants:
        return []
    first = result.variants[0]
    rows = [r for r in result.results if r.variant == first]
    out = []
    for expectation in result.finding.expectations:
        answer = Verdict.NO_CHANGE if expectation.direction == "none" else Verdict.REPRODUCED
        verdicts = [r.verdicts[expectation.metric] for r in rows]
        decided = sum(v is not Verdict.TOO_FEW for v in verdicts)
        agreeing = sum(v is answer for v in verdicts)
        out.append(Conclusion(first, expectation.metric, expectation.direction, agreeing, decided, len(rows),
                              conclude(agreeing, decided)))
    return out


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def trend_statements(result: FindingResult, min_pairs: int = MIN_PAIRS) -> list[str]:
    """For a finding over levels of one knob: per task and expected metric, the % changes in the
    finding's order and whether they move monotonically the paper's way."""
    if not result.finding.trend:
        return []
    lines = []
    for task in dict.fromkeys(r.task for r in result.results):
        rows = [r for r in result.results if r.task == task]
        for expectation in result.finding.expectations:
            points = [(r.variant, r.changes[expectation.metric].percent) for r in rows
                      if r.changes[expectation.metric].n_pairs >= min_pairs and is_finite(r.changes[expectation.metric].percent)]
            if len(points) < 2:
                continue
            values = [p for _, p in points]
            sign = _SIGN[expectation.direction]
            steps = [b - a for a, b in itertools.pairwise(values)]
            if sign and all(sign * s > 0 for s in steps):
                shape = f"moves {expectation.direction} with every level, as the paper's"
            elif sign and all(-sign * s > 0 for s in steps):
                shape = "moves against the paper's direction with every level"
            else:
                shape = "not monotonic"
            series = ", ".join(f"{v} {p:+.1f}%" for v, p in points)
            lines.append(f"{task}, {metric_words(expectation.metric)}: {series} ({shape})")
    return lines


# -- what the paper could not measure -----------------------------------------------------------
@dataclass(frozen=True)
class TeacherForcedError:
    """The variant queried on its reference's episodes (evaluation.run.teacher_forcing), action units."""

    episodes: int  # reference episodes with an entry for the variant
    queries_mean: float
    action_distance: float  # mean over those episodes of the mean plan distance
    ci_low: float  # bootstrap interval over episodes
    ci_high: float
    first_action_distance: float


def recorded_columns(episodes: list[dict]) -> set[str]:
    """The columns the run's episodes.parquet holds with at least one value (older runs lack
    the seam and teacher-forced columns)."""
    present = set(episodes[0]) if episodes else set()
    return {c for c in present if any(row.get(c) is not None for row in episodes)}


def teacher_forced_error(reference: list[dict], variant: str, stats: StatsConfig) -> TeacherForcedError:
    entries = [t for row in reference for t in (row.get(TEACHER_FORCED_FIELD) or []) if t["variant"] == variant]
    distance, first = ([t[name] for t in entries if is_finite(t[name])] for name in TEACHER_FORCED_DISTANCES)
    low, high = bootstrap_ci(distance, stats.confidence, stats.bootstrap_resamples, stats.bootstrap_seed, stats.interval)
    mean = sum(distance) / len(distance) if distance else math.nan
    return TeacherForcedError(len(entries), sum(t["queries"] for t in entries) / len(entries) if entries else math.nan,
                              mean, low, high, sum(first) / len(first) if first else math.nan)
