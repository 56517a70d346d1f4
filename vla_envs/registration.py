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


def registered_ids() -> list[str]:
    """Ids of the suite's environments currently in Gymnasium's registry."""
    return sorted(env_id for env_id in gym.registry if env_id.startswith("vla_envs/"))
