"""Fine-tuning configs (``configs/finetune/*.yaml``): schema and loading.

Everything is validated when the file is loaded, including the algorithm's hyper-parameter
names (against the SB3 class's constructor) and the reward config, so a typo fails before any
environment starts. Example::

    task: Lift
    env: {obs_mode: state, max_episode_steps: 150}
    base: {policy: {kind: expert}}                 # or {factory: "module:callable"}
    residual: {scale: [0.5, 0.5, 0.5, 0, 0, 0, 0], obs_keys: [state], include_base_action: true}
    reward: finetune_smooth                        # configs/rewards/<name>.yaml, a path, or inline
    algorithm: {name: PPO, hyperparameters: {n_steps: 256}, policy_kwargs: {net_arch: [64, 64]}}
    training: {total_steps: 200000, num_envs: 2, seed: 0, checkpoint_every: 20000}
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from evaluation.run.config import EnvConfig, ExecutionConfig
from policies.specs import ExpertPolicySpec, FactoryPolicySpec, PolicySpec, check_factory_importable
from vla_envs.config import ConfigError, check_task_names, load_config
from vla_envs.strict_config import StrictConfig
from wrappers.efficiency_reward import RewardConfig, load_reward_config

ALGORITHMS = ("PPO", "SAC")
# set by the trainer itself, so not accepted among the hyper-parameters
_RESERVED = {"policy", "env", "seed", "device", "verbose", "tensorboard_log", "policy_kwargs", "_init_setup_model"}

_POSITIVE = (Annotated[float, Field(gt=0.0, allow_inf_nan=False)], "a number > 0")
_NON_NEGATIVE = (Annotated[float, Field(ge=0.0, allow_inf_nan=False)], "a number >= 0")
_FRACTION = (Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)], "a number from 0 to 1")
_COUNT = (Annotated[int, Field(ge=1)], "an integer >= 1")
_BOOL = (bool, "true or false")
# The values SB3's PPO and SAC accept for their numeric hyper-parameters (strict: "abc" or true is
# no number). SB3 checks few of them, and only once the envs have started; a name not listed here
# reaches SB3 as written. Schedules (callables) cannot be written in YAML, so numbers only.
HYPERPARAMETER_VALUES: dict[str, tuple[Any, str]] = {
    "learning_rate": _POSITIVE,
    # PPO normalises advantages over a minibatch: one sample per env gives a NaN loss
    "n_steps": (Annotated[int, Field(ge=2)], "an integer >= 2"),
    "batch_size": _COUNT,
    "n_epochs": _COUNT,
    "gamma": _FRACTION,
    "gae_lambda": _FRACTION,
    "clip_range": _POSITIVE,
    "clip_range_vf": (_POSITIVE[0] | None, "a number > 0 or null"),
    "normalize_advantage": _BOOL,
    "ent_coef": (_NON_NEGATIVE[0] | Annotated[str, Field(pattern=r"^auto(_\d+(\.\d+)?)?$")],
                 "a number >= 0, or for SAC 'auto' / 'auto_<initial value>'"),
    "vf_coef": _NON_NEGATIVE,
    "max_grad_norm": _POSITIVE,
    "target_kl": (_POSITIVE[0] | None, "a number > 0 or null"),
    "buffer_size": _COUNT,
    "learning_starts": (Annotated[int, Field(ge=0)], "an integer >= 0"),
    "tau": (Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)], "a number in (0, 1]"),
    "train_freq": _COUNT,
    "gradient_steps": (Annotated[int, Field(ge=-1)], "an integer >= 1, or -1 (as many as env steps)"),
    "target_update_interval": _COUNT,
    "use_sde": _BOOL,
    "sde_sample_freq": (Annotated[int, Field(ge=-1)], "an integer >= 1, or -1 (only at the start of a rollout)"),
    "stats_window_size": _COUNT,
}
_HYPERPARAMETER_ADAPTERS = {name: TypeAdapter(kind) for name, (kind, _) in HYPERPARAMETER_VALUES.items()}


def check_hyperparameter(algorithm: str, name: str, value: Any) -> None:
    """``ValueError`` naming the hyper-parameter, its value and what SB3 accepts, if it is not that."""
    adapter = _HYPERPARAMETER_ADAPTERS.get(name)
    if adapter is None:
        return
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError:
        raise ValueError(f"{algorithm} hyperparameter {name} = {value!r}: expected {HYPERPARAMETER_VALUES[name][1]}") from None


class BaseSection(StrictConfig):
    """The frozen base policy and how its chunks are executed."""

    policy: PolicySpec
    execution: ExecutionConfig = ExecutionConfig()

    @field_validator("execution")
    @classmethod
    def _synchronous(cls, value: ExecutionConfig) -> ExecutionConfig:
        if value.schedule == "async":  # training runs in frozen time: there is no latency to hide
            raise ValueError("schedule 'async' is for evaluation under a latency model, expected 'open_loop' "
                             "or 'temporal_ensemble' for the base a residual is trained on")
        return value


class ResidualSection(StrictConfig):
    """The residual action: ``clip(base + scale * clip(residual, -1, 1), low, high)``."""

    scale: float | list[float] = Field(0.5, description="largest correction per action dimension")
    obs_keys: list[str] = Field(default_factory=lambda: ["state"], min_length=1)
    include_base_action: bool = True

    @field_validator("scale")
    @classmethod
    def _non_negative(cls, value):
        values = value if isinstance(value, list) else [value]
        if not values or any(not (v >= 0.0 and v != float("inf")) for v in values):
            raise ValueError(f"scale {value}: expected finite numbers >= 0")
        if max(values) == 0.0:
            raise ValueError(f"scale {value}: every dimension is 0, so the residual could change nothing")
        return value


class AlgorithmSection(StrictConfig):
    name: Literal["PPO", "SAC"] = "PPO"
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the SB3 class")
    policy_kwargs: dict[str, Any] = Field(default_factory=dict, description="net_arch, log_std_init, ...")
    normalize_observations: bool = Field(True, description="VecNormalize the agent's observations")
    obs_clip: float = Field(10.0, gt=0.0)

    @model_validator(mode="after")
    def _known_hyperparameters(self):
        from stable_baselines3 import PPO, SAC

        cls = {"PPO": PPO, "SAC": SAC}[self.name]
        accepted = set(inspect.signature(cls.__init__).parameters) - _RESERVED - {"self"}
        unknown = sorted(set(self.hyperparameters) - accepted)
        if unknown:
            raise ValueError(f"unknown {self.name} hyperparameters {unknown}: expected some of {sorted(accepted)}")
        for name, value in self.hyperparameters.items():
            check_hyperparameter(self.name, name, value)
        net_arch = self.policy_kwargs.get("net_arch", [64, 64])
        if not (isinstance(net_arch, list) and net_arch and all(isinstance(n, int) and n > 0 for n in net_arch)):
            raise ValueError(f"policy_kwargs.net_arch = {net_arch!r}: expected a list of positive layer widths "
                             "(the same network for actor and critic)")
        activation = self.policy_kwargs.get("activation_fn", "tanh" if self.name == "PPO" else "relu")
        if activation not in ("tanh", "relu"):
            raise ValueError(f"policy_kwargs.activation_fn = {activation!r}: expected 'tanh' or 'relu'")
        unknown_kwargs = sorted(set(self.policy_kwargs) - {"net_arch", "activation_fn", "log_std_init", "ortho_init"})
        if unknown_kwargs:
            raise ValueError(f"unknown policy_kwargs {unknown_kwargs}: expected net_arch, activation_fn, log_std_init, ortho_init")
        return self

    @property
    def activation(self) -> Literal["tanh", "relu"]:
        return self.policy_kwargs.get("activation_fn", "tanh" if self.name == "PPO" else "relu")


class TrainingSection(StrictConfig):
    total_steps: int = Field(ge=1, description="environment steps, over all parallel envs")
    num_envs: int = Field(1, ge=1)
    vec_env: Literal["dummy", "subproc"] = "dummy"
    seed: int = Field(0, ge=0, description="seeds the algorithm and the envs (env i starts from env_seed_start + seed + i)")
    env_seed_start: int = Field(100_000, ge=0, description="keeps training episodes clear of evaluation seeds 0..")
    checkpoint_every: int = Field(10_000, ge=1, description="environment steps between checkpoints")
    keep_checkpoints: int = Field(2, ge=1)
    torch_threads: int = Field(1, ge=1)
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?|auto)$")

    @field_validator("device")
    @classmethod
    def _device_present(cls, value: str) -> str:
        if value.startswith("cuda"):
            import torch

            count = torch.cuda.device_count()
            index = int(value.partition(":")[2] or 0)
            if index >= count:
                raise ValueError(f"device {value!r}: this machine has {count} CUDA device(s), expected 'cpu', 'auto'"
                                 + (f" or cuda:0 to cuda:{count - 1}" if count else ""))
        return value


class FinetuneConfig(StrictConfig):
    """One fine-tuning run: a residual on a frozen base policy, trained with a shaped reward."""

    name: str | None = None
    task: str
    env: EnvConfig = EnvConfig()
    base: BaseSection
    residual: ResidualSection = ResidualSection()
    reward: str | RewardConfig = Field("default", description="configs/rewards/<name>.yaml, a YAML path, or inline")
    algorithm: AlgorithmSection = AlgorithmSection()
    training: TrainingSection

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        return check_task_names([value])[0]

    @field_validator("reward")
    @classmethod
    def _loadable_reward(cls, value):
        if isinstance(value, str):
            resolve_reward(value)  # a missing or invalid file fails now
        return value

    @model_validator(mode="after")
    def _cross_checks(self):
        from evaluation.run.config import OBS_KEYS_BY_MODE

        available = OBS_KEYS_BY_MODE[self.env.obs_mode]
        missing = sorted(set(self.residual.obs_keys) - set(available))
        if missing:
            raise ValueError(f"residual.obs_keys {missing} are not observations of env.obs_mode "
                             f"{self.env.obs_mode!r}, expected some of {list(available)}")
        if isinstance(self.residual.scale, list):
            from vla_envs.config import get_task_config
            from vla_envs.controllers import action_dims

            robot = self.env.robot or get_task_config(self.task).robot
            dims = action_dims(self.env.controller, robot)
            if len(self.residual.scale) != dims:
                raise ValueError(f"residual.scale lists {len(self.residual.scale)} numbers, expected one number or {dims} "
                                 f"(one per action dimension of {self.env.controller} on the {robot})")
        if isinstance(self.base.policy, ExpertPolicySpec):
            from policies.experts import EXPERTS

            if self.task not in EXPERTS:
                raise ValueError(f"base.policy {{kind: expert}}: no scripted expert for task {self.task!r}, "
                                 f"expected one of {sorted(EXPERTS)}")
        return self

    def reward_config(self) -> RewardConfig:
        return self.reward if isinstance(self.reward, RewardConfig) else resolve_reward(self.reward)

    def resume_settings(self) -> dict:
        """What must not change between an interrupted run and its ``--resume`` (everything but
        the step budget, the checkpoint cadence and the name)."""
        dumped = self.model_dump(mode="json", exclude={"name"})
        for key in ("total_steps", "checkpoint_every", "keep_checkpoints"):
            dumped["training"].pop(key)
        return dumped


def resolve_reward(value: str) -> RewardConfig:
    """A reward config by shipped name (``configs/rewards/<name>.yaml``) or by path."""
    from vla_envs.config import shipped_config_dir

    path = Path(value)
    if not path.suffix:
        path = shipped_config_dir() / "rewards" / f"{value}.yaml"
    if not path.is_file():
        shipped = sorted(p.stem for p in (shipped_config_dir() / "rewards").glob("*.yaml"))
        raise ValueError(f"reward {value!r}: no file {path}; expected a YAML path or one of {shipped}")
    return load_reward_config(path)


def load_finetune_config(path: str | Path) -> FinetuneConfig:
    """Load and validate a fine-tuning config; ``ConfigError`` naming file, field and value."""
    config = load_config(path, FinetuneConfig)
    policy = config.base.policy
    if isinstance(policy, FactoryPolicySpec):
        try:
            check_factory_importable(policy)
        except ConfigError as exc:
            raise ConfigError(f"invalid config {path}: field 'base.policy': {exc}") from None
    return config
