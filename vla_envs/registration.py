"""Registers every task in ``configs/tasks/`` as ``vla_envs/<Task>-v0``."""

from __future__ import annotations

import gymnasium as gym

from vla_envs.config import TaskConfig, load_task_configs

ENTRY_POINT = "vla_envs.robosuite_env:RobosuiteEnv"
LIBERO_ENTRY_POINT = "vla_envs.libero.env:LiberoEnv"


def register_tasks(configs: dict[str, TaskConfig] | None = None) -> list[str]:
    """Register the tasks (idempotent); returns their ids."""
    configs = load_task_configs() if configs is None else configs
    ids = []
    for cfg in configs.values():
        if cfg.env_id not in gym.registry:
            gym.register(
                id=cfg.env_id,
                entry_point=ENTRY_POINT,
                max_episode_steps=cfg.max_episode_steps,
                kwargs={"task": cfg.name},
            )
        ids.append(cfg.env_id)
    return ids


def register_libero() -> list[str]:
    """Register one id per LIBERO suite, ``vla_envs/LIBERO-Spatial-v0`` and so on (a task is
    ``gym.make(id, task_id=k)``); imports nothing of LIBERO, which is needed only at ``make``."""
    from vla_envs.libero.suites import SUITES

    ids = []
    for suite in SUITES.values():
        env_id = f"vla_envs/{suite.title}-v0"
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=LIBERO_ENTRY_POINT, max_episode_steps=suite.max_episode_steps,
                         kwargs={"suite": suite.name})
        ids.append(env_id)
    return ids


def expand_task_names(names: list[str]) -> list[str]:
    """Evaluation task names with each LIBERO suite title (``LIBERO-Spatial``) replaced by its
    tasks (``LIBERO-Spatial-0`` ... ``LIBERO-Spatial-9``)."""
    from vla_envs.libero.suites import suite_by_title, task_name

    expanded = []
    for name in names:
        suite = suite_by_title(name) if isinstance(name, str) else None
        expanded += [task_name(suite.name, k) for k in range(suite.n_tasks)] if suite else [name]
    return expanded


def check_eval_task_names(names: list[str]) -> list[str]:
    """``names`` when each is one of the suite's tasks (``Lift``) or a LIBERO task
    (``LIBERO-Spatial-3``); a ``ValueError`` naming the first that is not."""
    from vla_envs.config import load_task_configs
    from vla_envs.libero.suites import SUITES, parse_task_name

    known = load_task_configs()
    for name in names:
        if name not in known and parse_task_name(name) is None:
            raise ValueError(f"unknown task {name!r}, expected one of {sorted(known)}, a LIBERO task "
                             f"(<suite>-<k>, e.g. LIBERO-Spatial-3) or a LIBERO suite "
                             f"({', '.join(s.title for s in SUITES.values())})")
    return names


def is_libero_task(name: str) -> bool:
    from vla_envs.libero.suites import parse_task_name

    return parse_task_name(name) is not None


def task_env(name: str) -> tuple[str, dict]:
    """The Gymnasium id and ``gym.make`` keyword arguments of an evaluation task name: one of the
    suite's tasks (``Lift`` -> ``vla_envs/Lift-v0``) or a LIBERO task (``LIBERO-Spatial-3`` ->
    ``vla_envs/LIBERO-Spatial-v0`` with ``task_id=3``)."""
    from vla_envs.config import get_task_config
    from vla_envs.libero.suites import SUITES, parse_task_name

    parsed = parse_task_name(name)
    if parsed is not None:
        suite, index = parsed
        return f"vla_envs/{SUITES[suite].title}-v0", {"task_id": index}
    return get_task_config(name).env_id, {}


def registered_ids() -> list[str]:
    """Ids of the suite's environments currently in Gymnasium's registry."""
    return sorted(env_id for env_id in gym.registry if env_id.startswith("vla_envs/"))
