"""Evaluation config files (``configs/eval/*.yaml``): schema and loading.

A config names the tasks, the seeds, the environment settings, a base policy and its variants,
how chunks are executed, the latency model and what to record. It is validated in full when
loaded (``load_eval_config``), so a typo fails with the file, the field, the value and what was
expected before any episode runs. Example::

    tasks: [Lift]
    episodes: 10                # per task and variant
    seeds: {start: 0}           # or an explicit list: [0, 1, 2]
    env: {obs_mode: state, max_episode_steps: 120}
    base: {name: expert, policy: {kind: expert}}
    variants:
      - {name: expert_100ms, latency: {fixed_ms: 100}}
      - {name: dct4, compression: {action_codec: {dct_keep: 4}}}
    execution: {schedule: open_loop, execute_steps: 4}
    latency: frozen             # or measured, or {fixed_ms: 50}
    recording: {record_steps: true, record_substeps: false}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from evaluation.run.devices import DeviceModel
from evaluation.schema import INTERVAL_METHODS
from policies.specs import (  # noqa: F401 - re-exported: configs' policy specs were declared here
    ExpertPolicySpec,
    FactoryPolicySpec,
    HttpPolicySpec,
    OpenPIPolicySpec,
    PolicySpec,
    ResidualPolicySpec,
    check_factory_importable,
    header_base_spec,
    underlying_spec,
)
from vla_envs.config import ConfigError, ControlFreqHz, RobotName, load_config
from vla_envs.libero.suites import SETTLE_STEPS
from vla_envs.strict_config import StrictConfig

# numpy's legacy seeding (np.random.seed) takes 32-bit seeds; larger ones fail mid-run
MAX_SEED = 2**32 - 1
# Variant names become file names and table keys.
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"




class FixedLatency(StrictConfig):
    """A fixed inference time in milliseconds (models a target device)."""

    fixed_ms: float = Field(ge=0.0, allow_inf_nan=False)


class DeviceLatency(StrictConfig):
    """A device model (``evaluation.run.devices``): FLOPs per call / effective throughput + overhead."""

    device: str = Field(description="a name in configs/latency/devices.yaml or in the config's 'devices'")


# "profiled" (the variant's median latency per call from profile() on this machine) and
# {device: NAME} are resolved once before the episodes (EvalConfig.resolved_latency_ms) and then
# applied like a fixed latency
LatencySpec = Literal["frozen", "measured", "profiled"] | FixedLatency | DeviceLatency


def needs_resolved_latency(latency: LatencySpec) -> bool:
    """Whether the latency model's value is resolved once before the episodes (``profiled``,
    ``{device: NAME}``; recorded in run.json as ``config.resolved_latency_ms``)."""
    return latency == "profiled" or isinstance(latency, DeviceLatency)


class ExecutionConfig(StrictConfig):
    """How action chunks become control steps (``policies.ChunkExecutor``)."""

    schedule: Literal["open_loop", "temporal_ensemble", "async"] = Field(
        "open_loop", description="async: query while the current chunk still has query_when_remaining actions"
    )
    execute_steps: int | None = Field(
        None, ge=1, description="open-loop k (capped at each policy's chunk size); default: the chunk size"
    )
    ensemble_coefficient: float = Field(0.01, ge=0.0)
    on_empty: Literal["hold_position", "repeat_last"] = Field(
        "hold_position",
        description="while waiting for a chunk once the previous one is used up: an arm command of no "
        "motion (gripper kept), or the last action again (under a delta controller the arm keeps moving)",
    )

    query_when_remaining: int | None = Field(
        None, ge=0, description="async only: start the next query when this many actions of the chunk are left"
    )

    @model_validator(mode="after")
    def _async_settings(self):
        if self.schedule == "async" and self.query_when_remaining is None:
            raise ValueError("schedule 'async' needs 'query_when_remaining' (actions left when the next query "
                             "starts), expected an integer >= 0")
        if self.schedule != "async" and self.query_when_remaining is not None:
            raise ValueError(f"'query_when_remaining' = {self.query_when_remaining} applies to schedule 'async', "
                             f"not {self.schedule!r}")
        return self

    def executor_kwargs(self) -> dict:
        """The ``policies.ChunkExecutor`` keyword arguments: an async schedule queries through an
        open-loop executor (``on_empty`` and ``query_when_remaining`` belong to the latency loop)."""
        kwargs = self.model_dump(exclude_none=True, exclude={"on_empty", "query_when_remaining"})
        if self.schedule == "async":
            kwargs["schedule"] = "open_loop"
        return kwargs


class BaseConfig(StrictConfig):
    name: str = Field("base", pattern=_NAME_PATTERN)
    policy: PolicySpec


class VariantConfig(StrictConfig):
    """A variant: the base policy compressed (``compression``), or another policy (``policy``);
    with neither, the base policy itself under other ``execution`` / ``latency`` settings."""

    name: str = Field(pattern=_NAME_PATTERN)
    compression: dict[str, Any] | None = None
    policy: PolicySpec | None = None
    execution: ExecutionConfig | None = None
    latency: LatencySpec | None = None
    compare_to: str | None = Field(
        None, description="the variant its % changes and paired comparison are against (default: the base)"
    )

    @field_validator("compression")
    @classmethod
    def _valid_compression(cls, value):
        if value is not None:
            from policies.compression import CompressionSpec

            CompressionSpec.model_validate(value)  # a ValidationError names the nested field
        return value

    @model_validator(mode="after")
    def _one_source(self):
        if self.compression is not None and self.policy is not None:
            raise ValueError(f"variant {self.name!r}: expected either 'compression' or 'policy', not both")
        return self


class LiberoEnvConfig(StrictConfig):
    """How LIBERO tasks are run (``vla_envs.libero.env``); the defaults are openpi's and LeRobot's
    LIBERO evaluations."""

    settle_steps: int = Field(SETTLE_STEPS, ge=0, le=1000, description="no-op control steps after each reset, outside the "
                              "episode and its metrics (objects dropped into the scene come to rest)")
    init_state_from_seed: bool = Field(True, description="seeds 0-49 are LIBERO's 50 standard initial states of each "
                                       "task; other seeds draw placements")
    robosuite_controller: Literal["1.4", "1.5"] = Field(
        "1.4", description="step the arm and gripper as robosuite 1.4 did (LIBERO's demonstrations) or as 1.5 does")


class EnvConfig(StrictConfig):
    """Keyword arguments for ``gym.make`` (the same for every task; ``libero`` for LIBERO tasks)."""

    obs_mode: Literal["state", "rgb", "state+rgb"] = "state"
    image_size: int = Field(128, ge=8, le=1024)
    robot: RobotName | None = Field(None, description="the arm (vla_envs.robots.SUPPORTED_ROBOTS); default: each task's (Panda)")
    controller: str = "OSC_POSE"
    control_freq: ControlFreqHz | None = None
    max_episode_steps: int | None = Field(None, ge=1, description="override every task's time limit")
    render_quality: Literal["lean", "full"] = "lean"
    libero: LiberoEnvConfig = LiberoEnvConfig()

    def make_kwargs(self, obs_mode: str | None = None) -> dict:
        """``gym.make`` keyword arguments for these settings (another ``obs_mode`` changes only
        what is rendered, not the simulation: an export re-renders episodes with it)."""
        kwargs = {"obs_mode": obs_mode or self.obs_mode, "image_size": self.image_size,
                  "controller": self.controller, "render_quality": self.render_quality}
        if self.robot is not None:
            kwargs["robot"] = self.robot
        if self.control_freq is not None:
            kwargs["control_freq"] = self.control_freq
        if self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = self.max_episode_steps
        return kwargs

    def env_for(self, task: str, obs_mode: str | None = None) -> tuple[str, dict]:
        """The Gymnasium id and ``gym.make`` keyword arguments of ``task`` under these settings."""
        from vla_envs.registration import is_libero_task, task_env

        env_id, kwargs = task_env(task)
        if is_libero_task(task):
            kwargs.update(self.libero.model_dump())
        return env_id, {**kwargs, **self.make_kwargs(obs_mode)}

    @field_validator("controller")
    @classmethod
    def _known_controller(cls, value: str) -> str:
        from vla_envs.controllers import check_controller

        return check_controller(value)



class SeedStart(StrictConfig):
    start: int = Field(0, ge=0)


class VideoConfig(StrictConfig):
    """MP4 videos of chosen episodes (needs the ``imageio-ffmpeg`` package)."""

    seeds: list[int] = Field(min_length=1, description="seeds to film")
    variants: list[str] | None = Field(None, description="variants to film (default: all)")
    size: int = Field(256, ge=16, le=1024, description="frame side in pixels")


class RecordingConfig(StrictConfig):
    record_steps: bool = Field(True, description="write steps.parquet (per control step joint state)")
    record_substeps: bool = Field(False, description="also every physics substep's torque and velocity")
    videos: VideoConfig | None = None


class ProfileConfig(StrictConfig):
    """``policies.profiling.profile`` settings for the inference metrics beside the summary."""

    enabled: bool = True
    repeats: int = Field(20, ge=1)
    warmup: int = Field(3, ge=0)


class StatsConfig(StrictConfig):
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    bootstrap_resamples: int = Field(2000, ge=100)
    bootstrap_seed: int = 0
    # with few paired successes the percentile interval is too narrow (evaluation.analysis.stats):
    # "percentile" reproduces runs summarized before expanded_bca was the default
    interval: Literal[tuple(INTERVAL_METHODS)] = "expanded_bca"  # type: ignore[valid-type]


class ReportConfig(StrictConfig):
    """Which episode's joint traces the report plots (default: the base's first success)."""

    trace_variant: str | None = None
    trace_seed: int | None = None
    trace_task: str | None = None


class RayConfig(StrictConfig):
    address: str | None = Field(None, description="ray.init address; None starts a local Ray instance")
    num_cpus_per_worker: float = Field(1.0, gt=0.0)
    runtime_env: dict[str, Any] | None = Field(None, description="ray.init runtime_env (e.g. working_dir, pip)")


class ServingConfig(StrictConfig):
    """Run the models in policy servers that the evaluation starts, and the simulators in the
    workers as the servers' clients (``evaluation.backends.serving``): one server per served variant holds
    the model once, however many workers there are, and with ``max_batch`` > 1 stacks concurrent
    workers' queries into one forward pass (for a policy that declares ``Policy.batchable``)."""

    variants: list[str] | None = Field(
        None, description="the variants to serve (default: every variant whose policy runs in process; the "
        "scripted expert reads the worker's simulator and openpi/http policies are served already, so those stay)")
    max_batch: int = Field(1, ge=1, description="1: unbatched, and episodes equal the in-process run's bit for bit")
    max_wait_ms: float = Field(5.0, ge=0.0, description="how long a query waits for others to join its batch")
    host: str = Field("127.0.0.1", description="the servers' bind address (loopback by default; a Ray cluster "
                      "of several machines needs one the workers reach, e.g. 0.0.0.0)")
    torch_threads: int | None = Field(None, ge=1, description="torch threads in each server (default: torch_threads)")
    start_timeout_s: float = Field(300.0, gt=0.0, description="how long a server may take to load its model")
    ray_resources: dict[str, float] = Field(
        default_factory=dict, description="--backend ray: the resources a server's actor asks for (e.g. {GPU: 1}, "
        "or a custom resource that only the model's node has)")


class EvalConfig(StrictConfig):
    """One evaluation: every variant on the same seeds of every task."""

    name: str | None = None
    tasks: list[str] = Field(min_length=1)
    episodes: int | None = Field(None, ge=1, description="episodes per task and variant")
    seeds: list[int] | SeedStart = SeedStart()
    env: EnvConfig = EnvConfig()
    base: BaseConfig
    variants: list[VariantConfig] = Field(default_factory=list)
    execution: ExecutionConfig = ExecutionConfig()
    latency: LatencySpec = "frozen"
    devices: dict[str, DeviceModel] = Field(
        default_factory=dict, description="device models for latency {device: NAME}, added to (or overriding) "
        "configs/latency/devices.yaml",
    )
    resolved_latency_ms: dict[str, float] | None = Field(
        None,
        description="'<task>/<variant>' -> ms for variants with latency 'profiled' or {device: NAME}; filled in "
        "by the run (and recorded in run.json) before the episodes, or given to pin them (e.g. measured on a target device)",
    )
    recording: RecordingConfig = RecordingConfig()
    profile: ProfileConfig = ProfileConfig()
    stats: StatsConfig = StatsConfig()
    report: ReportConfig = ReportConfig()
    ray: RayConfig = RayConfig()
    serving: ServingConfig | None = Field(None, description="serve the models from policy servers the run starts")
    policy_seed: int = Field(0, description="torch seed before building each policy (random init is reproducible)")
    # One thread per worker by default: episodes are the parallel unit, and torch's default
    # (every core) slows a small model 10-20x when other processes compete for the cores.
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads in each worker (and for profiling)")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: list[str]) -> list[str]:
        from vla_envs.registration import check_eval_task_names, expand_task_names

        value = check_eval_task_names(expand_task_names(value))
        if len(set(value)) != len(value):
            raise ValueError(f"tasks {value} repeat a task, expected each task once")
        return value

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, value):
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty seed list, expected at least one seed")
            if len(set(value)) != len(value) or min(value) < 0 or max(value) > MAX_SEED:
                raise ValueError(f"seeds {value}, expected distinct integers from 0 to {MAX_SEED}")
        return value

    @field_validator("variants")
    @classmethod
    def _unique_names(cls, value: list[VariantConfig]) -> list[VariantConfig]:
        names = [v.name for v in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"variant names {duplicates} repeat, expected unique names")
        return value

    @model_validator(mode="after")
    def _cross_checks(self):
        if isinstance(self.seeds, list):
            if self.episodes is not None and self.episodes != len(self.seeds):
                raise ValueError(
                    f"'episodes' = {self.episodes} but 'seeds' lists {len(self.seeds)} seeds, "
                    "expected them to agree (or give only one of them)"
                )
        elif self.episodes is None:
            raise ValueError("'episodes' is missing, expected it when 'seeds' is a {start: N} mapping")
        elif self.seeds.start + self.episodes - 1 > MAX_SEED:
            raise ValueError(f"'seeds.start' = {self.seeds.start} with {self.episodes} episodes reaches seed "
                             f"{self.seeds.start + self.episodes - 1}, expected seeds up to {MAX_SEED}")
        self._experts_exist()
        if self.env.libero != LiberoEnvConfig():  # run.json holds the defaults of every config
            from vla_envs.registration import is_libero_task

            if not any(is_libero_task(task) for task in self.tasks):
                raise ValueError(f"'env.libero' applies to LIBERO tasks, and 'tasks' = {self.tasks} has none: "
                                 "expected a LIBERO task (LIBERO-Spatial-3) or suite (LIBERO-Spatial), or no 'env.libero'")
        names = self.variant_names
        if self.base.name in names[1:]:
            raise ValueError(f"variant name {self.base.name!r} is the base's name, expected a different name")
        videos = self.recording.videos
        if videos is not None:
            unknown = sorted(set(videos.variants or []) - set(names))
            if unknown:
                raise ValueError(f"'recording.videos.variants' names {unknown}, expected some of {names}")
            missing = sorted(set(videos.seeds) - set(self.seed_list))
            if missing:
                raise ValueError(f"'recording.videos.seeds' = {missing} are not evaluated, expected some of {self.seed_list}")
        for variant in self.variants:
            if variant.compare_to is not None and variant.compare_to not in names:
                raise ValueError(f"variant {variant.name!r}: compare_to = {variant.compare_to!r}, expected one of {names}")
            if variant.compare_to == variant.name:
                raise ValueError(f"variant {variant.name!r}: compare_to names itself, expected another variant")
        known_devices = self.device_table()
        for name in names:
            latency = self.latency_for(name)
            if isinstance(latency, DeviceLatency) and latency.device not in known_devices:
                raise ValueError(f"variant {name!r}: latency device {latency.device!r} is not in "
                                 f"configs/latency/devices.yaml or 'devices', expected one of {sorted(known_devices)}")
        if self.serving is not None and self.serving.variants is not None:
            for name in self.serving.variants:
                if name not in names:
                    raise ValueError(f"'serving.variants' names {name!r}, expected some of {names}")
                why = self.unservable_reason(name)
                if why is not None:
                    raise ValueError(f"'serving.variants' names {name!r}, which cannot be served: {why}")
        report = self.report
        if report.trace_variant is not None and report.trace_variant not in names:
            raise ValueError(f"'report.trace_variant' = {report.trace_variant!r}, expected one of {names}")
        if report.trace_task is not None and report.trace_task not in self.tasks:
            raise ValueError(f"'report.trace_task' = {report.trace_task!r}, expected one of {self.tasks}")
        return self

    def _experts_exist(self) -> None:
        from policies.experts import EXPERTS, has_expert

        specs = [("base.policy", self.base.policy)] + [(f"variants.{v.name}.policy", v.policy) for v in self.variants]
        for field, spec in specs:
            while isinstance(spec, ResidualPolicySpec) and spec.base is not None:
                spec = spec.base
            if isinstance(spec, ExpertPolicySpec):
                missing = [task for task in self.tasks if not has_expert(task)]
                if missing:
                    raise ValueError(f"'{field}' is {{kind: expert}}, but there is no scripted expert for "
                                     f"{missing}: expected tasks among {sorted(EXPERTS)} or LIBERO tasks whose goal "
                                     f"is (On|In object target)")

    # -- derived --------------------------------------------------------------------------
    def episode_settings(self) -> dict:
        """The settings that shape episodes (what ``--resume`` requires to be unchanged):
        everything but profiling, statistics, reporting, Ray and thread settings."""
        # serving is where the model runs, not what it computes: unbatched, the episodes are the
        # in-process run's bit for bit (tested); batched, as with other torch_threads, the last bits
        settings = self.model_dump(mode="json", exclude={"name", "profile", "stats", "report", "ray", "torch_threads",
                                                         "serving"})
        if settings["env"]["robot"] is None:  # each task's arm: what runs made before env.robot existed used
            del settings["env"]["robot"]
        return settings

    @property
    def seed_list(self) -> list[int]:
        """The seeds every (task, variant) runs, in order."""
        if isinstance(self.seeds, list):
            return list(self.seeds)
        return list(range(self.seeds.start, self.seeds.start + int(self.episodes)))

    @property
    def variant_names(self) -> list[str]:
        """The base first, then the variants."""
        return [self.base.name, *(v.name for v in self.variants)]

    def variant(self, name: str) -> VariantConfig | None:
        """The variant called ``name`` (``None`` for the base)."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        if name == self.base.name:
            return None
        raise KeyError(f"unknown variant {name!r}, expected one of {self.variant_names}")

    def reference_of(self, name: str) -> str:
        """The variant ``name`` is compared with: its ``compare_to``, else the base (itself for the base)."""
        variant = self.variant(name)
        if variant is None:
            return name
        return variant.compare_to or self.base.name

    def execution_for(self, name: str) -> ExecutionConfig:
        variant = self.variant(name)
        return variant.execution if variant is not None and variant.execution is not None else self.execution

    def device_table(self) -> dict[str, DeviceModel]:
        """The shipped device models with the config's own ``devices`` over them."""
        from evaluation.run.devices import shipped_devices

        return {**shipped_devices(), **self.devices}

    def resolved_variants(self) -> list[str]:
        """The variants whose latency is resolved once before the episodes (``profiled``, ``{device: NAME}``)."""
        return [name for name in self.variant_names if needs_resolved_latency(self.latency_for(name))]

    def policy_owner(self, name: str) -> str:
        """The variant whose policy ``name`` runs: the base for a variant with neither its own
        policy nor a compression (it changes only execution or latency), else ``name`` itself."""
        variant = self.variant(name)
        if variant is not None and variant.policy is None and variant.compression is None:
            return self.base.name
        return name

    def policy_spec_of(self, name: str) -> PolicySpec:
        """The spec the variant's policy is built from (the base's, for a compressed variant or one
        that only changes execution or latency)."""
        variant = self.variant(name)
        return variant.policy if variant is not None and variant.policy is not None else self.base.policy

    def unservable_reason(self, name: str) -> str | None:
        """Why the variant's policy cannot run in a policy server, or ``None`` when it can."""
        spec = self.policy_spec_of(name)
        if isinstance(spec, (OpenPIPolicySpec, HttpPolicySpec)):
            return f"its policy is {{kind: {spec.kind}}}, served already"
        if isinstance(underlying_spec(spec), ExpertPolicySpec):
            return "it is (or rests on) the scripted expert, which reads the worker's simulator, not the observation"
        return None

    def served_variants(self) -> list[str]:
        """The variants whose policies the run serves (``serving``): those named, else every one
        that can be served."""
        if self.serving is None:
            return []
        if self.serving.variants is not None:
            return [n for n in self.variant_names if n in self.serving.variants]
        return [n for n in self.variant_names if self.unservable_reason(n) is None]

    def latency_for(self, name: str) -> LatencySpec:
        variant = self.variant(name)
        return variant.latency if variant is not None and variant.latency is not None else self.latency


def load_eval_config(path: str | Path, check_imports: bool = True) -> EvalConfig:
    """Load and validate an evaluation config; ``ConfigError`` naming file, field and value.

    With ``check_imports`` the policy factories are imported too, and a video request is
    checked against the installed MP4 encoder, so neither fails after episodes have run.
    """
    config = load_config(path, EvalConfig)
    try:
        validate_runtime(config, check_imports)
    except ConfigError as exc:
        raise ConfigError(f"invalid config {path}: {exc}") from None
    return config


# the observation entries of each obs_mode (vla_envs.robosuite_env)
OBS_KEYS_BY_MODE = {"state": ("state",), "rgb": ("image", "wrist_image", "proprio"),
                    "state+rgb": ("state", "image", "wrist_image", "proprio")}


def _check_residual_observations(field: str, spec: ResidualPolicySpec, obs_mode: str) -> None:
    from policies.residual import read_residual_spec

    wanted = read_residual_spec(spec.checkpoint).obs_keys
    missing = sorted(set(wanted) - set(OBS_KEYS_BY_MODE[obs_mode]))
    if missing:
        raise ConfigError(
            f"field '{field}': the residual reads observation entries {missing}, which env.obs_mode "
            f"{obs_mode!r} does not give; expected an obs_mode with {list(wanted)}"
        )


def validate_runtime(config: EvalConfig, check_imports: bool = True) -> None:
    """Checks that need imports: factories resolve, the MP4 encoder exists when videos are asked for."""
    if check_imports:
        specs = [("base.policy", config.base.policy)]
        specs += [(f"variants.{v.name}.policy", v.policy) for v in config.variants if v.policy is not None]
        for field, spec in list(specs):
            if isinstance(spec, ResidualPolicySpec):
                _check_residual_observations(field, spec, config.env.obs_mode)
                specs.append((f"{field}.base", spec.base_spec()))
        for field, spec in specs:
            if isinstance(spec, FactoryPolicySpec):
                try:
                    check_factory_importable(spec)
                except ConfigError as exc:
                    raise ConfigError(f"field '{field}': {exc}") from None
    if config.recording.videos is not None:
        from evaluation.run.video import check_video_support

        try:
            check_video_support()
        except RuntimeError as exc:
            raise ConfigError(f"field 'recording.videos': {exc}") from None
