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
  hook runs the same ``frame_skip`` single steps (same result, bit for bit) and samples after
  each, in one compiled call to MuJoCo's C functions (this module is the only place that calls
  them). That call costs less than the three Python bindings it replaces (``data.ctrl[:] =``,
  ``mj_step``, ``mj_rnePostConstraint``), which pays for part of the wrappers' Python work.

The hooks only capture; ``wrappers.accounting`` accounts the step after ``env.step`` returns.

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


@numba.njit(cache=True)
def capture_substep(sub, count, qfrc, qvel, didx):  # pragma: no cover - compiled
    """After one physics substep: append [tau | qd] of the arm dofs as row ``count[0]`` of
    ``sub`` (counted, not stored, once ``sub`` is full: the probe then refuses the step)."""
    i = count[0]
    if i < sub.shape[0]:
        n = didx.shape[0]
        for k in range(n):
            sub[i, k] = qfrc[didx[k]]
            sub[i, n + k] = qvel[didx[k]]
    count[0] = i + 1


# MuJoCo's C functions, for the compiled gymnasium-MujocoEnv step below. They take the
# mjModel*/mjData* that the Python bindings expose as ``MjModel._address``/``MjData._address``.
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
def _step_mujoco_env(model_address, data_address, ctrl, ctrl_in, n_frames, sub, count, qfrc, qvel, didx):  # pragma: no cover - compiled
    """gymnasium's ``_step_mujoco_simulation``, one mj_step at a time, capturing after each."""
    for k in range(ctrl.shape[0]):
        ctrl[k] = ctrl_in[k]
    for _ in range(n_frames):
        _mj_step(model_address, data_address)
        capture_substep(sub, count, qfrc, qvel, didx)
    _mj_rne_post_constraint(model_address, data_address)


class SubstepCapture:
    """Hooks a simulator's substep loop; each substep appends [tau | qd] of the arm to ``sub``
    and counts it in ``count[0]`` (the probe reads and clears both after each step)."""

    def __init__(self) -> None:
        self.sub = np.zeros((0, 0))
        self.count = np.zeros(1, dtype=np.int64)
        self._undo = None  # (object, attribute) whose instance attribute shadows the original

    def attach(self, env, readout: RobotReadout) -> None:
        """Hook the substep loop of ``env`` (after every reset: robosuite builds a new simulator)."""
        # room for four times the announced substeps: a step that runs more is refused, not cut
        shape = (4 * readout.n_substeps, 2 * readout.n_joints)
        if self.sub.shape != shape:
            self.sub = np.zeros(shape)
        self.count[0] = 0
        data = readout.get_model_data()[1]
        arm = (data.qfrc_actuator, data.qvel, np.asarray(readout.dof_index, dtype=np.int64))
        if readout.source == "robosuite":
            self._attach_robosuite(env.unwrapped.robosuite_env, arm)
        elif readout.source == "mujoco_env" and _mj_step is not None:
            self._attach_mujoco_env(readout.sim_owner, arm)
        else:
            self._attach_mj_step(data, arm)

    def _capture_function(self, arm):
        sub, count = self.sub, self.count
        qfrc, qvel, didx = arm
        return lambda: capture_substep(sub, count, qfrc, qvel, didx)

    def _attach_robosuite(self, rs, arm) -> None:
        sim = rs.sim
        if self._undo is not None and self._undo[0] is sim:
            return
        self.detach()
        name = "step2" if rs.lite_physics else "step"
        original = getattr(sim, name)
        capture = self._capture_function(arm)

        def hooked_step(*args, **kwargs):
            result = original(*args, **kwargs)
            capture()
            return result

        setattr(sim, name, hooked_step)
        self._undo = (sim, name)

    def _attach_mujoco_env(self, owner, arm) -> None:
        if self._undo is not None and self._undo[0] is owner:
            return
        self.detach()
        model, data = owner.model, owner.data
        ctrl, sub, count = data.ctrl, self.sub, self.count
        qfrc, qvel, didx = arm
        addresses = (model._address, data._address)

        def hooked_simulation(ctrl_in, n_frames):
            if owner.model is not model or owner.data is not data:  # the env swapped its model
                raise RuntimeError("the MuJoCo model/data of this env changed; re-attach the capture")
            if type(ctrl_in) is not np.ndarray or ctrl_in.shape != ctrl.shape:
                converted = np.empty(ctrl.shape)
                converted[:] = ctrl_in  # numpy's rules, as the original ``data.ctrl[:] = ctrl``
                ctrl_in = converted
            _step_mujoco_env(addresses[0], addresses[1], ctrl, ctrl_in, n_frames, sub, count, qfrc, qvel, didx)

        owner._step_mujoco_simulation = hooked_simulation
        self._undo = (owner, "_step_mujoco_simulation")

    def _attach_mj_step(self, data: mujoco.MjData, arm) -> None:
        if self._undo is not None and self._undo[0] is data:
            return
        self.detach()
        _MJ_STEP_HOOKS[id(data)] = (data, self._capture_function(arm))
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
# call goes straight to MuJoCo. (Also the fallback for MujocoEnvs where MuJoCo's shared library
# cannot be loaded for the compiled step.)
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
