"""Task configuration files (``configs/tasks/*.yaml``): schema and loading.

A task file is validated when it is loaded, so a typo fails at ``import vla_envs`` or
``load_task_config`` with the file, the field, the offending value and what was expected,
never half-way through a run.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, Field, PositiveFloat, PositiveInt, ValidationError

from vla_envs.errors import VlaEnvsError
from vla_envs.strict_config import StrictConfig

# Environment variable that points the suite at another folder of task files.
CONFIG_DIR_ENV = "VLA_ENVS_CONFIG_DIR"


def shipped_config_dir() -> Path:
    """The configs/ folder this code came with: the checkout's top-level ``configs/`` (a clone or
    an editable install), or the copy a wheel ships as ``vla_envs/configs`` (pyproject.toml)."""
    checkout = Path(__file__).resolve().parent.parent / "configs"
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("vla_envs") / "configs"))


ModelT = TypeVar("ModelT", bound=BaseModel)


class ConfigError(VlaEnvsError, ValueError):
    """A configuration file is missing, unreadable or invalid."""


def _check_control_freq(value: float) -> float:
    from vla_envs.timing import substeps_per_control_step

    substeps_per_control_step(value)  # a ValueError unless it divides the physics rate
    return value


def _check_robot(value: str) -> str:
    from vla_envs.robots import check_robot

    return check_robot(value)


# The field types every config that sets an arm or a control rate uses (task YAMLs, eval and
# fine-tuning configs), so each rule is written once.
ControlFreqHz = Annotated[PositiveFloat, AfterValidator(_check_control_freq)]  # divides the physics rate
RobotName = Annotated[str, AfterValidator(_check_robot)]  # one of vla_envs.robots.SUPPORTED_ROBOTS


class CameraConfig(StrictConfig):
    """Which robosuite cameras feed the image observations."""

    image: str = Field("agentview", min_length=1, description="third-person camera -> obs['image']")
    wrist_image: str = Field(
        "robot0_eye_in_hand", min_length=1, description="eye-in-hand camera -> obs['wrist_image']"
    )


class TaskConfig(StrictConfig):
    """One manipulation task: which robosuite environment, what to say, how long it may take."""

    # StrictConfig: a quoted "20" in a task YAML is text, not a frequency (as gym.make's keywords)

    name: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$", description="registered as vla_envs/<name>-v0")
    robosuite_env: str = Field(min_length=1, description="robosuite environment class name")
    robot: RobotName = Field("Panda", description="the default arm (vla_envs.robots.SUPPORTED_ROBOTS); gym.make(robot=) overrides it")
    instruction: str = Field(min_length=1, description="natural-language instruction for the task")
    max_episode_steps: PositiveInt = Field(description="time limit in control steps")
    control_freq: ControlFreqHz = Field(20.0, description="control frequency in Hz")
    cameras: CameraConfig = CameraConfig()
    render_camera: str = Field("frontview", min_length=1, description="camera used by render()")
    env_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="extra keyword arguments for robosuite.make"
    )

    @property
    def env_id(self) -> str:
        return f"vla_envs/{self.name}-v0"

    @property
    def time_limit_s(self) -> float:
        return self.max_episode_steps / self.control_freq


def config_dir() -> Path:
    """The folder that holds ``tasks/`` (``$VLA_ENVS_CONFIG_DIR`` or the repository's ``configs/``)."""
    return Path(os.environ.get(CONFIG_DIR_ENV, shipped_config_dir()))


def format_validation_error(source: str | Path, error: ValidationError, what: str = "config") -> str:
    """One line per problem: ``<file>: field '<a.b>' = <value>: <what was expected>``, under
    ``invalid <what> <file>:``."""
    lines = [f"invalid {what} {source}:"]
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "<root>"
        value = problem.get("input")
        if problem["type"] == "missing":
            lines.append(f"  {source}: field '{field}' is missing (required)")
        elif problem["type"] == "value_error":  # our validators' own words, already "...: expected ..."
            lines.append(f"  {source}: field '{field}' = {value!r}: {problem['ctx']['error']}")
        else:
            lines.append(f"  {source}: field '{field}' = {value!r}: expected {problem['msg'].lower()}")
    return "\n".join(lines)


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``3e-4`` as the number YAML 1.2 (and every user) means:
    YAML 1.1 wants a dot (``3.0e-4``) and otherwise yields the text "3e-4", which the configs'
    strict number fields would refuse."""


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> Any:
    """Safely load a YAML file (no tags that build objects), turning I/O and syntax errors into
    ``ConfigError``."""
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.load(handle, Loader=_SafeLoader)  # noqa: S506 - a SafeLoader subclass
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path} is not UTF-8 text (byte {exc.start} is {exc.object[exc.start:exc.start + 1]!r}): "
                          "expected a YAML file") from None


def load_config(path: str | Path, schema: type[ModelT]) -> ModelT:
    """``safe_load`` a YAML file and validate it against a pydantic ``schema``; ``ConfigError``
    naming the file, field, value and expectation otherwise."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path}: expected a mapping of fields, got {type(raw).__name__}")
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None


def load_task_config(path: str | Path) -> TaskConfig:
    """Load and validate one task file."""
    return load_config(path, TaskConfig)


def load_task_configs(directory: str | Path | None = None) -> dict[str, TaskConfig]:
    """All task files under ``<directory>/tasks`` keyed by task name, sorted by name."""
    tasks_dir = Path(directory) / "tasks" if directory is not None else config_dir() / "tasks"
    if not tasks_dir.is_dir():
        raise ConfigError(f"task config folder {tasks_dir} does not exist (set ${CONFIG_DIR_ENV})")
    configs: dict[str, TaskConfig] = {}
    for path in sorted(tasks_dir.glob("*.yaml")):
        cfg = load_task_config(path)
        if cfg.name in configs:
            raise ConfigError(f"config {path}: field 'name' = {cfg.name!r}: expected a unique task name")
        configs[cfg.name] = cfg
    return dict(sorted(configs.items()))


def check_task_names(names: list[str]) -> list[str]:
    """``names`` when each is a registered task (``ValueError`` naming the first that is not)."""
    known = load_task_configs()
    for name in names:
        if name not in known:
            raise ValueError(f"unknown task {name!r}, expected one of {sorted(known)}")
    return names


def get_task_config(task: str | os.PathLike | TaskConfig) -> TaskConfig:
    """A task's config by name (``"Lift"``), by file path, or passed through."""
    if isinstance(task, TaskConfig):
        return task
    if isinstance(task, os.PathLike):
        task = os.fspath(task)
    if not isinstance(task, str):
        raise ConfigError(f"task={task!r}: expected a task name (one of {sorted(load_task_configs())}), "
                          "a task YAML path or a TaskConfig")
    if task.endswith((".yaml", ".yml")):
        return load_task_config(task)
    configs = load_task_configs()
    if task not in configs:
        raise ConfigError(f"unknown task {task!r}: expected one of {sorted(configs)}")
    return configs[task]
