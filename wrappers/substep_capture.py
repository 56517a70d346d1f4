"""Capture arm torques and joint velocities after every physics substep.

A control step runs several physics substeps (robosuite: control_timestep / model_timestep = 25
at 20 Hz; a gymnasium MujocoEnv: ``frame_skip``). Torque sampled once per control step biases
energy by -27 % to +64 % on Lift (``docs/metrics.md``), so the capture hooks the substep loop
itself, on the live objects, without editing robosuite or gymnasium on disk:

- robosuite (``lite_physics=True``, the default): each substep is ``sim.step1()``, the
  controller writing ``ctrl``, ``sim.step2()``; the hook wraps ``sim.step2`` (``sim.step`` without
  lite physics). A hard reset builds a new sim, so ``attach`` runs after every reset.
- any other env that calls ``mujoco.mj_step(model, data, nstep)`` itself (gymnasium-robotics'
  Fetch, ...): ``mujoco.mj_step`` is replaced, while such an env is measured, by a dispatcher
  that steps a measured MjData one substep at a time and samples after each.
- gymnasium ``MujocoEnv``: ``_step_mujoco_simulation`` calls ``mj_step(nstep=frame_skip)``; the
  hook runs the same ``frame_skip`` single steps (same result, bit for bit) and samples after each,
  then does the probe's step accounting, all in one compiled call that calls MuJoCo's C functions
  directly. That call costs less than the three Python bindings it replaces (``data.ctrl[:] =``,
  ``mj_step``, ``mj_rnePostConstraint``), which pays for part of the wrappers' Python work.

After each substep: ``tau = data.qfrc_actuator[arm dofs]`` (the actuator force applied during the
substep) and ``qd = data.qvel[arm dofs]`` (the velocity after it).
"""

from __future__ import annotations

import ctypes
import glob
import os

import mujoco
import numba
import numpy as np

from wrappers.robot_readout import RobotReadout
from wrappers.running_metrics import (
    I_COUNT,
    I_CTRL,
    I_DATA,
    I_EXTRA,
    I_MODEL,
    I_NU,
    I_PENDING,
    bound_vector,
    advance_step,
    bind_simulator,
    capture_substep,
    new_ints,
)


def _load_mujoco_function(name: str):
    paths = sorted(glob.glob(os.path.join(os.path.dirname(mujoco.__file__), "libmujoco*.so*")))
    paths += sorted(glob.glob(os.path.join(os.path.dirname(mujoco.__file__), "libmujoco*.dylib")))
    if not paths:
        return None
    function = getattr(ctypes.CDLL(paths[0]), name)
    function.argtypes = (ctypes.c_size_t, ctypes.c_size_t)  # (const mjModel*, mjData*)
    function.restype = None
    return function


_mj_step = _load_mujoco_function("mj_step")
_mj_rne_post_constraint = _load_mujoco_function("mj_rnePostConstraint")


# Not cacheable (it embeds the addresses of MuJoCo's C functions): compiled once per process.
@numba.njit(cache=False)
def _mujoco_env_step(ints, ctrl_in, n_frames):  # pragma: no cover - compiled
    """gymnasium's _step_mujoco_simulation one mj_step at a time, capturing after each; then,
    if the wrapper's step is pending, the control-step accounting (saves a second call)."""
    ctrl = bound_vector(ints, I_CTRL, ints[I_NU])
    for k in range(ctrl.shape[0]):
        ctrl[k] = ctrl_in[k]
    model, data = ints[I_MODEL], ints[I_DATA]
    for _ in range(n_frames):
        _mj_step(model, data)
        capture_substep(ints)
    _mj_rne_post_constraint(model, data)
    if ints[I_PENDING] != 0:
        advance_step(ints, np.nan)
    else:
        ints[I_EXTRA] += 1


class SubstepCapture:
    """Hooks a simulator's substep loop; each substep appends [tau | qd] of the arm to the
    probe's ``sub`` buffer.

    ``ints`` is the probe's kernel table (joint count, dof indices, the substep counter, the
    addresses of the arrays, ``wrappers.running_metrics``). For a gymnasium MujocoEnv the hook
    also runs the probe's step accounting in the same compiled call.
    """

    def __init__(self) -> None:
        self.ints = new_ints(0, 0)
        # every array whose address is in ``ints``: the hook outlives the probe when someone
        # keeps the unwrapped env, and must never step into freed memory
        self.bound_arrays: tuple = ()
        self.bound_rows = np.zeros((0, 0))  # the recording buffer (replaced when it grows)
        self._undo = None  # (object, attribute) whose instance attribute shadows the original

    def attach(self, env, readout: RobotReadout, ints: np.ndarray, bound_arrays: tuple, rows: np.ndarray) -> None:
        """Hook the substep loop of ``env`` (call after every reset; idempotent) and run the hook
        on ``ints``, whose arrays (``bound_arrays``, ``rows``) are bound already."""
        if readout.source == "robosuite":
            self._attach_robosuite(env.unwrapped.robosuite_env)
        elif readout.source == "mujoco_env":
            owner = readout.sim_owner  # the MujocoEnv (env.unwrapped, or e.g. FrankaKitchen's robot_env)
            bind_simulator(ints, owner.model._address, owner.data._address, owner.data.ctrl)
            bound_arrays = (*bound_arrays, owner.model, owner.data)
            self._attach_mujoco_env(owner)
        else:
            self._attach_mj_step(readout.get_model_data()[1])
        ints[I_COUNT] = 0
        self.bound_arrays, self.bound_rows = bound_arrays, rows
        self.ints = ints

    def _attach_robosuite(self, rs) -> None:
        sim = rs.sim
        if self._undo is not None and self._undo[0] is sim:
            return
        self.detach()
        name = "step2" if rs.lite_physics else "step"
        original = getattr(sim, name)
        capture = self

        def hooked_step(*args, **kwargs):
            result = original(*args, **kwargs)
            capture_substep(capture.ints)
            return result

        setattr(sim, name, hooked_step)
        self._undo = (sim, name)

    def _attach_mujoco_env(self, base) -> None:
        if self._undo is not None and self._undo[0] is base:
            return
        self.detach()
        capture = self
        model, data = base.model, base.data
        ctrl = data.ctrl
        ctrl_shape = ctrl.shape

        def hooked_simulation(ctrl_in, n_frames):
            if base.model is not model or base.data is not data:  # the env swapped its model
                raise RuntimeError("the MuJoCo model/data of this env changed; re-attach the capture")
            if type(ctrl_in) is not np.ndarray or ctrl_in.shape != ctrl_shape:
                converted = np.empty(ctrl_shape)
                converted[:] = ctrl_in  # numpy's rules, as the original ``data.ctrl[:] = ctrl``
                ctrl_in = converted
            _mujoco_env_step(capture.ints, ctrl_in, n_frames)

        def python_simulation(ctrl_in, n_frames):  # no MuJoCo shared library to call from compiled code
            if base.model is not model or base.data is not data:
                raise RuntimeError("the MuJoCo model/data of this env changed; re-attach the capture")
            ctrl[:] = ctrl_in
            for _ in range(n_frames):
                mujoco.mj_step(model, data)
                capture_substep(capture.ints)
            mujoco.mj_rnePostConstraint(model, data)

        base._step_mujoco_simulation = hooked_simulation if _mj_step is not None else python_simulation
        self._undo = (base, "_step_mujoco_simulation")

    def _attach_mj_step(self, data: mujoco.MjData) -> None:
        if self._undo is not None and self._undo[0] is data:
            return
        self.detach()
        capture = self
        _MJ_STEP_HOOKS[id(data)] = (data, lambda: capture_substep(capture.ints))
        mujoco.mj_step = _hooked_mj_step
        self._undo = (data, None)

    def detach(self) -> None:
        """Remove the hook (the instance attribute shadowing the class method, or this data's
        entry in the mujoco.mj_step hook, restoring mujoco.mj_step once no env needs it)."""
        if self._undo is not None:
            obj, name = self._undo
            if name is None:
                _MJ_STEP_HOOKS.pop(id(obj), None)
                if not _MJ_STEP_HOOKS:
                    mujoco.mj_step = _ORIGINAL_MJ_STEP
            elif name in vars(obj):
                delattr(obj, name)
            self._undo = None


# Envs that call mujoco.mj_step themselves (gymnasium-robotics' ``self._mujoco.mj_step(model,
# data, nstep=n_substeps)``, ...) look the function up on the module at every call, so while
# such an env is measured the module's mj_step is this dispatcher: for a measured MjData it runs
# the nstep steps one at a time (the same state bit for bit) and captures after each; any other
# call goes straight to MuJoCo.
_ORIGINAL_MJ_STEP = mujoco.mj_step
_MJ_STEP_HOOKS: dict[int, tuple[mujoco.MjData, object]] = {}  # id(data) -> (data kept alive, capture)


def _hooked_mj_step(m, d, nstep=1):
    hook = _MJ_STEP_HOOKS.get(id(d))
    if hook is None or hook[0] is not d:
        return _ORIGINAL_MJ_STEP(m, d, nstep)
    capture = hook[1]
    for _ in range(nstep):
        _ORIGINAL_MJ_STEP(m, d)
        capture()
