"""Capture arm torques and joint velocities after every physics substep.

A control step runs several physics substeps (robosuite: control_timestep / model_timestep = 25
at 20 Hz; a gymnasium MujocoEnv: ``frame_skip``). Torque sampled once per control step biases
energy by -27 % to +64 % on Lift (``docs/metrics.md``), so the capture hooks the substep loop
itself, on the live objects, without editing robosuite or gymnasium on disk:

- robosuite (``lite_physics=True``, the default): each substep is ``sim.step1()``, the
  controller writing ``ctrl``, ``sim.step2()``; the hook wraps ``sim.step2`` (``sim.step`` without
  lite physics). A hard reset builds a new sim, so ``attach`` runs after every reset.
- gymnasium ``MujocoEnv``: ``_step_mujoco_simulation`` calls ``mj_step(nstep=frame_skip)``; the
  hook runs the same ``frame_skip`` single steps (same result, bit for bit) and samples after each.

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
from wrappers.running_metrics import I_COUNT, I_EXTRA, I_IDX, I_PENDING, advance_step, capture_substep


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
def _mujoco_env_step(
    model_ptr, data_ptr, n_frames, ctrl_in, ctrl,
    qpos, qvel, qacc, qfrc, ee_xyz, ints, state, rows, sub, action, coefficients, dt, f, warnings,
):  # pragma: no cover - compiled
    """gymnasium's _step_mujoco_simulation one mj_step at a time, capturing after each; then,
    if the wrapper's step is pending, the control-step accounting (saves a second call)."""
    for k in range(ctrl.shape[0]):
        ctrl[k] = ctrl_in[k]
    for _ in range(n_frames):
        _mj_step(model_ptr, data_ptr)
        capture_substep(qfrc, qvel, ints, sub)
    _mj_rne_post_constraint(model_ptr, data_ptr)
    if ints[I_PENDING] != 0:
        advance_step(qpos, qvel, qacc, qfrc, ee_xyz, ints, state, rows, sub, action, np.nan, coefficients, dt, f, warnings)
    else:
        ints[I_EXTRA] += 1


class SubstepCapture:
    """Hooks a simulator's substep loop; fills ``sub`` (substeps, 2n) = [tau | qd] per substep.

    ``ints`` is the probe's int array (joint count, dof indices, the substep counter). For a
    gymnasium MujocoEnv the hook also runs the probe's step accounting (``accounting_args``,
    set by the probe) in the same compiled call.
    """

    def __init__(self) -> None:
        self.sub = np.zeros((0, 0))
        self.ints = np.zeros(I_IDX, dtype=np.int64)
        self.accounting_args: tuple = ()
        self._undo = None  # (object, attribute) whose instance attribute shadows the original

    def attach(self, env, readout: RobotReadout, ints: np.ndarray) -> None:
        """Hook the substep loop of ``env`` (call after every reset; idempotent)."""
        self.ints = ints
        # room for twice the announced substeps: a step that runs more is still captured
        shape = (2 * readout.n_substeps, 2 * readout.n_joints)
        if self.sub.shape != shape:
            self.sub = np.zeros(shape)
        base = env.unwrapped
        if readout.source == "robosuite":
            self._attach_robosuite(base.robosuite_env)
        else:
            self._attach_mujoco_env(base)
        ints[I_COUNT] = 0

    def _attach_robosuite(self, rs) -> None:
        sim = rs.sim
        if self._undo is not None and self._undo[0] is sim:
            return
        self.detach()
        name = "step2" if rs.lite_physics else "step"
        original = getattr(sim, name)
        data = sim.data._data
        qfrc, qvel = data.qfrc_actuator, data.qvel
        capture = self

        def hooked_step(*args, **kwargs):
            result = original(*args, **kwargs)
            capture_substep(qfrc, qvel, capture.ints, capture.sub)
            return result

        setattr(sim, name, hooked_step)
        self._undo = (sim, name)

    def _attach_mujoco_env(self, base) -> None:
        if self._undo is not None and self._undo[0] is base:
            return
        self.detach()
        capture = self
        model, data = base.model, base.data
        model_ptr, data_ptr = model._address, data._address
        ctrl, qfrc, qvel = data.ctrl, data.qfrc_actuator, data.qvel

        def hooked_simulation(ctrl_in, n_frames):
            if base.model is not model or base.data is not data:  # the env swapped its model
                raise RuntimeError("the MuJoCo model/data of this env changed; re-attach the capture")
            if _mj_step is None:  # no MuJoCo shared library to call from compiled code
                ctrl[:] = ctrl_in
                for _ in range(n_frames):
                    mujoco.mj_step(model, data)
                    capture_substep(qfrc, qvel, capture.ints, capture.sub)
                mujoco.mj_rnePostConstraint(model, data)
                return
            if type(ctrl_in) is not np.ndarray or ctrl_in.ndim != 1:
                ctrl_in = np.asarray(ctrl_in, dtype=np.float64).reshape(-1)
            _mujoco_env_step(model_ptr, data_ptr, n_frames, ctrl_in, ctrl, *capture.accounting_args)

        base._step_mujoco_simulation = hooked_simulation
        self._undo = (base, "_step_mujoco_simulation")

    def detach(self) -> None:
        """Remove the hook (the instance attribute shadowing the class method)."""
        if self._undo is not None:
            obj, name = self._undo
            if name in vars(obj):
                delattr(obj, name)
            self._undo = None
