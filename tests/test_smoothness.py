"""Smoothness losses on action chunks whose differences are known in closed form."""

import pytest
import torch

from policies.smoothness import (
    SmoothnessWeights,
    action_rate_loss,
    continuity_loss,
    jerk_loss,
    smoothness_loss,
)


def _chunk(values) -> torch.Tensor:
    """(H,) or (H, D) values as a (1, H, D) float64 chunk."""
    tensor = torch.as_tensor(values, dtype=torch.float64)
    return (tensor[:, None] if tensor.ndim == 1 else tensor)[None]


def test_a_ramp_has_its_slope_squared_as_rate_and_no_jerk():
    ramp = _chunk([[0.0, 1.0], [0.5, 0.7], [1.0, 0.4], [1.5, 0.1]])  # slopes 0.5 and -0.3 per step
    assert action_rate_loss(ramp).item() == pytest.approx(0.5**2 + 0.3**2)
    assert jerk_loss(ramp).item() == pytest.approx(0.0, abs=1e-15)


def test_a_parabola_has_a_constant_second_difference():
    t = torch.arange(6, dtype=torch.float64)
    parabola = _chunk(0.5 * 3.0 * t**2)  # second difference 3.0 at every interior step
    assert jerk_loss(parabola).item() == pytest.approx(9.0)
    first = 1.5 * (2 * t[:-1] + 1)  # (t+1)^2 - t^2 = 2t + 1
    assert action_rate_loss(parabola).item() == pytest.approx(float((first**2).mean()))


def test_alternating_actions_are_the_roughest():
    alternating = _chunk([1.0, -1.0, 1.0, -1.0])
    assert action_rate_loss(alternating).item() == pytest.approx(4.0)
    assert jerk_loss(alternating).item() == pytest.approx(16.0)


def test_continuity_compares_the_overlap_of_consecutive_chunks():
    previous = _chunk([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    on_plan = _chunk([2.0, 3.0, 4.0, 5.0, 9.0, 9.0])  # rows 0..3 continue previous rows 2..5
    assert continuity_loss(on_plan, previous, shift=2).item() == 0.0
    jumped = _chunk([2.5, 3.5, 4.5, 5.5, 0.0, 0.0])  # 0.5 off on the 4 overlapping rows
    assert continuity_loss(jumped, previous, shift=2).item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"shift=6: expected 1 <= shift < H = 6"):
        continuity_loss(on_plan, previous, shift=6)
    with pytest.raises(ValueError, match=r"chunk \(1, 6, 1\) and previous \(1, 5, 1\) must have the same shape"):
        continuity_loss(on_plan, previous[:, :5], shift=2)


def test_batches_average_over_samples():
    batch = torch.cat([_chunk([0.0, 1.0, 2.0]), _chunk([0.0, 0.0, 0.0])])
    assert action_rate_loss(batch).item() == pytest.approx(0.5)


def test_the_weighted_sum_and_its_gradient():
    chunk = _chunk([0.0, 1.0, 0.0, 1.0]).requires_grad_(True)
    previous = _chunk([9.0, 9.0, 1.0, 0.0])
    weights = SmoothnessWeights(action_rate=2.0, jerk=0.5, continuity=1.0, shift=2)
    total, terms = smoothness_loss(chunk, weights, previous)
    assert terms == {"action_rate": pytest.approx(1.0), "jerk": pytest.approx(4.0), "continuity": pytest.approx(1.0)}
    assert total.item() == pytest.approx(2.0 * 1.0 + 0.5 * 4.0 + 1.0 * 1.0)
    total.backward()
    assert chunk.grad is not None and torch.isfinite(chunk.grad).all() and chunk.grad.abs().sum() > 0
    # a term with weight 0, or continuity without a previous chunk, is left out
    _, only_jerk = smoothness_loss(chunk.detach(), SmoothnessWeights(jerk=1.0, continuity=1.0))
    assert list(only_jerk) == ["jerk"]


def test_shapes_and_weights_are_checked():
    with pytest.raises(ValueError, match=r"chunk must have shape \(B, H, D\), got \(4, 2\)"):
        action_rate_loss(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"chunk has horizon H = 2: expected H >= 3"):
        jerk_loss(torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match=r"jerk=-1.0: expected a finite weight >= 0"):
        SmoothnessWeights(jerk=-1.0)
    with pytest.raises(ValueError, match=r"action_rate=nan: expected a finite weight >= 0"):
        SmoothnessWeights(action_rate=float("nan"))
