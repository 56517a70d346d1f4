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
- ``init_state_from_seed=True``: ``reset(seed=s)`` with ``0 <= s < 50`` sets standard initial
  state ``s`` (evaluation seeds 0-49 are then LIBERO's 50 episodes per task); other seeds, and
  demonstration seeds from 1000, are placements drawn from the seed, never a standard state.
- ``settle_steps=n``: after the reset (and the initial state) the simulation runs ``n`` control
  steps of LIBERO's no-op action (arm still, gripper open) so that objects dropped into the scene
  come to rest, as openpi's and LeRobot's LIBERO evaluations do (``n = 10``). They belong to the
  reset: they do not count towards the time limit, and the wrappers' metrics and recordings start
  after them.
- ``robosuite_controller="1.4"`` (the default) steps the arm and gripper as robosuite 1.4 did,
  on which LIBERO's demonstrations were recorded (``vla_envs.robosuite_fixes.step_like_robosuite_14``:
  a zero rotation holds the orientation goal, the gripper command ramps every substep);
  ``"1.5"`` steps them as robosuite 1.5 does. docs/libero.md has the measured difference.
- Camera images are rendered at the instant robosuite sampled its observables, as LIBERO's own
  frames are: robosuite samples every observable (LIBERO's camera frames, ``robot0_eef_pos``...)
  at one physics substep of each control step, not at the step's end (the 24th of 25 here,
  depending on the updates forced since the reset), so LIBERO's frames and state lag the end of
  the step by a substep. The suite's other tasks render the end of the step.
- In the ``rgb`` modes the observation adds ``"libero_state"``: float64 (8,), eef position,
  eef axis-angle and gripper qpos (``vla_envs.libero.observations``), the state openpi's and
  LeRobot's LIBERO clients give their models.
- ``info`` adds ``"init_state"`` on reset and every step: the episode's standard initial state,
  or ``None``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gymnasium import spaces

from vla_envs.config import CameraConfig, TaskConfig
from vla_envs.libero.observations import LIBERO_STATE_SIZE, libero_state
from vla_envs.libero.suites import LiberoTask, check_suite, load_init_states, task
from vla_envs.robosuite_env import RobosuiteEnv, check_flag, check_integer, check_reset_options

OPTIONS = ("init_state",)  # the keys reset(options=) accepts
ROBOSUITE_CONTROLLERS = ("1.4", "1.5")
# the observable whose sampling instant the camera images follow (any robot observable would do)
FRAME_CLOCK = "robot0_eef_pos"
# LIBERO's no-op (openpi's LIBERO_DUMMY_ACTION, LeRobot's get_libero_dummy_action): no arm motion,
# gripper open
SETTLE_ACTION = np.array([0.0] * 6 + [-1.0])


def _task_config(libero_task: LiberoTask) -> TaskConfig:
    suite = check_suite(libero_task.suite)
    title = suite.title.replace("-", "").replace("LIBERO", "Libero")  # TaskConfig's name pattern
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
    ``RobosuiteEnv``'s, on the Panda with OSC_POSE only (LIBERO's scenes and demonstrations),
    and ``settle_steps`` / ``init_state_from_seed`` / ``robosuite_controller`` (the module docstring),
    each checked for its type as ``RobosuiteEnv``'s are.

    ``reset(seed=, options=)`` accepts one option, ``{"init_state": i}`` (LIBERO's standard
    initial state ``i``, 0-49); any other key is refused, naming the accepted ones."""

    reset_options = OPTIONS

    def __init__(self, suite: str = "libero_spatial", task_id: int = 0, *, settle_steps: int = 0,
                 init_state_from_seed: bool = False, robosuite_controller: str = "1.4", **kwargs: Any):
        if not isinstance(robosuite_controller, str) or robosuite_controller not in ROBOSUITE_CONTROLLERS:
            raise ValueError(f"robosuite_controller={robosuite_controller!r}: expected one of {ROBOSUITE_CONTROLLERS} "
                             "(how the arm and gripper controllers step)")
        self.robosuite_controller = robosuite_controller
        self.settle_steps = check_integer("settle_steps", settle_steps, 0, 1000, "control steps")
        self.init_state_from_seed = check_flag("init_state_from_seed", init_state_from_seed)
        for name, allowed in (("robot", "Panda"), ("controller", "OSC_POSE")):
            if kwargs.get(name, allowed) != allowed:
                raise ValueError(f"{name}={kwargs[name]!r}: LIBERO's scenes are built for the {allowed!r} "
                                 f"({'robot' if name == 'robot' else 'arm controller'}), expected {allowed!r}")
        self.libero_task = task(suite, task_id)
        self._frame_data = None  # the simulation at robosuite's last observable sample
        self._init_states: np.ndarray | None = None
        self._init_state: int | None = None  # this episode's, on every step's info (a fixed layout)
        super().__init__(_task_config(self.libero_task), **kwargs)
        if self._use_images:
            self.observation_space = spaces.Dict({
                **self.observation_space.spaces,
                "libero_state": spaces.Box(-np.inf, np.inf, (LIBERO_STATE_SIZE,), np.float64),
            })

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
            # LIBERO's ControlEnv builds its scenes without joint noise: robosuite's default noise
            # moved the OSC controller's null-space target (the joints at reset) and, from the
            # same initial state and no-op actions, the arm 0.037 rad away in 10 steps
            initialization_noise=None,
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
                    raw = self._rs.reset()
                except RandomizationError:
                    continue
                if self.robosuite_controller == "1.4":  # the reset built new controllers
                    from vla_envs.robosuite_fixes import step_like_robosuite_14

                    step_like_robosuite_14(self._rs)
                self._follow_observable_sampling()  # ... and new observables
                return raw
            raise RuntimeError(f"{self.libero_task.suite} task {self.libero_task.index}: 100 object placements failed")
        finally:
            np.random.set_state(saved)

    def _follow_observable_sampling(self) -> None:
        """Copy the simulation into ``self._frame_data`` whenever robosuite samples
        ``FRAME_CLOCK`` (all observables share its timer: built together at the reset, updated
        together), and now, as the reset's forced update sampled it: the camera images are then
        rendered from what LIBERO's camera observables would have rendered. The copy is the
        whole ``MjData`` (kinematics included: at a substep's end they are still those its
        integration started from, and robosuite's renderer draws them as they are)."""
        if not self._use_images:
            return
        import mujoco

        model, data = self._rs.sim.model._model, self._rs.sim.data._data
        frame_data = self._frame_data = mujoco.MjData(model)
        mujoco.mj_copyData(frame_data, model, data)
        original = self._rs._observables[FRAME_CLOCK]._sensor

        def sensor(obs_cache):
            mujoco.mj_copyData(frame_data, model, data)
            return original(obs_cache)

        sensor.__modality__ = original.__modality__
        self._rs.modify_observable(FRAME_CLOCK, "sensor", sensor)

    def _camera_data(self):
        return self._frame_data

    def _observation(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        obs = super()._observation(raw)
        if self._use_images:
            obs["libero_state"] = libero_state(raw)
        return obs

    @property
    def init_states(self) -> np.ndarray:
        """LIBERO's standard initial states of this task, (50, state size)."""
        if self._init_states is None:
            self._init_states = load_init_states(self.libero_task.init_states_file)
        return self._init_states

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._check_open("reset")
        options = check_reset_options(options, self.reset_options)
        index = options.get("init_state")
        if index is not None and (isinstance(index, bool) or not isinstance(index, (int, np.integer))
                                  or not 0 <= index < len(self.init_states)):
            raise ValueError(f"options['init_state'] = {index!r}: expected an integer from 0 to {len(self.init_states) - 1}")
        if index is None and self.init_state_from_seed and seed is not None and 0 <= seed < len(self.init_states):
            index = int(seed)
        obs, info = super().reset(seed=seed)
        if index is not None:
            sim = self._rs.sim
            sim.set_state_from_flattened(self.init_states[int(index)])
            sim.forward()
            self._rs._post_process()
            self._rs._update_observables(force=True)
            raw = self._rs._get_observations()
        for _ in range(self.settle_steps):
            raw, _, _, _ = self._rs.step(SETTLE_ACTION)
        if index is not None or self.settle_steps:
            obs = self._observation(raw)
            info["is_success"] = bool(self._rs._check_success())
        self._init_state = None if index is None else int(index)
        info["init_state"] = self._init_state
        return obs, info

    def step(self, action: np.ndarray):
        obs, reward, terminated, truncated, info = super().step(action)
        info["init_state"] = self._init_state
        return obs, reward, terminated, truncated, info
