"""Registers every task in ``configs/tasks/`` as ``vla_envs/<Task>-v0``."""

from __future__ import annotations

import gymnasium as gym

from vla_envs.config import TaskConfig, load_task_configs

ENTRY_POINT = "vla_envs.robosuite_env:RobosuiteEnv"


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


def registered_ids() -> list[str]:
    """Ids of the suite's environments currently in Gymnasium's registry."""
    return sorted(env_id for env_id in gym.registry if env_id.startswith("vla_envs/"))
