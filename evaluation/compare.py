"""Rebuild a run's summary and report from its files, and compare two runs.

``vla-envs report RUN`` recomputes ``summary.csv``, ``summary.md`` and ``report.html`` from
``run.json`` (the config and the inference profiles) and ``episodes.parquet`` /
``steps.parquet``: nothing is re-run, so a report can be rebuilt after the code that draws it
changed, or on another machine.

``vla-envs compare RUN_A RUN_B`` puts the episodes of two runs (before and after fine-tuning,
two machines, two commits) in one summary. Variants are named ``<label>/<variant>``; A's base is
the base, each of B's variants is compared with A's variant of the same name (else with A's
base), and A's variants keep their own references. Comparisons are paired over the seeds both
runs solved, so two runs of the same config give zero paired differences. Its ``--out`` must be
new, empty or an earlier comparison's (``vla_envs.files.claim_output_folder``): ``--out A``,
which would replace A's own summary and report, is refused.

It also compares the runs step by step (``evaluation.analysis.reproducibility``): for every episode
(task, variant, seed) in both runs, the first step where their per-step hashes differ and what
differed first (physics, render, execution, policy, length, or identical), in
``divergence.csv``. Runs recorded without hashes get a message instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from evaluation.run.record import RunFolderError, read_run
from evaluation.runner import write_summary_and_report
from vla_envs.files import claim_output_folder, lock_output_folder

if TYPE_CHECKING:
    from evaluation.analysis.reproducibility import Divergence

# what `vla-envs compare` writes into its --out
COMPARE_FILES = ("summary.csv", "summary.md", "report.html", "divergence.csv")


def rebuild_report(run_dir: str | Path) -> list[dict]:
    """Rewrite a run's summary.csv, summary.md and report.html from its files."""
    run = read_run(run_dir)
    return write_summary_and_report(run.config, Path(run_dir), run.episodes, run.profiles, run.record)


def _labels(run_a: Path, run_b: Path) -> tuple[str, str]:
    a, b = run_a.resolve().name, run_b.resolve().name
    return (a, b) if a != b else ("A", "B")


def compare_runs(run_a: str | Path, run_b: str | Path, out: str | Path) -> tuple[list[dict], list[str], Divergence]:
    """Write summary.csv, summary.md, report.html and divergence.csv comparing two runs into
    ``out``; returns the summary rows, warnings (episode settings that differ between the runs)
    and the step-by-step comparison (``evaluation.analysis.reproducibility.compare_step_hashes``: its rows,
    or a message saying why there are none)."""
    from evaluation.analysis.reproducibility import compare_step_hashes, write_divergence_csv
    from evaluation.analysis.summary import markdown, summarize, write_csv
    from evaluation.pages.report import write_report

    run_a, run_b, out = Path(run_a), Path(run_b), Path(out)
    config_a, record_a, episodes_a, profiles_a = read_run(run_a)
    config_b, _, episodes_b, profiles_b = read_run(run_b)
    label_a, label_b = _labels(run_a, run_b)
    tasks = [t for t in config_a.tasks if t in config_b.tasks]
    if not tasks:
        raise RunFolderError(f"the runs share no task: {config_a.tasks} and {config_b.tasks}")
    settings_a, settings_b = config_a.episode_settings(), config_b.episode_settings()
    notes = [f"'{key}' differs between the runs: {json.dumps(settings_a.get(key))} vs {json.dumps(settings_b.get(key))}"
             for key in ("env", "execution", "latency") if settings_a.get(key) != settings_b.get(key)]

    def renamed(rows: list[dict], label: str) -> list[dict]:
        def forced(entries):  # teacher-forced entries name variants of the same run
            return [{**t, "variant": f"{label}/{t['variant']}"} for t in entries or []]

        return [{**row, "variant": f"{label}/{row['variant']}", "teacher_forced": forced(row.get("teacher_forced"))}
                for row in rows if row["task"] in tasks]

    episodes = renamed(episodes_a, label_a) + renamed(episodes_b, label_b)
    variants = [f"{label_a}/{v}" for v in config_a.variant_names] + [f"{label_b}/{v}" for v in config_b.variant_names]
    references = {f"{label_a}/{v}": f"{label_a}/{config_a.reference_of(v)}" for v in config_a.variant_names}
    for variant in config_b.variant_names:
        same = variant if variant in config_a.variant_names else config_a.base.name
        references[f"{label_b}/{variant}"] = f"{label_a}/{same}"
    profiles = {(task, f"{label_a}/{v}"): p for (task, v), p in profiles_a.items()}
    profiles |= {(task, f"{label_b}/{v}"): p for (task, v), p in profiles_b.items()}
    stats = config_a.stats
    rows = summarize(episodes, f"{label_a}/{config_a.base.name}", tasks, variants, profiles, stats.confidence,
                     stats.bootstrap_resamples, stats.bootstrap_seed, interval=stats.interval, references=references)
    title = f"{label_b} compared with {label_a}"
    notes_md = (f"Runs: {label_a} = {run_a}, {label_b} = {run_b}.", *(f"Note: {n}." for n in notes))
    divergence = compare_step_hashes(run_a, run_b)
    with lock_output_folder(out, "compare"):
        claim_output_folder(out, "compare", COMPARE_FILES)
        write_csv(rows, out / "summary.csv")
        (out / "summary.md").write_text(markdown(rows, stats.confidence, title, notes_md), encoding="utf-8")
        write_report(out / "report.html", rows, record_a.model_copy(update={"config": {**record_a.config, "name": title}}),
                     episodes)
        if divergence.rows:
            write_divergence_csv(divergence.rows, out / "divergence.csv")
        else:  # an earlier comparison's table in this folder is not these runs'
            (out / "divergence.csv").unlink(missing_ok=True)
    return rows, notes, divergence
