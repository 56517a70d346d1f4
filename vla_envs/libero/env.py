"""A LIBERO task behind the Gymnasium API, with this suite's observations, seeding and rendering.

``gym.make("vla_envs/LIBERO-Spatial-v0", task_id=k)`` is task ``k`` of LIBERO-Spatial in
LIBERO's order (``vla_envs.libero.suites``); the other suites are ``LIBERO-Object``,
``LIBERO-Goal``, ``LIBERO-10`` and ``LIBERO-90``, each with its time limit. Everything of
``vla_envs.robosuite_env.RobosuiteEnv`` holds (observation layout, ``terminated`` only on
success, lean rendering, the ``robosuite_env`` that the wrappers measure); what differs:

- The scene is LIBERO's, built from the task's BDDL file by LIBERO's own classes, on the Panda
  with LIBERO's controller configuration (robosuite's ``default_panda``, OSC_POSE arm): the one
  its demonstrations were recorded with.
- ``reset(seed=s)`` places the objects with LIBERO's placement sampler drawing from the env's
  seeded generator (reproducible bit for bit); ``reset(seed=s, options={"init_state": i})`` then
  sets LIBERO's standard initial state ``i`` (0-49), "init state i" of every LIBERO paper. Any
  other option is refused.
- ``info`` adds ``"init_state"`` on reset and every step: the episode's standard initial state,
  or ``None``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vla_envs.config import CameraConfig, TaskConfig
from vla_envs.libero.suites import LiberoTask, check_suite, load_init_states, task
from vla_envs.robosuite_env import RobosuiteEnv

OPTIONS = ("init_state",)


def _task_config(libero_task: LiberoTask) -> TaskConfig:
    suite = check_suite(libero_task.suite)
    title = suite.title.replace("-", "").replace("LIBERO", "Libero")
    return TaskConfig(
        name=f"{title}T{libero_task.index}",
        robosuite_env=libero_task.name,
        instruction=libero_task.instruction,
        max_episode_steps=suite.max_episode_steps,
        control_freq=20.0,
        cameras=CameraConfig(image="agentview", wrist_image="robot0_eye_in_hand"),
        render_camera="frontview",
    )


class LiberoEnv(RobosuiteEnv):
    """LIBERO task ``task_id`` of ``suite`` (``"libero_spatial"``, ``"libero_object"``,
    ``"libero_goal"``, ``"libero_10"``, ``"libero_90"``); the keyword arguments are
    ``RobosuiteEnv``'s, on the Panda with OSC_POSE only (LIBERO's scenes and demonstrations)."""

    def __init__(self, suite: str = "libero_spatial", task_id: int = 0, **kwargs: Any):
        for name, allowed in (("robot", "Panda"), ("controller", "OSC_POSE")):
            if kwargs.get(name, allowed) != allowed:
                raise ValueError(f"{name}={kwargs[name]!r}: LIBERO's scenes are built for the {allowed!r} "
                                 f"({'robot' if name == 'robot' else 'arm controller'}), expected {allowed!r}")
        self.libero_task = task(suite, task_id)
        self._init_states: np.ndarray | None = None
        self._init_state: int | None = None  # this episode's, on every step's info (a fixed layout)
        super().__init__(_task_config(self.libero_task), **kwargs)

    def _make_robosuite(self, reward_shaping: bool):
        import robosuite

        from vla_envs.libero.installation import prepare

        prepare()
        import libero.libero.envs.bddl_utils as bddl_utils
        from libero.libero.envs import TASK_MAPPING

        bddl = str(self.libero_task.bddl_file)
        problem = bddl_utils.get_problem_info(bddl)["problem_name"]
        return TASK_MAPPING[problem](
            bddl,
            robots=["Panda"],
            # LIBERO's ControlEnv: robosuite's default composite config for the Panda
            controller_configs=robosuite.load_composite_controller_config(controller=None, robot="Panda"),
            **self._robosuite_settings(reward_shaping),
        )

    def _reset_robosuite(self) -> dict[str, np.ndarray]:
        """LIBERO's region samplers draw from numpy's global generator: for the reset it is seeded
        from the env's own (so ``reset(seed=s)`` is reproducible) and then given back its state,
        so the caller's global stream is untouched. A placement LIBERO cannot satisfy is drawn
        again, as LIBERO's ``ControlEnv.reset`` does."""
        from robosuite.utils.errors import RandomizationError

        saved = np.random.get_state()
        try:
            for _ in range(100):
                np.random.seed(int(self.np_random.integers(2**32)))
                try:
                    return self._rs.reset()
                except RandomizationError:
                    continue
            raise RuntimeError(f"{self.libero_task.suite} task {self.libero_task.index}: 100 object placements failed")
        finally:
            np.random.set_state(saved)

    @property
    def init_states(self) -> np.ndarray:
        """LIBERO's standard initial states of this task, (50, state size)."""
        if self._init_states is None:
            self._init_states = load_init_states(self.libero_task.init_states_file)
        return self._init_states

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        options = dict(options or {})
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"reset options {unknown} are not known: expected some of {list(OPTIONS)}")
        index = options.get("init_state")
        if index is not None and (isinstance(index, bool) or not isinstance(index, (int, np.integer))
                                  or not 0 <= index < len(self.init_states)):
            raise ValueError(f"options['init_state'] = {index!r}: expected an integer from 0 to {len(self.init_states) - 1}")
        obs, info = super().reset(seed=seed)
        if index is not None:
            sim = self._rs.sim
            sim.set_state_from_flattened(self.init_states[int(index)])
            sim.forward()
            self._rs._post_process()
            self._rs._update_observables(force=True)
            obs = self._observation(self._rs._get_observations())
            info["is_success"] = bool(self._rs._check_success())
        self._init_state = None if index is None else int(index)
        info["init_state"] = self._init_state
        return obs, info

    def step(self, action: np.ndarray):
        obs, reward, terminated, truncated, info = super().step(action)
        info["init_state"] = self._init_state
        return obs, reward, terminated, truncated, info
