"""Control steps in physics substeps: a control frequency must divide the physics rate.

robosuite runs ``int(control_timestep / model_timestep)`` substeps per ``env.step``
(``environments/base.py``), truncating: at 30 Hz on its 500 Hz physics a step simulates 16
substeps (32 ms), so 30 steps simulate 0.96 s while ``completion_time_s`` says 1.0 s; above
500 Hz it runs no physics at all. Refusing such frequencies up front is the only way the
reported time can be the simulated time.
"""

from __future__ import annotations

import math
from numbers import Real

# robosuite.macros.SIMULATION_TIMESTEP: the physics timestep of every robosuite task, seconds
ROBOSUITE_PHYSICS_DT_S = 0.002


def substeps_per_control_step(control_freq_hz: float, physics_dt_s: float = ROBOSUITE_PHYSICS_DT_S) -> int:
    """``(1 / control_freq_hz) / physics_dt_s`` when that is a whole number >= 1; otherwise a
    ``ValueError`` naming the frequency and the valid ones."""
    physics_hz = 1.0 / physics_dt_s
    # a bool is a Real to Python (True == 1 Hz), and text such as "20" is not a number yet
    number = isinstance(control_freq_hz, Real) and not isinstance(control_freq_hz, bool)
    if not (number and math.isfinite(control_freq_hz) and control_freq_hz > 0):
        shown = f"{control_freq_hz:g}" if number else repr(control_freq_hz)
        raise ValueError(f"control_freq={shown}: expected a positive, finite frequency in Hz (a number)")
    ratio = physics_hz / control_freq_hz
    substeps = round(ratio)
    if substeps < 1 or abs(ratio - substeps) > 1e-9 * ratio:
        divisors = [physics_hz / k for k in range(1, int(physics_hz) + 1) if (physics_hz / k).is_integer()]
        shown = ", ".join(f"{d:g}" for d in sorted(divisors) if d >= 5)
        raise ValueError(
            f"control_freq={control_freq_hz:g}: expected a frequency that divides the {physics_hz:g} Hz physics "
            f"rate into whole substeps ({shown} Hz); {control_freq_hz:g} Hz would simulate "
            f"{max(int(ratio), 0)} substeps ({max(int(ratio), 0) * physics_dt_s * 1e3:g} ms) per "
            f"{1e3 / control_freq_hz:g} ms step"
        )
    return substeps
