"""The metric functions against trajectories whose answers are known in closed form."""

import math

import numpy as np
import pytest

from wrappers import metrics
from wrappers.accounting import RunningMetrics

F = 20.0  # control frequency, Hz
H = 1.0 / F


def test_constant_velocity_has_zero_jerk_and_linear_path():
    v = np.array([0.3, -0.1, 0.2])
    t = np.arange(41)[:, None] * H
    q = 0.5 + v * t
    qd = np.tile(v, (41, 1))
    assert metrics.jerk_ms(qd, F) == pytest.approx(0.0, abs=1e-18)
    assert metrics.joint_path_rad(q) == pytest.approx(40 * H * np.linalg.norm(v))
    assert metrics.joint_rotation_rad(q) == pytest.approx(40 * H * np.abs(v).sum())


def test_sinusoid_jerk_and_total_rotation():
    # q = A sin(w t) sampled at k/f, k = 0..N-1, one full period over the interior samples
    A, K = 0.4, 100
    w = 2 * math.pi / (K * H)
    k = np.arange(K + 2)
    q = (A * np.sin(w * k * H))[:, None]
    qd = (A * w * np.cos(w * k * H))[:, None]
    # second difference of cos: -4 sin^2(wh/2) cos(w t_k); mean of cos^2 over a full period = 1/2
    expected = F**4 * 16 * A**2 * w**2 * math.sin(w * H / 2) ** 4 / 2
    assert metrics.jerk_ms(qd, F) == pytest.approx(expected, rel=1e-9)
    # ... which tends to the continuous mean squared jerk A^2 w^6 / 2
    assert expected == pytest.approx(A**2 * w**6 / 2, rel=0.01)
    # samples 0..K hit both extrema (k = 25, 75): total variation of one period = 4A
    assert metrics.joint_rotation_rad(q[: K + 1]) == pytest.approx(4 * A, rel=1e-12)
    assert metrics.joint_path_rad(q[: K + 1]) == pytest.approx(4 * A, rel=1e-12)  # one joint: L2 = L1


def test_circle_end_effector_path_is_a_sum_of_chords():
    r, n, dtheta = 0.2, 50, 2 * math.pi / 50
    theta = np.arange(n + 1) * dtheta
    p = np.stack([r * np.cos(theta), r * np.sin(theta), np.full_like(theta, 0.9)], axis=1)
    assert metrics.ee_path_m(p) == pytest.approx(n * 2 * r * math.sin(dtheta / 2), rel=1e-12)


def test_constant_torque_at_known_velocity():
    tau = np.array([2.0, -3.0])
    qd = np.array([0.5, 0.25])
    dt, substeps = 0.002, 250
    torque = np.tile(tau, (substeps, 1))
    qvel = np.tile(qd, (substeps, 1))
    assert metrics.energy_j(torque, qvel, dt) == pytest.approx(substeps * dt * (1.0 + 0.75))
    assert metrics.effort_nm2s(torque, dt) == pytest.approx(substeps * dt * (4.0 + 9.0))
    # negative work counts too: |tau qd|, not tau qd
    assert metrics.energy_j(torque, -qvel, dt) == metrics.energy_j(torque, qvel, dt)


def test_action_rate_and_completion_time():
    a = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert metrics.action_rate(a) == pytest.approx((2 + 2 + 0) / 3)
    assert metrics.completion_time_s(30, 20.0) == 1.5


def test_short_episodes_are_zero_not_nan():
    assert metrics.jerk_ms(np.zeros((2, 3)), F) == 0.0
    assert metrics.action_rate(np.zeros((1, 7))) == 0.0
    assert metrics.ee_path_m(np.zeros((1, 3))) == 0.0
    assert metrics.joint_rotation_rad(np.zeros((1, 7))) == 0.0


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"qvel must be a 2-D array.*\(5,\)"):
        metrics.jerk_ms(np.zeros(5), F)
    with pytest.raises(ValueError, match=r"torque \(4, 2\) and substep_qvel \(4, 3\)"):
        metrics.energy_j(np.zeros((4, 2)), np.zeros((4, 3)), 0.002)
    with pytest.raises(ValueError, match="control_freq_hz must be positive"):
        metrics.completion_time_s(3, 0.0)


@pytest.mark.parametrize("function, argument", [
    (lambda x: metrics.ee_path_m(x), "points"),
    (lambda x: metrics.joint_path_rad(x), "points"),
    (lambda x: metrics.joint_rotation_rad(x), "qpos"),
    (lambda x: metrics.action_rate(x), "actions"),
    (lambda x: metrics.effort_nm2s(x, 0.002), "torque"),
    (lambda x: metrics.energy_j(x, np.zeros((4, 2)), 0.002), "torque"),
    (lambda x: metrics.energy_j(np.zeros((4, 2)), x, 0.002), "substep_qvel"),
])
def test_every_array_argument_is_named_in_its_shape_error(function, argument):
    with pytest.raises(ValueError, match=rf"^{argument} must be a 2-D array \(rows are samples\), got shape \(4,\)$"):
        function(np.zeros(4))


def test_any_positive_control_frequency():
    assert metrics.completion_time_s(3, 0.5) == 6.0  # slow control loops are valid
    with pytest.raises(ValueError, match="control_freq_hz must be positive, got -1"):
        metrics.completion_time_s(3, -1)


def test_integer_samples_are_numbers_not_wrapping_integers():
    # unsigned integer arrays would wrap on differences (0 - 255 = 1 in uint8)
    actions = np.array([[0], [255], [0]], dtype=np.uint8)
    assert metrics.action_rate(actions) == 255.0
    assert metrics.joint_rotation_rad(actions) == 510.0
    assert metrics.ee_path_m(np.array([[0, 0, 0], [3, 4, 0]], dtype=np.uint8)) == 5.0
    qvel = np.array([[0], [200], [0]], dtype=np.uint8)  # second difference -400
    assert metrics.jerk_ms(qvel, 1.0) == 400.0**2
    torque, qd = np.array([[0, 250]], dtype=np.uint8), np.array([[0, 250]], dtype=np.uint8)
    assert metrics.energy_j(torque, qd, 1.0) == 62500.0 and metrics.effort_nm2s(torque, 1.0) == 62500.0


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("n_steps", [0, 1, 2, 3, 57])
def test_running_metrics_equal_the_batch_functions(n_steps, compiled):
    rng = np.random.default_rng(n_steps)
    q = rng.normal(size=(n_steps + 1, 7))
    qd = rng.normal(size=(n_steps + 1, 7))
    p = rng.normal(size=(n_steps + 1, 3))
    a = rng.uniform(-1, 1, size=(n_steps, 7))
    substeps, dt = 25, 0.002
    torque = rng.normal(scale=40.0, size=(n_steps * substeps, 7))
    sub_qd = rng.normal(size=(n_steps * substeps, 7))
    torque_limit = np.array([80.0] * 5 + [12.0, np.nan])
    velocity_limit = np.array([2.175] * 4 + [2.61] * 3)
    running = RunningMetrics(F, n_joints=7, action_dim=7, torque_limit=torque_limit,
                             velocity_limit=velocity_limit, compiled=compiled)
    running.reset(q[0], qd[0], p[0])
    for t in range(n_steps):
        s = slice(t * substeps, (t + 1) * substeps)
        running.update(q[t + 1], qd[t + 1], p[t + 1], a[t], torque[s], sub_qd[s], dt)
    expected = metrics.episode_metrics(q, qd, p, a, torque, sub_qd, F, dt)
    expected.update(metrics.actuator_ledger(torque, sub_qd, dt, torque_limit, velocity_limit))
    got = running.values()
    assert list(got) == list(metrics.METRIC_KEYS)
    unlimited = RunningMetrics(F, n_joints=7, action_dim=7)
    unlimited.reset(q[0], qd[0], p[0])
    assert all(math.isnan(unlimited.values()[k]) for k in ("peak_torque_frac", "torque_saturation_frac", "peak_joint_speed_frac"))
    for key in metrics.METRIC_KEYS:
        if n_steps == 0 and key in ("peak_torque_frac", "torque_saturation_frac", "peak_joint_speed_frac"):
            assert got[key] == 0.0, key  # at reset, like every metric (the batch function has no sample: NaN)
            continue
        assert got[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key


# -- the actuator ledger: closed forms --------------------------------------------------------
def test_work_splits_energy_into_driving_and_braking():
    # joint 0 drives (tau and qd agree), joint 1 brakes (they oppose), one substep each of dt
    dt = 0.002
    torque = np.array([[2.0, 3.0], [2.0, -3.0], [0.0, 1.0]])
    qvel = np.array([[1.5, 4.0], [0.5, 4.0], [7.0, 0.0]])
    assert metrics.positive_work_j(torque, qvel, dt) == pytest.approx((3.0 + 12.0 + 1.0) * dt)
    assert metrics.negative_work_j(torque, qvel, dt) == pytest.approx(-12.0 * dt)
    assert metrics.positive_work_j(torque, qvel, dt) - metrics.negative_work_j(torque, qvel, dt) == pytest.approx(
        metrics.energy_j(torque, qvel, dt))


def test_a_constant_torque_against_a_sinusoidal_velocity_does_no_net_work():
    # tau = 2 N m, qd = sin(2 pi s / S) over a whole period: +W and -W cancel, each 2 * S / pi * dt
    S, dt = 1000, 0.001
    qd = np.sin(2 * np.pi * (np.arange(S) + 0.5) / S)[:, None]
    tau = np.full((S, 1), 2.0)
    expected = 2.0 * S / np.pi * dt
    assert metrics.positive_work_j(tau, qd, dt) == pytest.approx(expected, rel=1e-5)
    assert metrics.negative_work_j(tau, qd, dt) == pytest.approx(-expected, rel=1e-5)


def test_peak_and_saturation_against_the_limits():
    limit = np.array([80.0, 12.0, np.nan])  # the third joint has no limit: left out
    torque = np.array([[40.0, 11.7, 1e6], [-79.0, -6.0, 0.0], [10.0, 12.0, 5.0], [0.0, 0.0, 0.0]])
    # |tau| / limit: 0.5 0.975 | 0.9875 0.5 | 0.125 1.0 | 0 0 -> peak 1.0; >= 0.98: 0.9875 and 1.0
    assert metrics.peak_torque_frac(torque, limit) == 1.0
    assert metrics.torque_saturation_frac(torque, limit) == 2 / 8
    assert metrics.torque_saturation_frac(torque, limit, threshold=0.97) == 3 / 8
    qd = np.array([[1.0, -5.22, 9.0]])
    assert metrics.peak_joint_speed_frac(qd, [2.175, 2.61, np.inf]) == pytest.approx(2.0)


def test_ledger_without_limits_or_samples_is_nan_and_bad_limits_are_named():
    assert math.isnan(metrics.peak_torque_frac(np.ones((3, 2)), [np.nan, np.inf]))
    assert math.isnan(metrics.torque_saturation_frac(np.zeros((0, 2)), [1.0, 1.0]))
    assert math.isnan(metrics.peak_joint_speed_frac(np.zeros((0, 2)), [1.0, 1.0]))
    with pytest.raises(ValueError, match=r"torque limit must have one value per joint, shape \(2,\), got \(3,\)"):
        metrics.peak_torque_frac(np.ones((3, 2)), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"substep_qvel limit must be positive .*got \[0.0, 1.0\]"):
        metrics.peak_joint_speed_frac(np.ones((3, 2)), [0.0, 1.0])
    ledger = metrics.actuator_ledger(np.ones((4, 2)), np.ones((4, 2)), 0.5, [2.0, 4.0], [np.nan, np.nan])
    assert list(ledger) == list(metrics.LEDGER_KEYS)
    assert ledger["positive_work_j"] == 4.0 and ledger["negative_work_j"] == 0.0
    assert ledger["peak_torque_frac"] == 0.5 and ledger["torque_saturation_frac"] == 0.0
    assert math.isnan(ledger["peak_joint_speed_frac"])


def test_ledger_shape_errors_name_their_argument_and_the_threshold_is_inclusive():
    for function in (metrics.positive_work_j, metrics.negative_work_j):
        with pytest.raises(ValueError, match=r"^torque must be a 2-D array"):
            function(np.zeros(4), np.zeros((4, 1)), 0.1)
        with pytest.raises(ValueError, match=r"^substep_qvel must be a 2-D array"):
            function(np.zeros((4, 1)), np.zeros(4), 0.1)
        with pytest.raises(ValueError, match=r"^torque \(4, 1\) and substep_qvel \(4, 2\) must have the same shape$"):
            function(np.zeros((4, 1)), np.zeros((4, 2)), 0.1)
    with pytest.raises(ValueError, match=r"^torque must be a 2-D array"):
        metrics.torque_saturation_frac(np.zeros(4), [1.0])
    with pytest.raises(ValueError, match=r"^substep_qvel must be a 2-D array"):
        metrics.peak_joint_speed_frac(np.zeros(4), [1.0])
    # a sample at exactly 98 % of its limit is saturated
    assert metrics.torque_saturation_frac(np.array([[49.0], [10.0]]), [50.0]) == 0.5


def test_seam_and_within_parts_sum_to_the_totals_and_land_where_chunks_start():
    from wrappers.metrics import action_rate, action_rate_parts, jerk_ms, jerk_ms_parts

    # one joint; velocities 0, 0, 1, 1, 1, 3: second differences (f = 2) at samples 2..5 are
    # 1, -1, 0, 2 -> summands f^4 * d^2 / 4 = 4, 4, 0, 16 (J = 24)
    qvel = np.array([[0.0], [0.0], [1.0], [1.0], [1.0], [3.0]])
    seam = np.array([False, False, True, False, False, True])  # chunks start at samples 2 and 5
    at_seam, within = jerk_ms_parts(qvel, 2.0, seam)
    assert jerk_ms(qvel, 2.0) == pytest.approx(24.0)
    assert (at_seam, within) == (pytest.approx(4.0 + 16.0), pytest.approx(4.0 + 0.0))
    # actions 0, 1, 1, 4: changes 1, 0, 3 over 3 pairs -> 1/3, 0, 1; a new chunk opens at action 3
    actions = np.array([[0.0], [1.0], [1.0], [4.0]])
    at_seam, within = action_rate_parts(actions, np.array([True, False, False, True]))
    assert (at_seam, within) == (pytest.approx(1.0), pytest.approx(1.0 / 3.0))
    assert at_seam + within == pytest.approx(action_rate(actions))
    with pytest.raises(ValueError, match="one flag per velocity sample"):
        jerk_ms_parts(qvel, 2.0, seam[:-1])
