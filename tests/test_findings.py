"""`vla-envs findings`: the verdict rule on hand-made numbers, and the page written from a real
tiny run (base + variants named after declared findings)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from eval_helpers import small_config
from typer.testing import CliRunner

from cli.app import app
from evaluation import run_eval
from evaluation.analysis.findings import (
    FINDINGS,
    JERK,
    MIN_PAIRS,
    TEACHER_FORCED_FIELD,
    Expectation,
    Finding,
    FindingResult,
    PairedChange,
    SuccessRate,
    TaskResult,
    Verdict,
    evaluate,
    paired_change,
    pooled_statements,
    trend_statements,
    verdict,
)
from evaluation.analysis.summary import metric_column
from evaluation.pages import findings_markdown
from evaluation.pages.findings_figure import findings_figure, is_findings_figure, paper_range
from evaluation.run.config import StatsConfig
from evaluation.run.record import read_run
from evaluation.schema import SEAM_COLUMNS

# -- the verdict rule ---------------------------------------------------------------------------
N = MIN_PAIRS


@pytest.mark.parametrize(("direction", "low", "high", "pairs", "expected"), [
    ("up", 1.0, 2.0, N, Verdict.REPRODUCED),
    ("down", -2.0, -1.0, N, Verdict.REPRODUCED),
    ("up", -2.0, -1.0, N, Verdict.OPPOSITE),
    ("down", 1.0, 2.0, N, Verdict.OPPOSITE),
    ("up", -1.0, 1.0, N, Verdict.NO_CHANGE),
    ("up", 0.0, 1.0, N, Verdict.NO_CHANGE),  # touching 0 includes it
    ("down", -1.0, 0.0, N, Verdict.NO_CHANGE),
    ("up", 0.0, 0.0, N, Verdict.NO_CHANGE),  # every pair equal
    ("up", 1e-12, 1.0, N, Verdict.REPRODUCED),  # just off 0
    ("up", 1.0, 2.0, N - 1, Verdict.TOO_FEW),  # one pair short
    ("up", 1.0, 2.0, 0, Verdict.TOO_FEW),
    ("up", math.nan, math.nan, N, Verdict.TOO_FEW),
    ("none", -1.0, 1.0, N, Verdict.NO_CHANGE),  # what the paper found
    ("none", 0.5, 1.0, N, Verdict.CHANGED),
    ("none", -1.0, -0.5, N, Verdict.CHANGED),
])
def test_the_verdict_rule(direction, low, high, pairs, expected):
    assert verdict(direction, low, high, pairs) is expected


def test_the_verdict_rule_takes_its_minimum_and_refuses_nonsense():
    assert verdict("up", 1.0, 2.0, 3, min_pairs=3) is Verdict.REPRODUCED
    assert verdict("up", 1.0, 2.0, 2, min_pairs=3) is Verdict.TOO_FEW
    with pytest.raises(ValueError, match="ci_low <= ci_high"):
        verdict("up", 2.0, 1.0, N)
    with pytest.raises(ValueError, match="direction='sideways'"):
        verdict("sideways", 1.0, 2.0, N)  # type: ignore[arg-type]


def _rows(values: dict[int, float | None], column: str = JERK) -> list[dict]:
    """Episode rows: None is a failed episode."""
    return [{"seed": s, "success": v is not None, column: v if v is not None else 99.0} for s, v in values.items()]


def test_the_percent_change_is_over_the_seeds_both_solved():
    stats = StatsConfig(bootstrap_resamples=200)
    base = _rows({0: 10.0, 1: 10.0, 2: 10.0, 3: 10.0, 4: 20.0, 5: 10.0})
    variant = _rows({0: 11.0, 1: 11.0, 2: 11.0, 3: 11.0, 4: None, 5: 11.0})  # seed 4 failed: not a pair
    change = paired_change(base, variant, JERK, stats)
    assert change.n_pairs == 5
    assert change.reference_mean == pytest.approx(10.0)
    assert change.percent == pytest.approx(10.0)
    assert change.percent_interval == pytest.approx((10.0, 10.0))  # every difference is +1
    assert verdict("up", change.ci_low, change.ci_high, change.n_pairs) is Verdict.REPRODUCED


def test_the_pooled_statement_counts_tasks_per_verdict():
    finding = Finding(key="k", study="s", paper_result="r", expectations=(Expectation(JERK, "up", "+10%"),),
                      variants=("int4",))
    rate = SuccessRate(5, 5, 0.5, 1.0)
    change = PairedChange(JERK, 5, 1.0, 0.1, 0.05, 0.15, math.nan)
    outcomes = [Verdict.REPRODUCED, Verdict.REPRODUCED, Verdict.REPRODUCED, Verdict.NO_CHANGE]
    results = tuple(TaskResult(f"task{i}", "int4", "base", rate, rate, {JERK: change}, {JERK: v})
                    for i, v in enumerate(outcomes))
    [line] = pooled_statements(FindingResult(finding, ("int4",), results))
    assert line == "int4, mean squared joint jerk up: reproduced on 3, no significant change on 1 of 4 tasks"


# -- end to end: a real tiny run ------------------------------------------------------------------
# variants named after declared findings (int4, prune10, a simulated latency); none for int8,
# visual tokens, FAST or smoothness fine-tuning
TINY = """\
name: findings test
tasks: [Lift]
seeds: [0, 1, 2, 3, 4]
env: {obs_mode: state, max_episode_steps: 80}
base:
  name: perturbed
  policy: {factory: "policies.demo:perturbed_expert", kwargs: {chunk_size: 4, scale: 0.2}}
variants:
  - {name: int4, compression: {quantization: {method: fake, bits: 4}}}
  - {name: prune10, compression: {pruning: {fraction: 0.1}}}
  - {name: latency_50ms, latency: {fixed_ms: 50}}
execution: {schedule: open_loop, execute_steps: 2}
recording: {record_steps: false}
profile: {repeats: 3, warmup: 1}
stats: {bootstrap_resamples: 500}
"""
COVERED = {"pruning": "prune10", "int4": "int4", "speedup_paradox": "latency_50ms"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("findings")
    _, config = small_config(tmp, TINY)
    run_eval(config, tmp / "run", progress=False)
    return tmp / "run"


@pytest.fixture(scope="module")
def page(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("docs") / "findings.md"
    result = CliRunner().invoke(app, ["findings", str(run_dir), "--output", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert f"3 of {len(FINDINGS)} findings tested" in " ".join(result.output.split())  # rich wraps long paths
    return run_dir, out, out.read_text()


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def test_the_header_names_the_run_and_how_to_regenerate_it(page):
    run_dir, out, text = page
    header = _section(text, "The run")
    assert "| episodes per task and variant | 5 |" in header
    assert "| total episodes | 20 (1 task × 4 variants × 5) |" in header
    assert "| seeds | 0–4 |" in header
    assert "| tasks | 1: Lift |" in header
    assert "perturbed (base), int4, prune10, latency_50ms" in header
    for label in ("started, finished", "episodes' wall time", "episode time, summed", "machine"):
        assert f"| {label} |" in header
    assert f"    vla-envs findings {run_dir} --output {out}\n" in text
    assert text.startswith(f"{findings_markdown.PAGE_MARKER}\n# The paper's findings on this suite: findings test\n")


def test_one_summary_row_per_declared_finding(page):
    _, _, text = page
    summary = _section(text, "Summary")
    verdicts = tuple(v.value for v in Verdict)
    for finding in FINDINGS:
        [row] = [line for line in summary.splitlines() if line.startswith(f"| {finding.study} |")]
        if finding.key in COVERED:
            cells = row.split(" | ")
            assert cells[2] == COVERED[finding.key]
            first = COVERED[finding.key].split(", ")[0]
            assert cells[3].startswith(f"{first} vs perturbed: ") and "; success Lift " in cells[3], row
            assert any(v in cells[4] for v in verdicts), row
        elif finding.not_testable is not None:
            assert "not testable by this suite" in row
        else:
            assert "not tested: the run has none of its variants" in row
    sections = _section(text, "The findings one by one")
    assert "Not tested: the run has none of the variants it needs (int8, dynamic_int8)." in sections
    assert "Not tested: the run has none of the variants it needs (tinyvla_smooth)." in sections
    assert "Not in this run: prune30, prune50, prune70." in sections
    assert "| Lift | int4 | perturbed | 5/5 = 100% [57, 100]% |" in sections


def test_the_figure_is_written_beside_the_page_and_linked_in_the_summary(page):
    _, out, text = page
    figure = out.with_suffix(".png")
    assert figure.name == "findings.png" and figure.parent == out.parent
    data = figure.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    from PIL import Image

    with Image.open(figure) as image:
        image.verify()
    with Image.open(figure) as image:
        width, height = image.size
    assert 900 <= width <= 1100 and height >= 300  # about 1000 px wide, rows for 3 findings' 4 metrics
    summary = _section(text, "Summary")
    assert "](findings.png)" in summary  # by its name, relative to the page
    assert summary.index("](findings.png)") < summary.index("| paper study |")  # above the table
    assert [line for line in summary.splitlines() if line.startswith("*Figure: ")]
    assert not list(out.parent.glob(".findings.png.*"))  # no temporary left behind
    assert is_findings_figure(figure)  # marked: a later page may replace it


def test_a_run_that_tests_no_finding_gets_no_figure_and_no_link(run_dir, page, tmp_path, monkeypatch):
    untested = [FindingResult(f, (), ()) for f in FINDINGS]
    monkeypatch.setattr(findings_markdown, "evaluate", lambda *args, **kwargs: untested)
    out = tmp_path / "findings.md"
    shutil.copy(page[1].with_suffix(".png"), out.with_suffix(".png"))  # an earlier page's figure
    findings_markdown.write_findings(run_dir, out)
    assert not out.with_suffix(".png").exists()
    text = out.read_text()
    assert "findings.png" not in text and "![" not in text
    assert not findings_figure(untested, ["Lift"], "perturbed", 0.95, tmp_path / "f.png")
    assert not (tmp_path / "f.png").exists()


# every Expectation.paper string declared in FINDINGS, and its band (None: nothing to mark)
PAPER_RANGES = {
    "+46.2%": (46.2, 46.2),
    "+13.6%": (13.6, 13.6),
    "+3.5% to +19.5%": (3.5, 19.5),
    "-3.4% to +0.8%": (-3.4, 0.8),
    "+104% / +237% / +275%": (104.0, 275.0),
    "+28.0% to +50.6%": (28.0, 50.6),
    "-1.5% to -5.6%": (-5.6, -1.5),
    "up to -25.8%": (-25.8, 0.0),  # 'up to' spans 0
    "up to -9.5%": (-9.5, 0.0),
    "up to +11.2%": (0.0, 11.2),
    "-13.2% to -24.0%": (-24.0, -13.2),
    "up to +3.8%": (0.0, 3.8),
    "T_inf added to every cycle": None,
}


def test_the_paper_range_parser_on_the_declared_strings():
    declared = {e.paper for f in FINDINGS for e in f.expectations}
    assert declared == set(PAPER_RANGES), "a declared Expectation.paper string without a known answer here"
    for text, expected in PAPER_RANGES.items():
        found = paper_range(text)
        assert found == (pytest.approx(expected) if expected else None), text
    assert paper_range("\u22122.5% to 4 %") == pytest.approx((-2.5, 4.0))  # a typographic minus, a spaced %
    assert paper_range("pi0 and pi0.5, 12 tasks") is None  # numbers without % are not the paper's change


def test_the_numbers_are_the_summarys_paired_comparisons(page):
    run_dir, _, _ = page
    config, _, episodes, _ = read_run(run_dir)
    summary = pd.read_csv(run_dir / "summary.csv").set_index("variant")
    results = {r.finding.key: r for r in evaluate(config, episodes)}
    for key, variant in COVERED.items():
        [task_result] = results[key].results
        for metric, change in task_result.changes.items():
            assert change.n_pairs == summary.loc[variant, "paired_n"]
            expected = summary.loc[variant, metric_column(metric, "paired_pct")]
            assert change.percent == pytest.approx(expected, nan_ok=True), (variant, metric)
            low, high = (summary.loc[variant, metric_column(metric, s)] for s in ("paired_ci_low", "paired_ci_high"))
            assert (change.ci_low, change.ci_high) == pytest.approx((low, high), nan_ok=True)


def test_the_suite_section_reports_energy_ledger_seams_and_per_step_error(page):
    _, _, text = page
    suite = _section(text, "What the suite measures that the paper could not")
    for label in ("motor energy (J)", "time at torque limit (fraction)", "at chunk seams (rad²/s⁶)",
                  "per-step error (plan) [interval]"):
        assert label in suite
    assert "| int4 | perturbed | 5 |" in suite
    assert "Not recorded in this run" not in suite


def test_a_run_without_the_newer_columns_says_so(run_dir, tmp_path):
    old = tmp_path / "old_run"
    old.mkdir()
    shutil.copy(run_dir / "run.json", old / "run.json")
    table = pq.read_table(run_dir / "episodes.parquet").drop_columns([*SEAM_COLUMNS, TEACHER_FORCED_FIELD])
    pq.write_table(table, old / "episodes.parquet")
    out = tmp_path / "findings.md"
    result = CliRunner().invoke(app, ["findings", str(old), "--output", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    suite = _section(out.read_text(), "What the suite measures that the paper could not")
    assert "Not recorded in this run" in suite and f"`{TEACHER_FORCED_FIELD}`" in suite
    assert "motor energy (J)" in suite and "per-step error" not in suite.split("Not recorded")[1]


def test_a_folder_that_is_not_a_run_is_refused_by_name(tmp_path):
    result = CliRunner().invoke(app, ["findings", str(tmp_path), "--output", str(tmp_path / "f.md")])
    assert result.exit_code == 2
    assert str(tmp_path) in result.output and "run.json" in result.output
    missing = tmp_path / "nowhere"
    result = CliRunner().invoke(app, ["findings", str(missing), "--output", str(tmp_path / "f.md")])
    assert result.exit_code == 2 and "is not a folder" in result.output
    assert not (tmp_path / "f.md").exists()


def test_an_output_that_is_not_markdown_is_refused_by_name(page, tmp_path):
    run_dir, _, _ = page
    result = CliRunner().invoke(app, ["findings", str(run_dir), "--output", str(tmp_path / "f.png")])
    assert result.exit_code == 2 and "f.png: expected a Markdown file" in result.output
    assert not (tmp_path / "f.png").exists()


def test_the_trend_follows_the_declared_levels():
    finding = next(f for f in FINDINGS if f.key == "tokens")
    rate = SuccessRate(5, 5, 0.5, 1.0)

    def result(values: dict[str, float], pairs: int = N) -> FindingResult:
        rows = tuple(TaskResult("Lift", v, "base", rate, rate, {JERK: PairedChange(JERK, pairs, 1.0, x / 100, 0.0, 0.1, 1.0)},
                                {JERK: Verdict.REPRODUCED}) for v, x in values.items())
        return FindingResult(finding, tuple(values), rows)

    [rising] = trend_statements(result({"tokens75": 5.0, "tokens50": 20.0, "tokens25": 40.0}))
    assert rising == ("Lift, mean squared joint jerk: tokens75 +5.0%, tokens50 +20.0%, tokens25 +40.0% "
                      "(moves up with every level, as the paper's)")
    [mixed] = trend_statements(result({"tokens75": 5.0, "tokens50": 40.0, "tokens25": 20.0}))
    assert mixed.endswith("(not monotonic)")
    assert trend_statements(result({"tokens75": 5.0, "tokens50": 20.0}, pairs=N - 1)) == []  # too few pairs


def test_the_study_subset_tests_every_finding_the_full_study_tests():
    """docs/findings.md comes from paper_study_subset.yaml: it may drop levels and ablations, never
    a whole finding of paper_study.yaml."""
    from evaluation.analysis.findings import finding_variants
    from evaluation.run.config import load_eval_config

    configs = Path(__file__).resolve().parents[1] / "configs" / "eval"
    full = load_eval_config(configs / "paper_study.yaml")
    subset = load_eval_config(configs / "paper_study_subset.yaml")
    assert set(subset.tasks) <= set(full.tasks)
    assert set(subset.variant_names) <= set(full.variant_names)
    for finding in FINDINGS:
        assert bool(finding_variants(finding, subset)) == bool(finding_variants(finding, full)), finding.key
    assert all(finding_variants(f, full) for f in FINDINGS if f.not_testable is None)


@pytest.mark.parametrize(("agreeing", "decided", "word"), [
    (0, 0, "undecided (too few successes)"), (3, 3, "reproduced"), (2, 3, "mostly reproduced"),
    (1, 2, "partly reproduced"), (1, 4, "partly reproduced"), (0, 4, "not reproduced")])
def test_conclusion_wording(agreeing, decided, word):
    from evaluation.analysis.findings import conclude

    assert conclude(agreeing, decided) == word


def test_conclusion_refuses_more_agreeing_than_decided():
    from evaluation.analysis.findings import conclude

    with pytest.raises(ValueError, match="agreeing=3, decided=2"):
        conclude(3, 2)


def test_in_short_states_each_finding_plainly(page):
    _, _, text = page
    short = _section(text, "In short")
    for finding in FINDINGS:
        [line] = [ln for ln in short.splitlines() if ln.startswith(f"- **{finding.study}**")]
        if finding.not_testable is not None:
            assert line.endswith("not testable by this suite.")
        elif finding.key in COVERED:
            assert any(w in line for w in ("**reproduced**", "**not reproduced**", "**mostly reproduced**",
                                           "**partly reproduced**", "**undecided")), line
        else:
            assert "not tested" in line
