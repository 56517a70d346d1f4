"""The ``vla-envs`` command line."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from vla_envs.progress import progress_columns

app = typer.Typer(help="vla-envs: manipulation tasks that measure how efficiently a robot moves.", no_args_is_help=True)
console = Console()


@dataclass(frozen=True)
class RolloutRow:
    seed: int
    steps: int
    episode_return: float
    success: bool
    truncated: bool
    wall_s: float


@contextmanager
def _exit_on(*usage_errors: type[Exception], interrupted: str | None = None) -> Iterator[None]:
    """A usage error prints its message and exits 2; Ctrl-C prints ``interrupted`` and exits 130."""
    try:
        yield
    except usage_errors as exc:
        console.print(str(exc), style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        console.print(interrupted, style="yellow")
        raise typer.Exit(130) from None


@app.command()
def tasks(
    suite: str | None = typer.Option(None, "--suite", help="list this LIBERO suite's tasks (libero_spatial, "
                                     "libero_object, libero_goal, libero_10, libero_90)"),
) -> None:
    """List the registered tasks with their instructions and time limits, and LIBERO's suites."""
    from vla_envs.config import load_task_configs
    from vla_envs.libero.suites import SUITES

    if suite is not None:
        return _libero_tasks(suite)
    table = Table(title="vla-envs tasks")
    table.add_column("id", no_wrap=True)
    table.add_column("instruction")
    for column in ("time limit (steps)", "time limit (s)", "control (Hz)"):
        table.add_column(column, justify="right")
    for cfg in load_task_configs().values():
        table.add_row(
            cfg.env_id, cfg.instruction, str(cfg.max_episode_steps), f"{cfg.time_limit_s:g}", f"{cfg.control_freq:g}"
        )
    for entry in SUITES.values():
        table.add_row(f"vla_envs/{entry.title}-v0", f"{entry.title}, task_id=0..{entry.n_tasks - 1} "
                      f"(--suite {entry.name})",
                      str(entry.max_episode_steps), f"{entry.max_episode_steps / 20:g}", "20")
    console.print(table)


def _libero_tasks(suite: str) -> None:
    from vla_envs.libero.installation import LiberoUnavailable
    from vla_envs.libero.suites import SUITES, suite_tasks, task_name

    with _exit_on(ValueError, LiberoUnavailable):
        listed = suite_tasks(suite)
    entry = SUITES[suite]
    table = Table(title=f"{entry.title}: gym.make(\"vla_envs/{entry.title}-v0\", task_id=k), "
                        f"{entry.max_episode_steps} steps, 50 standard initial states each")
    table.add_column("k", justify="right")
    table.add_column("in eval configs", no_wrap=True)
    table.add_column("instruction")
    for task in listed:
        table.add_row(str(task.index), task_name(suite, task.index), task.instruction)
    console.print(table)


@app.command()
def rollout(
    task: str = typer.Option("Lift", help="task name, e.g. Lift, Stack, PickPlaceCan"),
    episodes: int = typer.Option(3, min=1, help="number of episodes"),
    seed: int = typer.Option(0, help="seed of the first episode; episode i uses seed + i"),
    obs_mode: str = typer.Option("state", help="state, rgb or state+rgb"),
    robot: str | None = typer.Option(None, help="the arm (Panda, UR5e, Kinova3, IIWA, Sawyer, Jaco, XArm7); default: the task's"),
    controller: str = typer.Option("OSC_POSE", help="arm controller"),
    max_steps: int | None = typer.Option(None, min=1, help="override the task's time limit (control steps)"),
) -> None:
    """Run seeded episodes with uniformly random actions and print a per-episode table."""
    import gymnasium as gym

    import vla_envs  # noqa: F401  (registers the tasks)
    from vla_envs.config import get_task_config

    cfg = get_task_config(task)
    env = gym.make(cfg.env_id, obs_mode=obs_mode, robot=robot, controller=controller, max_episode_steps=max_steps)
    limit = env.spec.max_episode_steps
    results: list[RolloutRow] = []
    columns = progress_columns("steps")
    try:
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task(f"{cfg.name} rollout", total=episodes * limit)
            for i in range(episodes):
                episode_seed = seed + i
                env.action_space.seed(episode_seed)
                env.reset(seed=episode_seed)
                start, steps, total, done = time.perf_counter(), 0, 0.0, False
                terminated = truncated = success = False
                while not done:
                    _, reward, terminated, truncated, info = env.step(env.action_space.sample())
                    steps += 1
                    total += reward
                    success = success or bool(info["is_success"])
                    done = terminated or truncated
                    progress.advance(bar)
                progress.advance(bar, limit - steps)  # an early success skips the rest of the budget
                results.append(
                    RolloutRow(episode_seed, steps, total, success, truncated, time.perf_counter() - start)
                )
    finally:
        env.close()

    table = Table(title=f"{cfg.env_id}: {episodes} episodes, random actions, '{cfg.instruction}'")
    for column in ("episode", "seed", "steps", "return", "success", "ended by", "wall (s)", "steps/s"):
        table.add_column(column, justify="right")
    for i, r in enumerate(results):
        table.add_row(
            str(i),
            str(r.seed),
            str(r.steps),
            f"{r.episode_return:.3f}",
            "yes" if r.success else "no",
            "time limit" if r.truncated else "success",
            f"{r.wall_s:.1f}",
            f"{r.steps / r.wall_s:.0f}",
        )
    console.print(table)
    rate = sum(r.success for r in results) / len(results)
    console.print(f"success rate {rate:.0%} over {len(results)} episodes")


@app.command("eval")
def eval_command(
    config: str = typer.Argument(..., help="evaluation config YAML, e.g. configs/eval/quickstart.yaml"),
    out: str | None = typer.Option(None, "--out", help="output folder (default: runs/eval/<config name>)"),
    workers: int = typer.Option(1, "--workers", min=1, help="episodes in parallel (local processes or Ray actors)"),
    backend: str = typer.Option("local", "--backend", help="local or ray"),
    resume: bool = typer.Option(False, "--resume", help="run only the episodes missing in --out"),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="ray.init address (e.g. auto); overrides the config's ray.address"
    ),
    serve: bool = typer.Option(False, "--serve", help="run the models in policy servers the run starts, the "
                               "simulators in the workers as their clients (the config's `serving`, or its defaults)"),
    max_batch: int | None = typer.Option(None, "--max-batch", min=1, help="with --serve: stack up to this many "
                                         "workers' queries into one forward pass (overrides serving.max_batch)"),
) -> None:
    """Evaluate a base policy and its variants on paired seeds; write tables, summary and report."""
    from pathlib import Path

    from evaluation import load_eval_config, run_eval
    from evaluation.backends.serving import ServingError
    from evaluation.run.config import ServingConfig
    from evaluation.runner import OutputExistsError
    from vla_envs.config import ConfigError

    if backend not in ("local", "ray"):
        console.print(f"[red]--backend {backend!r}: expected local or ray[/red]")
        raise typer.Exit(2)
    if max_batch is not None and not serve:
        console.print(f"[red]--max-batch {max_batch}: batching happens in the policy servers, expected --serve "
                      "with it[/red]")
        raise typer.Exit(2)
    with _exit_on(ConfigError):
        cfg = load_eval_config(config)
        if serve:
            serving = cfg.serving or ServingConfig()
            if max_batch is not None:
                serving = serving.model_copy(update={"max_batch": max_batch})
            cfg = cfg.model_copy(update={"serving": serving})
    out_dir = Path(out) if out is not None else Path("runs") / "eval" / Path(config).stem
    # ConfigError here: what only building the policies can show (a factory returning no Policy,
    # an unreachable policy server)
    with _exit_on(OutputExistsError, ConfigError, ServingError,
                  interrupted=f"interrupted: finished episodes are kept in {out_dir}/parts; rerun with --resume"):
        outcome = run_eval(
            cfg, out_dir, workers=workers, backend=backend, resume=resume, ray_address=ray_address,
            config_path=str(config), console=console,
        )
    table = Table(title=f"{cfg.name or Path(config).stem}: success and embodied cost (means over successes)")
    for column in ("task", "variant", "success", "completion (s)", "jerk", "energy (J)", "latency per call (ms)",
                   "latency model"):
        table.add_column(column, justify="right")
    from evaluation.analysis.summary import metric_column

    def fmt(value, spec: str) -> str:
        return "–" if value is None or value != value else format(value, spec)  # None or nan

    for row in outcome.summary:
        pct = "" if row["is_base"] else fmt(row[metric_column("completion_time_s", "pct_vs_base")], "+.0f").join((" (", "%)"))
        table.add_row(
            row["task"], row["variant"], f"{row['successes']}/{row['episodes']}",
            fmt(row[metric_column("completion_time_s", "mean")], ".2f") + pct, fmt(row[metric_column("jerk_ms", "mean")], ".3g"),
            fmt(row[metric_column("energy_j", "mean")], ".3g"), fmt(row["profile_latency_median_ms"], ".2f"),
            row["latency_model"],
        )
    console.print(table)
    console.print(f"{outcome.ran} episodes run ({outcome.units} planned); outputs in {out_dir}/ (summary.md, report.html)")


LEROBOT_SETUP = ('uv venv --python 3.12 --seed .venv-lerobot && .venv-lerobot/bin/pip install "lerobot[dataset]==0.6.1" '
                 "msgpack websockets (docs/integrations.md, also with pyenv or python3.12)")


def check_lerobot_python(option: str | None) -> None:
    """An ``ExportError`` naming the interpreter when ``--lerobot-python`` (else
    ``$VLA_ENVS_LEROBOT_PYTHON``) names none: LeRobot's writer would fail as subprocess's
    FileNotFoundError, after the replay had started."""
    import os
    import shutil

    from evaluation.export.lerobot_format import LEROBOT_PYTHON_ENV, ExportError

    if option:
        source, python = "--lerobot-python", option
    else:
        source, python = f"${LEROBOT_PYTHON_ENV}", os.environ.get(LEROBOT_PYTHON_ENV)
    if python and shutil.which(python) is None:
        raise ExportError(f"{source}={python}: no such executable file; expected the Python of an environment with "
                          f"lerobot installed (.venv-lerobot/bin/python), made with: {LEROBOT_SETUP}")


@app.command("export")
def export_command(
    run: str = typer.Argument(..., help="a finished run folder (run.json, episodes.parquet, steps.parquet), or "
                              "JointStateRecorder Parquet files (a file or a folder)"),
    format: str = typer.Option(..., "--format", help="lerobot (LeRobotDataset v3) or minari"),  # noqa: A002
    out: str | None = typer.Option(None, "--out", help="output folder (default: runs/export/<run>_<format>)"),
    obs_mode: str | None = typer.Option(None, "--obs-mode", help="observations to render (default: the run's)"),
    variant: list[str] = typer.Option(None, "--variant", help="only this variant (repeatable; default: all)"),
    lerobot_python: str | None = typer.Option(
        None, "--lerobot-python", help="lerobot: the Python of LeRobot's environment (default: $VLA_ENVS_LEROBOT_PYTHON, "
        "else this one)"),
) -> None:
    """Re-render recorded episodes from seed + actions (checked bit for bit) into datasets, one per task."""
    from pathlib import Path

    from evaluation.export.lerobot_format import ExportError
    from evaluation.export.replay import ReplayError
    from evaluation.export.run import export_run
    from evaluation.run.record import RunFolderError

    if obs_mode is not None and obs_mode not in ("state", "rgb", "state+rgb"):
        console.print(f"--obs-mode {obs_mode!r}: expected state, rgb or state+rgb", style="red", markup=False)
        raise typer.Exit(2)
    out_dir = Path(out) if out is not None else Path("runs") / "export" / f"{Path(run).name}_{format}"
    with _exit_on(RunFolderError, ExportError, ReplayError):
        if format == "lerobot":
            check_lerobot_python(lerobot_python)
        results = export_run(run, format, out_dir, obs_mode, variant or None, console=console,
                             lerobot_python=lerobot_python)
    for row in results:
        name = row.get("dataset_id", row["path"])
        console.print(f"{row['group']}: {row['episodes']} episodes, {row['frames']} frames -> {name}", markup=False)
    if format == "minari":
        console.print(f"load with MINARI_DATASETS_PATH={out_dir.resolve()} and minari.load_dataset(<id>)", markup=False)


@app.command("report")
def report_command(
    run: str = typer.Argument(..., help="a finished run folder (holds run.json and episodes.parquet)"),
) -> None:
    """Rebuild a run's summary.md, summary.csv and report.html from its files (nothing re-runs)."""
    from evaluation.compare import rebuild_report
    from evaluation.run.record import RunFolderError

    with _exit_on(RunFolderError):
        rows = rebuild_report(run)
    console.print(f"rebuilt {run}/summary.md, summary.csv and report.html ({len(rows)} rows)")


@app.command("compare")
def compare_command(
    run_a: str = typer.Argument(..., help="the reference run folder (its base is the base)"),
    run_b: str = typer.Argument(..., help="the run compared with it (each variant against A's of the same name)"),
    out: str | None = typer.Option(None, "--out", help="output folder (default: runs/compare/<A>_vs_<B>)"),
) -> None:
    """Compare two finished runs, paired on the seeds both solved: summary.md/.csv and report.html;
    and step by step: the first step where each episode's hashes differ, and why (divergence.csv)."""
    from pathlib import Path

    from evaluation.analysis.summary import metric_column
    from evaluation.compare import compare_runs
    from evaluation.run.record import RunFolderError
    from vla_envs.files import OutputFolderError

    out_dir = Path(out) if out is not None else Path("runs") / "compare" / f"{Path(run_a).name}_vs_{Path(run_b).name}"
    with _exit_on(RunFolderError, OutputFolderError):
        rows, notes, divergence = compare_runs(run_a, run_b, out_dir)
    for note in notes:
        console.print(f"note: {note}", style="yellow", markup=False)
    table = Table(title=f"{Path(run_b).name} vs {Path(run_a).name}: paired % change against the reference")
    for column in ("task", "variant", "vs", "success", "pairs", "completion", "jerk", "energy"):
        table.add_column(column, justify="right")
    for row in rows:
        if row["is_base"]:
            continue
        table.add_row(row["task"], row["variant"], row["compared_to"], f"{row['successes']}/{row['episodes']}",
                      str(row["paired_n"]), *(_pct(row[metric_column(m, "paired_pct")]) for m in ("completion_time_s", "jerk_ms", "energy_j")))
    console.print(table)
    _print_divergence(divergence, Path(run_a).name, Path(run_b).name)
    also = ", divergence.csv" if divergence.rows else ""
    console.print(f"outputs in {out_dir}/ (summary.md, summary.csv, report.html{also})")


DIVERGENCE_SHOWN = 40  # episodes listed on screen; divergence.csv has them all


def _print_divergence(divergence, name_a: str, name_b: str) -> None:
    """The step-by-step comparison: one line per episode (the divergent ones first when there
    are many), then the count per kind."""
    from evaluation.analysis.reproducibility import counts

    if not divergence.rows:
        console.print(f"note: {divergence.message}", style="yellow", markup=False, soft_wrap=True)
        return
    rows = divergence.rows
    shown = rows if len(rows) <= DIVERGENCE_SHOWN else [r for r in rows if r["kind"] != "identical"][:DIVERGENCE_SHOWN]
    if shown:
        table = Table(title=f"{name_b} vs {name_a}, step by step: the first step whose hashes differ")
        for column in ("task", "variant", "seed", "first divergent step", "kind", "steps A", "steps B", "what differed"):
            table.add_column(column, justify="left" if column == "what differed" else "right")
        for r in shown:
            step = "–" if r["first_divergent_step"] is None else str(r["first_divergent_step"])
            table.add_row(r["task"], r["variant"], str(r["seed"]), step, r["kind"], str(r["steps_a"]), str(r["steps_b"]),
                          r["detail"])
        console.print(table)
    if len(shown) < len(rows):
        console.print(f"({len(rows) - len(shown)} more episodes in divergence.csv)", markup=False)
    summary = ", ".join(f"{n} {kind}" for kind, n in counts(rows).items())
    episodes = f"{len(rows)} episode{'s' if len(rows) != 1 else ''}"
    console.print(f"step by step: {episodes} in both runs: {summary}", markup=False)


def _pct(value) -> str:
    return "–" if value is None or value != value else f"{value:+.1f}%"


@app.command("findings")
def findings_command(
    run: str = typer.Argument(..., help="a finished run folder (holds run.json and episodes.parquet), e.g. of "
                              "configs/eval/paper_study.yaml"),
    output: str = typer.Option("docs/findings.md", "--output", help="the Markdown file to write"),
) -> None:
    """Re-test the paper's headline findings on a run's variants: a Markdown page with verdicts."""
    from evaluation.pages.findings_markdown import FindingsOutputError, write_findings
    from evaluation.run.record import RunFolderError

    with _exit_on(RunFolderError, FindingsOutputError):
        path, results = write_findings(run, output)
    tested = sum(bool(r.variants) for r in results)
    figure = path.with_suffix(".png")
    also = f" and {figure}" if figure.exists() else ""
    console.print(f"wrote {path}{also}: {tested} of {len(results)} findings tested by this run's variants", markup=False)


@app.command("finetune")
def finetune_command(
    config: str = typer.Argument(..., help="fine-tuning config YAML, e.g. configs/finetune/lift_expert_residual.yaml"),
    out: str | None = typer.Option(None, "--out", help="run folder (default: runs/finetune/<config name>)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the run folder's latest checkpoint"),
    steps: int | None = typer.Option(None, "--steps", min=1, help="override training.total_steps"),
) -> None:
    """Train a residual on a frozen base policy with the efficiency-shaped reward (PPO or SAC)."""
    from pathlib import Path

    from finetuning.config import load_finetune_config
    from finetuning.trainer import FinetuneError, run
    from vla_envs.config import ConfigError

    with _exit_on(ConfigError):
        cfg = load_finetune_config(config)
    if steps is not None:
        cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"total_steps": steps})})
    out_dir = Path(out) if out is not None else Path("runs") / "finetune" / Path(config).stem
    with _exit_on(FinetuneError,
                  interrupted=f"interrupted: the last checkpoint is in {out_dir}/checkpoints; rerun with --resume"):
        residual = run(cfg, out_dir, resume=resume)
    console.print(f"residual: {residual}; evaluate it with policy: {{kind: residual, checkpoint: {residual}}}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
