"""profile(): parameter counts, FLOPs and latency on small real torch policies."""

import numpy as np
import pytest
import torch
from torch import nn

from policies import Policy
from policies.compression import dynamic_int8, magnitude_prune
from policies.profiling import profile


class MLPPolicy(Policy):
    action_dim = 7
    chunk_size = 8

    def __init__(self, model):
        self.model = model

    def act(self, obs):
        with torch.no_grad():
            out = self.model(torch.as_tensor(obs["state"], dtype=torch.float32)[None])
        return out.reshape(self.chunk_size, self.action_dim).numpy()


@pytest.fixture
def policy():
    torch.manual_seed(0)
    return MLPPolicy(nn.Sequential(nn.Linear(60, 128), nn.ReLU(), nn.Linear(128, 56)))


OBS = {"state": np.zeros(60, np.float32)}


def test_profile_counts_params_and_flops(policy):
    result = profile(policy, OBS, repeats=10)
    assert result.params == 60 * 128 + 128 + 128 * 56 + 56
    assert result.nonzero_params == result.params
    assert result.flops_per_call == 2 * (60 * 128 + 128 * 56)  # one multiply-add = 2 FLOPs
    assert 0 < result.latency_median_ms <= result.latency_p90_ms
    assert result.calls == 10
    assert set(result.to_dict()) >= {"params", "flops_per_call", "latency_median_ms"}


def test_profile_sees_pruning_and_int8(policy):
    pruned = MLPPolicy(magnitude_prune(policy.model, 0.5))
    result = profile(pruned, OBS, repeats=3)
    weights = 60 * 128 + 128 * 56
    assert result.params == profile(policy, OBS, repeats=3).params
    assert result.nonzero_params <= result.params - weights // 2 + 1
    quantized = profile(MLPPolicy(dynamic_int8(policy.model)), OBS, repeats=3)
    assert quantized.params == result.params  # the int8 weights are still counted
    assert quantized.flops_per_call == 2 * weights  # counted for the quantized kernels too


def test_profile_of_a_policy_without_a_model():
    class Constant(Policy):
        action_dim = 2

        def act(self, obs):
            return np.zeros((1, 2), np.float32)

    result = profile(Constant(), OBS, repeats=5)
    assert result.params is None and result.flops_per_call is None and result.latency_median_ms >= 0
    with pytest.raises(ValueError, match="repeats=0"):
        profile(Constant(), OBS, repeats=0)


def test_peak_memory_sees_what_a_call_allocates():
    class Allocating(Policy):
        action_dim = 2

        def __init__(self, megabytes: int):
            self.n = megabytes * 2**20 // 8

        def act(self, obs):
            scratch = np.ones(self.n)  # float64: 8 bytes each, freed when the call returns
            return np.full((1, 2), scratch.size, np.float32)

    small = profile(Allocating(0), OBS, repeats=3).peak_memory_mb
    large = profile(Allocating(16), OBS, repeats=3).peak_memory_mb
    assert small < 1.0
    assert 16.0 <= large < 16.0 + 1.0
