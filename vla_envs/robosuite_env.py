"""A Gymnasium environment over a robosuite manipulation task, on one of the suite's arms
(``vla_envs.robots.SUPPORTED_ROBOTS``; the Panda unless ``robot=`` says otherwise).

Why not robosuite's ``GymWrapper``: it reports the horizon as ``terminated``, returns float64
observations against a float32 space, and ``reset(seed)`` only seeds numpy's global RNG. Here:

- ``terminated`` is True only when the task succeeds (and ``terminate_on_success``); the time
  limit is a ``TimeLimit`` wrapper from the registry (``env.spec.max_episode_steps``), so a
  time-out is ``truncated`` and never ``terminated``.
- Observations are exactly the dtypes of ``observation_space``.
- ``reset(seed=s)`` seeds the env's own ``np_random``, which robosuite then draws every
  initial-state sample from (object placements, object sizes, joint noise): the same seed and
  actions give the same trajectory bit for bit, in any process. ``reset()`` without a seed
  continues that generator.

Observation layout by ``obs_mode``:

=============  ==============================================================================
``state``      ``{"state": float32 (n,)}``: robot proprioception followed by object state
``rgb``        ``{"image": uint8 (S, S, 3), "wrist_image": uint8 (S, S, 3), "proprio": float32 (m,)}``
``state+rgb``  all four keys
=============  ==============================================================================

``S`` is ``image_size``; images are upright. ``m``, and so ``n``, depends on the arm: robosuite's
proprioception has values per arm joint and per gripper joint (Panda and Sawyer 50, UR5e 53,
the other arms 58). ``info`` has the same keys on ``reset`` and every ``step`` (dataset
recorders such as Minari's ``DataCollector`` require a fixed layout)::

    {"instruction": "pick up the red cube ...", "is_success": False}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from vla_envs.actions import check_action
from vla_envs.config import TaskConfig, get_task_config
from vla_envs.controllers import DEFAULT_CONTROLLER, check_controller, controller_config
from vla_envs.errors import VlaEnvsError
from vla_envs.lean_meshes import DEFAULT_FACE_BUDGET, check_face_budget
from vla_envs.rendering import CameraRenderer, RenderQuality, check_render_quality
from vla_envs.robots import check_robot
from vla_envs.timing import substeps_per_control_step

ObsMode = Literal["state", "rgb", "state+rgb"]
OBS_MODES: tuple[str, ...] = ("state", "rgb", "state+rgb")
_PROPRIO_KEY = "robot0_proprio-state"
_OBJECT_KEY = "object-state"


class EnvClosedError(VlaEnvsError, gym.error.ClosedEnvironmentError, RuntimeError):
    """``reset``, ``step`` or ``render`` after ``close()``: the simulation is gone."""


def check_flag(field: str, value: object) -> bool:
    """``value`` when it is ``True`` or ``False``; a ``ValueError`` naming the field otherwise:
    Python reads ``"no"`` as true and ``0`` / ``1`` look like counts, so neither stands for a
    switch."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{field}={value!r}: expected True or False")
    return bool(value)


def check_integer(field: str, value: object, low: int, high: int, unit: str) -> int:
    """``value`` as an ``int`` when it is an integer in ``[low, high]``; a ``ValueError`` naming
    the field otherwise (``True`` is no number of anything, and ``"64"`` is text)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{field}={value!r}: expected an integer number of {unit} in [{low}, {high}]")
    return int(value)


def check_reset_options(options: object, accepted: tuple[str, ...]) -> dict[str, Any]:
    """``options`` as a dict when every key is one the env reads (``accepted``): a misspelt
    option that was ignored would start the episode from another state than the one asked for."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(f"reset options={options!r}: expected None or a dict with keys among {list(accepted)}")
    unknown = sorted(set(options) - set(accepted), key=repr)
    if unknown:
        expected = (f"expected some of {list(accepted)}" if accepted
                    else "this env accepts no reset options (accepted keys: []), expected None or {}")
        raise ValueError(f"reset options {unknown} are not known: {expected}")
    return dict(options)


class RobosuiteEnv(gym.Env[dict, np.ndarray]):
    """One robosuite task behind the Gymnasium API. Prefer ``gym.make("vla_envs/<Task>-v0")``.

    Args:
        task: task name (``"Lift"``), path to a task YAML, or a ``TaskConfig``.
        obs_mode: ``"state"``, ``"rgb"`` or ``"state+rgb"`` (see the module docstring).
        image_size: side of the square camera images in pixels.
        robot: the arm (``vla_envs.robots.SUPPORTED_ROBOTS``); defaults to the task config's
            (``Panda``). Joint-space controllers take one action per arm joint (6 on the UR5e).
        controller: robosuite arm controller (``vla_envs.controllers.CONTROLLERS``).
        control_freq: control frequency in Hz; defaults to the task config's.
        render_mode: ``None`` or ``"rgb_array"``.
        render_quality: ``"lean"`` (fast) or ``"full"`` (robosuite's look), for all cameras.
        mesh_face_budget: with ``"lean"``, visual-only meshes above this many faces are drawn
            decimated (``vla_envs.lean_meshes``); ``None`` draws robosuite's meshes. Physics is
            unaffected either way.
        render_size: side of the ``render()`` frame in pixels.
        terminate_on_success: end the episode (``terminated=True``) when the task succeeds.
        reward_shaping: robosuite's dense staged reward instead of its sparse success reward.

    Every keyword is checked for its type as well as its value (``ValueError`` naming it): a
    switch must be ``True`` or ``False`` (not ``"no"``, which Python reads as true, nor ``1``), a
    number a number (not ``"20"``, nor ``True``).

    ``reset(seed=, options=)`` takes no options: ``options`` must be ``None`` or ``{}``, any key
    is refused (``reset_options`` lists the accepted keys; a LIBERO env reads ``init_state``).
    ``reset``, ``step`` and ``render`` after ``close()`` raise ``EnvClosedError`` (a
    ``RuntimeError`` and gymnasium's ``ClosedEnvironmentError``); ``close()`` again is a no-op.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    reset_options: tuple[str, ...] = ()  # the keys reset(options=) accepts

    def __init__(
        self,
        task: str | TaskConfig = "Lift",
        *,
        obs_mode: ObsMode = "state",
        image_size: int = 128,
        robot: str | None = None,
        controller: str = DEFAULT_CONTROLLER,
        control_freq: float | None = None,
        render_mode: str | None = None,
        render_quality: RenderQuality = "lean",
        mesh_face_budget: int | None = DEFAULT_FACE_BUDGET,
        render_size: int = 256,
        terminate_on_success: bool = True,
        reward_shaping: bool = False,
    ):
        self.task_config = get_task_config(task)
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode={obs_mode!r} is not supported: expected one of {OBS_MODES}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode={render_mode!r} is not supported: expected None or 'rgb_array'")
        self.image_size = check_integer("image_size", image_size, 8, 1024, "pixels")
        self.render_size = check_integer("render_size", render_size, 8, 1024, "pixels")
        self.robot = check_robot(robot if robot is not None else self.task_config.robot)
        self.controller = check_controller(controller)
        # checked before float(): float("20") and float(True) would pass for frequencies
        control_freq = control_freq if control_freq is not None else self.task_config.control_freq
        substeps_per_control_step(control_freq)  # ValueError unless a number that divides the physics rate
        self.control_freq = float(control_freq)
        # checked here, not only by the renderer, which an env without cameras never builds
        check_render_quality(render_quality)
        check_face_budget(mesh_face_budget)
        self.terminate_on_success = check_flag("terminate_on_success", terminate_on_success)
        reward_shaping = check_flag("reward_shaping", reward_shaping)

        self.obs_mode = obs_mode
        self.render_mode = render_mode
        self.render_quality = render_quality
        self.instruction = self.task_config.instruction
        self.metadata = {**self.metadata, "render_fps": self.control_freq}

        self._use_state = obs_mode in ("state", "state+rgb")
        self._use_images = obs_mode in ("rgb", "state+rgb")
        needs_renderer = self._use_images or render_mode == "rgb_array"
        size = max(self.image_size if self._use_images else 0, self.render_size if render_mode else 0)
        self._renderer = CameraRenderer(render_quality, size, size, mesh_face_budget) if needs_renderer else None

        self._rs = self._make_robosuite(reward_shaping)
        for camera in self._camera_names():
            if camera not in self._rs.sim.model.camera_names:
                raise ValueError(
                    f"task {self.task_config.name} on {self.robot}: camera {camera!r} does not exist: "
                    f"expected one of {list(self._rs.sim.model.camera_names)}"
                )

        low, high = self._rs.action_spec
        self.action_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        raw = self._rs._get_observations(force_update=True)
        obs_spaces: dict[str, spaces.Space] = {}
        if self._use_state:
            n = raw[_PROPRIO_KEY].size + raw[_OBJECT_KEY].size
            obs_spaces["state"] = spaces.Box(-np.inf, np.inf, (n,), np.float32)
        if self._use_images:
            image_space = spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
            obs_spaces["image"] = image_space
            obs_spaces["wrist_image"] = image_space
            obs_spaces["proprio"] = spaces.Box(-np.inf, np.inf, (raw[_PROPRIO_KEY].size,), np.float32)
        self.observation_space = spaces.Dict(obs_spaces)

    # -- robosuite access -------------------------------------------------------------------
    def _make_robosuite(self, reward_shaping: bool):
        """The robosuite environment this env drives (a LIBERO task builds its own)."""
        import robosuite

        return robosuite.make(
            self.task_config.robosuite_env,
            robots=self.robot,
            controller_configs=controller_config(self.controller, self.robot),
            **self._robosuite_settings(reward_shaping),
            **self.task_config.env_kwargs,
        )

    def _robosuite_settings(self, reward_shaping: bool) -> dict[str, Any]:
        """The robosuite keyword arguments every task of the suite is built with."""
        return {
            "control_freq": self.control_freq,
            "has_renderer": False,
            # Cameras are rendered by CameraRenderer, which keeps its GL context across resets.
            "has_offscreen_renderer": False,
            "use_camera_obs": False,
            "use_object_obs": True,
            "reward_shaping": reward_shaping,
            "ignore_done": True,  # the registry's TimeLimit owns the time limit
            "hard_reset": True,
            "renderer": "mujoco",
        }

    @property
    def robosuite_env(self):
        """The underlying robosuite environment (its ``sim`` is replaced on every reset)."""
        return self._rs

    def _camera_names(self) -> list[str]:
        names = []
        if self._use_images:
            names += [self.task_config.cameras.image, self.task_config.cameras.wrist_image]
        if self.render_mode == "rgb_array":
            names.append(self.task_config.render_camera)
        return names

    def _share_rng(self, rng: np.random.Generator) -> None:
        """Make robosuite draw every initial-state sample from ``rng``.

        robosuite reads ``env.rng`` when it rebuilds objects and resets the robot, and each
        placement sampler holds the generator it was built with.
        """
        self._rs.rng = rng
        samplers = [getattr(self._rs, "placement_initializer", None)]
        while samplers:
            sampler = samplers.pop()
            if sampler is None:
                continue
            sampler.rng = rng
            samplers.extend(getattr(sampler, "samplers", {}).values())

    def _reset_robosuite(self) -> dict[str, np.ndarray]:
        """robosuite's reset, its samples drawn from ``self.np_random`` (``_share_rng``)."""
        return self._rs.reset()

    def _camera_data(self):
        """The ``MjData`` the camera observations are rendered from: the simulation as the step
        ended (a LIBERO task renders the instant robosuite sampled its observables)."""
        return self._rs.sim.data._data

    def _observation(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        obs: dict[str, np.ndarray] = {}
        proprio = np.asarray(raw[_PROPRIO_KEY], dtype=np.float32)
        if self._use_state:
            obs["state"] = np.concatenate([proprio, np.asarray(raw[_OBJECT_KEY], dtype=np.float32)])
        if self._use_images:
            data = self._camera_data()
            cams = self.task_config.cameras
            obs["image"] = self._renderer.render(data, cams.image, self.image_size, self.image_size)
            obs["wrist_image"] = self._renderer.render(data, cams.wrist_image, self.image_size, self.image_size)
            obs["proprio"] = proprio
        return obs

    # -- Gymnasium API ----------------------------------------------------------------------
    def _check_open(self, call: str) -> None:
        if getattr(self, "_rs", None) is None:
            name = self.spec.id if self.spec is not None else self.task_config.name
            raise EnvClosedError(f"env.{call}() after env.close(): {name} is closed (close() released its "
                                 "simulation); make a new env with gym.make")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._check_open("reset")
        check_reset_options(options, self.reset_options)
        super().reset(seed=seed)
        self._share_rng(self.np_random)
        raw = self._reset_robosuite()
        if self._renderer is not None:
            self._renderer.bind(self._rs.sim.model._model)
        info = {"instruction": self.instruction, "is_success": bool(self._rs._check_success())}
        return self._observation(raw), info

    def step(self, action: np.ndarray):
        self._check_open("step")
        action = check_action(action, self.action_space, f" for controller {self.controller}")
        raw, reward, _, _ = self._rs.step(np.asarray(action, dtype=np.float64))
        success = bool(self._rs._check_success())
        terminated = success and self.terminate_on_success
        return self._observation(raw), float(reward), terminated, False, {"instruction": self.instruction, "is_success": success}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        self._check_open("render")
        self._renderer.bind(self._rs.sim.model._model)  # no-op unless a reset rebuilt the model
        size = self.render_size
        return self._renderer.render(self._rs.sim.data._data, self.task_config.render_camera, size, size)

    def close(self) -> None:
        if getattr(self, "_renderer", None) is not None:
            self._renderer.close()
        if getattr(self, "_rs", None) is not None:
            self._rs.close()
            self._rs = None
