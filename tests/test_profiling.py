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

    def torch_module(self):
        return self.model

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


def test_peak_memory_sees_torch_tensors_of_a_known_size():
    """tracemalloc does not see torch's allocator: a 38 MB tensor must still show (within 20 %)."""
    import torch

    class TorchScratch(Policy):
        action_dim = 2

        def __init__(self):
            self.model = torch.nn.Linear(2, 2)

        def torch_module(self):
            return self.model

        def act(self, obs):
            scratch = torch.ones(38 * 2**20 // 4)  # 38 MB of float32, freed when the call returns
            return np.full((1, 2), float(scratch[0]), np.float32)

    peak = profile(TorchScratch(), OBS, repeats=2, warmup=1).peak_memory_mb
    assert 0.8 * 38 <= peak <= 1.2 * 38


def test_weight_memory_counts_the_effective_precision():
    import torch

    from policies.compression.quantization import dynamic_int8, fake_quantize
    from policies.profiling import weight_bytes

    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    fp32 = 4 * (64 * 32 + 32 + 32 * 8 + 8)
    assert weight_bytes(model) == fp32
    # int4: half a byte per weight, a float32 scale per output row, float32 biases
    assert weight_bytes(fake_quantize(model, 4)) == (64 * 32 + 32 * 8) // 2 + 4 * (32 + 8) + 4 * (32 + 8)
    assert weight_bytes(fake_quantize(model, 8)) == (64 * 32 + 32 * 8) + 4 * (32 + 8) + 4 * (32 + 8)
    assert weight_bytes(dynamic_int8(model)) == (64 * 32 + 32 * 8) + 4 * (32 + 8) + 4 * (32 + 8)


def test_allocated_weight_memory_is_what_the_process_holds():
    import torch

    from policies.compression.quantization import dynamic_int8, fake_quantize
    from policies.profiling import allocated_weight_bytes, profile

    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    fp32 = 4 * (64 * 32 + 32 + 32 * 8 + 8)
    assert allocated_weight_bytes(model) == fp32
    # fake quantization rounds float32 values in place: memory does not shrink
    assert allocated_weight_bytes(fake_quantize(model, 4)) == fp32
    # torch.ao: int8 weights, one float64 scale and int64 zero point per tensor, float32 biases
    assert allocated_weight_bytes(dynamic_int8(model)) == (64 * 32 + 32 * 8) + 16 * 2 + 4 * (32 + 8)
    # a weight shared by two layers is one allocation
    shared = torch.nn.Sequential(model[0], torch.nn.ReLU(), torch.nn.Linear(32, 64))
    shared[2].weight = torch.nn.Parameter(model[0].weight.detach().T)  # a view of the same storage
    assert allocated_weight_bytes(shared) == 4 * (64 * 32 + 32 + 64)

    mlp = nn.Sequential(nn.Linear(60, 128), nn.ReLU(), nn.Linear(128, 56))
    result = profile(MLPPolicy(fake_quantize(mlp, 4)), OBS, repeats=1, warmup=0)
    assert result.weight_allocated_mb * 2**20 == 4 * (60 * 128 + 128 + 128 * 56 + 56) > result.weight_memory_mb * 2**20
