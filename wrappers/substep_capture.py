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

import mujoco
import numpy as np

from wrappers.robot_readout import RobotReadout


def fast_index(index: np.ndarray) -> slice | np.ndarray:
    """A slice when the indices are contiguous (a view, cheaper than fancy indexing)."""
    index = np.asarray(index, dtype=np.intp)
    if len(index) and np.array_equal(index, np.arange(index[0], index[0] + len(index))):
        return slice(int(index[0]), int(index[0]) + len(index))
    return index


class SubstepCapture:
    """Per-substep torque/velocity buffer for the current control step."""

    def __init__(self) -> None:
        self.torque = np.zeros((0, 0))
        self.qvel = np.zeros((0, 0))
        self.count = 0
        self._dofs: slice | np.ndarray = slice(0, 0)
        self._data: mujoco.MjData | None = None
        self._undo = None  # restores the hooked object

    def _size(self, n_substeps: int, n_dofs: int) -> None:
        if self.torque.shape != (n_substeps, n_dofs):
            self.torque = np.zeros((n_substeps, n_dofs))
            self.qvel = np.zeros((n_substeps, n_dofs))

    def record(self) -> None:
        """Called by the hook after each physics substep."""
        i = self.count
        if i == len(self.torque):  # more substeps than announced: grow rather than lose samples
            self.torque = np.concatenate([self.torque, np.zeros_like(self.torque)])
            self.qvel = np.concatenate([self.qvel, np.zeros_like(self.qvel)])
        data = self._data
        self.torque[i] = data.qfrc_actuator[self._dofs]
        self.qvel[i] = data.qvel[self._dofs]
        self.count = i + 1

    def begin_step(self) -> None:
        self.count = 0

    def attach(self, env, readout: RobotReadout) -> None:
        """Hook the substep loop of ``env`` (call after every reset; idempotent)."""
        self._size(readout.n_substeps, readout.n_joints)
        self._dofs = fast_index(readout.dof_index)
        base = env.unwrapped
        if readout.source == "robosuite":
            self._attach_robosuite(base.robosuite_env)
        else:
            self._attach_mujoco_env(base)
        self.count = 0

    def _attach_robosuite(self, rs) -> None:
        sim = rs.sim
        if self._undo is not None and self._undo[0] is sim:
            return
        self.detach()
        name = "step2" if rs.lite_physics else "step"
        original = getattr(sim, name)
        record = self.record

        def hooked_step(*args, **kwargs):
            result = original(*args, **kwargs)
            record()
            return result

        setattr(sim, name, hooked_step)
        self._data = sim.data._data
        self._undo = (sim, name)

    def _attach_mujoco_env(self, base) -> None:
        self._data = base.data
        if self._undo is not None and self._undo[0] is base:
            return
        self.detach()
        record = self.record

        def hooked_simulation(ctrl, n_frames):
            model, data = base.model, base.data
            self._data = data
            data.ctrl[:] = ctrl
            for _ in range(n_frames):
                mujoco.mj_step(model, data)
                record()
            mujoco.mj_rnePostConstraint(model, data)

        base._step_mujoco_simulation = hooked_simulation
        self._undo = (base, "_step_mujoco_simulation")

    def detach(self) -> None:
        """Remove the hook (the instance attribute shadowing the class method)."""
        if self._undo is not None:
            obj, name = self._undo
            if name in vars(obj):
                delattr(obj, name)
            self._undo = None
