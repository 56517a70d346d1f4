"""``run_eval``: plan the work units, run the missing ones on a backend, write the outputs.

The output folder::

    run.json           config, seeds, package versions, git commit, renderer, machine, status
    parts/             one file per finished episode (see evaluation.run.parts)
    episodes.parquet   one row per episode          } consolidated from parts/ once every
    steps.parquet      one row per control step     } episode has finished
    summary.md/.csv    per task and variant
    report.html        plots embedded
    videos/*.mp4       filmed episodes
    .vla-envs.json     the folder's manifest, .vla-envs.lock its lock (``vla_envs.files``):
                       one run at a time, and never into a folder of files it did not write

Interrupting (Ctrl-C) or a crash keeps every finished episode in ``parts/``; ``resume=True``
runs only the missing ones, and the consolidated tables never hold a row twice.
"""

from __future__ import annotations

import time
import warnings
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq

from evaluation.run.config import EvalConfig
from evaluation.run.parts import PartStore
from evaluation.run.plan import RunPlan, WorkUnit, plan_units
from evaluation.run.record import read_run_record, write_run_record
from evaluation.schema import CallRecord, RunRecord
from vla_envs.errors import VlaEnvsError
from vla_envs.files import OutputFolderError, claim_output_folder, folder_entries, lock_output_folder

Backend = Literal["local", "ray"]


class OutputExistsError(VlaEnvsError, RuntimeError):
    """The output folder already holds episodes of a run (use resume, or another folder)."""


@dataclass(frozen=True)
class EvalOutcome:
    out_dir: Path
    units: int  # planned episodes
    ran: int  # episodes run by this call (the rest were already there)
    step_rows: int
    summary: list[dict]


def _check_output(store: PartStore, config: EvalConfig, resume: bool, previous: RunRecord | None) -> None:
    """The output folder must be new, empty, or a run of this config (``--resume``; ``previous``:
    its record): a run never overwrites files it did not write, nor mixes two experiments' episodes."""
    run_json = store.out_dir / "run.json"
    if not resume:
        if store.done_keys():
            raise OutputExistsError(
                f"{store.out_dir} already holds {len(store.done_keys())} finished episodes: "
                "expected an empty folder, or --resume to finish that run"
            )
        _claim(store.out_dir)
        return
    if previous is None and folder_entries(store.out_dir):
        raise OutputExistsError(f"--resume: {store.out_dir} holds no run.json, so it is not an evaluation run to resume")
    if previous is not None and previous.episode_settings is not None:
        settings, current = previous.episode_settings, config.episode_settings()
        if settings != current:
            changed = sorted(k for k in set(settings) | set(current) if settings.get(k) != current.get(k))
            raise OutputExistsError(
                f"--resume: the config differs from the one in {run_json} in {changed}; expected the same "
                "episode settings (resuming with others would mix episodes of two experiments)"
            )
    _claim(store.out_dir)


# what a run writes at the top of its folder (a folder holding only these may be reused)
_RUN_FILES = frozenset({"run.json", "parts", "videos", "episodes.parquet", "steps.parquet", "summary.md",
                        "summary.csv", "report.html"})


def _claim(out_dir: Path) -> None:
    """Record the folder as this command's (``vla_envs.files.MANIFEST``); folders of runs from
    before the manifest are recognised by their names alone."""
    try:
        claim_output_folder(out_dir, "eval", _RUN_FILES, legacy=_RUN_FILES)
    except OutputFolderError as exc:
        raise OutputExistsError(str(exc)) from None


@contextmanager
def _locked(out_dir: str | Path):
    """Hold the output folder's lock: two evaluations writing one folder would both run every
    episode and overwrite each other's tables."""
    try:
        with lock_output_folder(out_dir, "eval"):
            yield
    except OutputFolderError as exc:  # only the lock's: _check_output raises OutputExistsError
        raise OutputExistsError(str(exc)) from None


def _iterate(config: EvalConfig, units: list[WorkUnit], backend: Backend, workers: int, ray_address: str | None,
             plan: RunPlan):
    if backend == "ray":
        from evaluation.backends.ray_backend import run_ray

        return run_ray(config, units, workers, ray_address, plan)
    if backend != "local":
        raise ValueError(f"backend={backend!r}: expected 'local' or 'ray'")
    if workers == 1:
        from evaluation.backends.workers import run_sequential

        return run_sequential(config, units, plan)
    from evaluation.backends.workers import run_processes

    return run_processes(config, units, workers, plan)


@contextmanager
def _policy_servers(config: EvalConfig, backend: Backend, workers: int, ray_address: str | None, record: dict):
    """The run's policy servers (``evaluation.backends.serving``) while the block runs: ``None`` without
    ``serving``, else their ``Endpoints``; ``record`` receives their URLs and final statistics."""
    if config.serving is None:
        yield None
        return
    from evaluation.backends import serving

    record.update(max_batch=config.serving.max_batch, max_wait_ms=config.serving.max_wait_ms, backend=backend)
    plans = serving.plan_servers(config)
    if backend != "ray":
        with serving.local_servers(config, plans, record) as endpoints:
            yield endpoints
        return
    from evaluation.backends.ray_backend import import_ray, init_ray

    cpus = config.serving.ray_resources.get("CPU", 1) * len(plans)
    started_here = init_ray(config, workers, ray_address, extra_cpus=cpus)
    try:
        with serving.ray_servers(config, plans, record) as endpoints:
            yield endpoints
    finally:
        if started_here:
            import_ray().shutdown()


def resolve_latencies(config: EvalConfig, previous: RunRecord | None = None) -> EvalConfig:
    """The config with ``resolved_latency_ms`` filled in for its ``latency: profiled`` and
    ``{device: NAME}`` variants: the values of the run being resumed, else those the config
    pins, else computed now (``evaluation.run.inference.resolve_latency_ms``: ``profile()`` on the
    first seed's observation with the config's torch threads). Episodes then apply them
    deterministically."""
    names = config.resolved_variants()
    if not names:
        return config
    wanted = [f"{task}/{name}" for task in config.tasks for name in names]
    if previous is not None:
        recorded = previous.resolved_latency_ms()
        if all(key in recorded for key in wanted):
            return config.model_copy(update={"resolved_latency_ms": {k: recorded[k] for k in wanted}})
    pinned = config.resolved_latency_ms or {}
    if all(key in pinned for key in wanted):
        return config
    from evaluation.run.inference import resolve_latency_ms

    missing = sorted({key.split("/", 1)[1] for key in wanted if key not in pinned}, key=names.index)
    computed = resolve_latency_ms(config, missing)
    return config.model_copy(update={"resolved_latency_ms": {**computed, **pinned}})


def check_policies(config: EvalConfig, plan: RunPlan | None = None) -> None:
    """Build every (task, variant) policy and its executor once, here in the driver, so a factory
    that returns something other than a ``Policy`` or execution settings a policy's chunk size
    cannot take (``execute_steps``, ``query_when_remaining``) fail before any episode runs
    (``ConfigError`` naming the variant). ``plan``: the run's (``RunPlan``); without one, the
    config's latencies must be resolved (``resolve_latencies``)."""
    from evaluation.run.episode import EpisodeRunner
    from vla_envs.config import ConfigError

    runner = EpisodeRunner(config, plan)
    try:
        for task in config.tasks:
            for variant in config.variant_names:
                try:
                    runner.executor(task, variant)
                except Exception as exc:  # noqa: BLE001 - any failure to build is reported, naming the variant
                    detail = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
                    raise ConfigError(f"variant {variant!r} on {task}: {detail}") from None
    finally:
        runner.close()


def run_episodes(
    config: EvalConfig,
    out_dir: str | Path,
    *,
    workers: int = 1,
    backend: Backend = "local",
    resume: bool = False,
    ray_address: str | None = None,
    config_path: str | None = None,
    progress: bool = True,
    console=None,
    max_episodes: int | None = None,
) -> tuple[list[WorkUnit], int]:
    """Run the episodes still missing in ``out_dir``; returns (planned units, episodes run).

    ``max_episodes`` stops after that many (an interruption, for tests and for trying a config).
    With ``serving`` in the config, the policy servers run while the episodes do
    (``evaluation.backends.serving``), and each call's entry in run.json records their statistics.
    """
    store = PartStore(out_dir)
    store.out_dir.mkdir(parents=True, exist_ok=True)
    previous = _previous_record(store.out_dir / "run.json", resume)
    config = resolve_latencies(config, previous)
    _check_output(store, config, resume, previous)
    with ExitStack() as stack:
        serving: dict = {}
        endpoints = stack.enter_context(_policy_servers(config, backend, workers, ray_address, serving))
        # every variant's latency and server, resolved once here; the workers receive them as they are
        plan = RunPlan.for_config(config, endpoints)
        check_policies(config, plan)
        return _run_units(config, store, stack, serving, plan, previous, workers=workers, backend=backend,
                          ray_address=ray_address, config_path=config_path, progress=progress, console=console,
                          max_episodes=max_episodes)


def _run_units(config: EvalConfig, store: PartStore, servers: ExitStack, serving: dict, plan: RunPlan,
               previous: RunRecord | None, *, workers: int, backend: Backend, ray_address: str | None,
               config_path: str | None, progress: bool, console, max_episodes: int | None) -> tuple[list[WorkUnit], int]:
    """``run_episodes`` once the policy servers run (``servers`` stops them; ``serving`` then
    holds their statistics, which run.json records)."""
    from evaluation.run.record import run_record
    from vla_envs.progress import episode_progress

    units = plan_units(config)
    done, damaged = store.completed(expect_steps=config.recording.record_steps)
    for message in damaged:
        warnings.warn(message, stacklevel=2)
        if console is not None:
            console.print(message, style="yellow", markup=False)
    todo = [u for u in units if u.key not in done]
    if max_episodes is not None:
        todo = todo[:max_episodes]
    record = run_record(config, config_path, backend, workers)
    record.episode_settings = config.episode_settings()
    record.status, record.started, record.episodes_planned = "running", time.strftime("%Y-%m-%dT%H:%M:%S%z"), len(units)
    # Every `vla-envs eval` call on the folder keeps its own record: a run filled over several
    # --resume calls (or machines) can then say how long it took and where.
    call = CallRecord(started=record.started, backend=backend, workers=workers, hostname=record.machine.hostname,
                      cpu_count=record.machine.cpu_count, episodes_run=0, episodes_wall_s=0.0)
    record.calls = [*(previous.calls if previous is not None else []), call]
    run_json = store.out_dir / "run.json"
    write_run_record(record, run_json)
    ran = 0
    start = time.perf_counter()
    try:
        with episode_progress(progress, console) or nullcontext() as bar:
            task_id = None
            if bar is not None:
                already = sum(u.key in done for u in units)
                task_id = bar.add_task("eval", total=len(units), completed=already, last="")
            for unit, result in _iterate(config, todo, backend, workers, ray_address, plan):
                store.write(unit, result)
                ran += 1
                if bar is not None:
                    mark = "ok" if result.row.success else "fail"
                    bar.update(task_id, advance=1, last=f"{unit.task} {unit.variant} seed {unit.seed}: {mark}")
    except BaseException as exc:
        record.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"failed: {exc!r}"
        record.episodes_done, record.episodes_wall_s = len(store.done_keys()), time.perf_counter() - start
        call.episodes_run, call.episodes_wall_s, call.status = ran, record.episodes_wall_s, record.status
        _stop_servers(servers, serving, call)
        write_run_record(record, run_json)
        raise
    record.episodes_done, record.episodes_wall_s = len(store.done_keys()), time.perf_counter() - start
    call.episodes_run, call.episodes_wall_s = ran, record.episodes_wall_s
    _stop_servers(servers, serving, call)
    record.status = "episodes complete" if record.episodes_done >= len(units) else "partial"
    write_run_record(record, run_json)
    return units, ran


def _stop_servers(servers: ExitStack, serving: dict, call: CallRecord) -> None:
    """Stop the run's policy servers, and record in this call's entry of run.json how they were
    set and what they served (``GET /stats`` of each, taken before it stopped)."""
    try:
        servers.close()
    finally:
        if serving:
            call.serving = serving


def _previous_record(run_json: Path, resume: bool) -> RunRecord | None:
    """The record of the run being resumed (None for a fresh run)."""
    if not resume or not run_json.is_file():
        return None
    return read_run_record(run_json)


def finalize(config: EvalConfig, out_dir: str | Path, units: list[WorkUnit]) -> tuple[list[dict], int]:
    """Consolidate the parts and write the summary, the report and the final run.json."""
    from evaluation.run.inference import profile_variants

    store = PartStore(out_dir)
    missing = [u.key for u in units if u.key not in store.done_keys()]
    if missing:
        raise RuntimeError(f"{len(missing)} episodes are missing (e.g. {missing[0]}): expected a complete run")
    episodes, step_rows = store.consolidate(units)
    profiles = profile_variants(config)
    out = store.out_dir
    record = read_run_record(out / "run.json")
    record.profiles = {f"{task}/{variant}": p for (task, variant), p in profiles.items()}
    record.status, record.finished, record.step_rows = "complete", time.strftime("%Y-%m-%dT%H:%M:%S%z"), step_rows
    write_run_record(record, out / "run.json")
    rows = write_summary_and_report(config, out, episodes.to_pylist(), profiles, record)
    return rows, step_rows


def write_summary_and_report(config: EvalConfig, out: Path, episodes: list[dict], profiles: dict,
                             record: RunRecord) -> list[dict]:
    """summary.csv, summary.md and report.html of a run folder, from its episode rows and
    profiles (the same for a fresh run and for ``vla-envs report``)."""
    from evaluation.analysis.summary import markdown, summarize, write_csv
    from evaluation.pages.report import write_report

    stats = config.stats
    rows = summarize(
        episodes,
        config.base.name,
        config.tasks,
        config.variant_names,
        profiles,
        stats.confidence,
        stats.bootstrap_resamples,
        stats.bootstrap_seed,
        interval=stats.interval,
        references={name: config.reference_of(name) for name in config.variant_names},
    )
    write_csv(rows, out / "summary.csv")
    (out / "summary.md").write_text(markdown(rows, stats.confidence, config.name or "Evaluation summary"), encoding="utf-8")
    write_report(out / "report.html", rows, record, episodes, _traces(config, out, episodes, rows))
    return rows


def _traces(config: EvalConfig, out: Path, episodes: list[dict], rows: list[dict]) -> dict:
    """task -> (base steps, variant steps, titles) of one seed: ``report.trace_variant`` (default:
    per task, the variant with the largest significant paired change, else the first variant)
    and ``report.trace_seed`` (default: the first seed both solved)."""
    from evaluation.pages.report import most_changed_variant

    if not config.recording.record_steps:
        return {}
    traces = {}
    chosen = config.report
    base = config.base.name
    first = config.variant_names[1] if len(config.variant_names) > 1 else base
    available = set(pq.read_schema(out / "steps.parquet").names) if (out / "steps.parquet").is_file() else set()
    columns = [c for c in ("time_s", "qvel", "torque", "action", "queried", "chunk_start") if c in available]
    for task in config.tasks:
        if chosen.trace_task is not None and chosen.trace_task != task:
            continue
        variant = chosen.trace_variant or most_changed_variant([r for r in rows if r["task"] == task]) or first
        by_seed = {(e["variant"], int(e["seed"])): e for e in episodes if e["task"] == task}
        seeds = config.seed_list if chosen.trace_seed is None else [chosen.trace_seed]
        both = [s for s in seeds if by_seed.get((base, s), {}).get("success") and by_seed.get((variant, s), {}).get("success")]
        seed = (both or seeds)[0]
        if (base, seed) not in by_seed or (variant, seed) not in by_seed:
            continue

        def steps(name: str):
            return pq.read_table(out / "steps.parquet", columns=columns,
                                 filters=[("task", "=", task), ("variant", "=", name), ("seed", "=", seed)])

        def title(name: str) -> str:
            return f"{task} / {name} / seed {seed} ({'success' if by_seed[(name, seed)]['success'] else 'failure'})"

        traces[task] = (steps(base), steps(variant), title(base), title(variant))
    return traces


def run_eval(
    config: EvalConfig,
    out_dir: str | Path,
    *,
    workers: int = 1,
    backend: Backend = "local",
    resume: bool = False,
    ray_address: str | None = None,
    config_path: str | None = None,
    progress: bool = True,
    console=None,
) -> EvalOutcome:
    """Run (or finish) an evaluation and write every output (module docstring), holding the
    output folder's lock (``OutputExistsError`` when another run holds it)."""
    with _locked(out_dir):
        units, ran = run_episodes(
            config,
            out_dir,
            workers=workers,
            backend=backend,
            resume=resume,
            ray_address=ray_address,
            config_path=config_path,
            progress=progress,
            console=console,
        )
        rows, step_rows = finalize(config, out_dir, units)  # the summary and report need no latency values
    return EvalOutcome(Path(out_dir), len(units), ran, step_rows, rows)
