"""Each compression method changes what it should and nothing else."""

import numpy as np
import pytest
import torch
from torch import nn

from policies.base import Policy

from policies.compression import (
    dct_compress,
    dynamic_int8,
    fake_quantize,
    fake_quantize_weight,
    magnitude_prune,
    structured_prune_rows,
    temporal_downsample,
)


@pytest.fixture
def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))


@pytest.mark.parametrize("bits, levels", [(4, 16), (8, 256)])
def test_fake_quantization_levels_per_channel(mlp, bits, levels):
    q = fake_quantize(mlp, bits)
    for original, layer in ((mlp[0], q[0]), (mlp[2], q[2])):
        for row_q, row in zip(layer.weight, original.weight):
            distinct = torch.unique(row_q).numel()
            assert distinct <= levels
            # the largest magnitude survives exactly; every value within half a step
            step = row.abs().max() / (2 ** (bits - 1) - 1)
            assert torch.isclose(row_q.abs().max(), row.abs().max())
            assert (row_q - row).abs().max() <= step / 2 + 1e-6
        assert torch.equal(layer.bias, original.bias)  # biases untouched
    assert not torch.equal(q[0].weight, mlp[0].weight)


def test_fake_quantization_int4_levels_on_a_ramp():
    w = torch.linspace(-1, 1, 1000).reshape(1, -1)
    levels = torch.unique(fake_quantize_weight(w, 4))
    # symmetric scaling maps +-max to +-7 steps: 15 of the 16 int4 codes are used
    assert levels.numel() == 15
    torch.testing.assert_close(levels, torch.arange(-7, 8) / 7.0)
    with pytest.raises(ValueError, match="bits=1"):
        fake_quantize_weight(w, 1)


def test_dynamic_int8_is_real_int8_and_close(mlp):
    q = dynamic_int8(mlp)
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    assert isinstance(q[0], DynamicQuantizedLinear) and isinstance(q[2], DynamicQuantizedLinear)
    assert q[0].weight().dtype == torch.qint8
    x = torch.randn(8, 32)
    with torch.no_grad():
        assert torch.allclose(q(x), mlp(x), atol=0.05)


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.3, 0.9])
def test_magnitude_pruning_fraction_is_exact(mlp, fraction):
    pruned = magnitude_prune(mlp, fraction)
    for original, layer in ((mlp[0], pruned[0]), (mlp[2], pruned[2])):
        n = layer.weight.numel()
        zero = layer.weight == 0
        assert int(zero.sum()) == int(fraction * n)
        kept = ~zero
        assert torch.equal(layer.weight[kept], original.weight[kept])  # survivors unchanged
        if zero.any():  # the zeroed weights are the smallest ones
            assert original.weight[zero].abs().max() <= original.weight[kept].abs().min()


def test_structured_pruning_zeroes_whole_rows(mlp):
    pruned = structured_prune_rows(mlp, 0.25)
    layer = pruned[0]
    dead = (layer.weight == 0).all(dim=1)
    assert int(dead.sum()) == 16 and torch.all(layer.bias[dead] == 0)
    norms = mlp[0].weight.norm(dim=1)
    assert norms[dead].max() <= norms[~dead].min()
    with pytest.raises(ValueError, match="fraction=1.0"):
        structured_prune_rows(mlp, 1.0)


def test_dct_with_all_coefficients_is_the_identity():
    chunk = np.random.default_rng(0).normal(size=(8, 7)).astype(np.float32)
    np.testing.assert_allclose(dct_compress(chunk, keep=8), chunk, atol=1e-6)


def test_dct_truncation_keeps_smooth_signals_and_drops_wiggles():
    t = np.arange(16)[:, None]
    smooth = np.cos(np.pi * (t + 0.5) * 1 / 16)  # exactly DCT basis 1
    wiggle = np.cos(np.pi * (t + 0.5) * 12 / 16)  # basis 12
    np.testing.assert_allclose(dct_compress(smooth, keep=4), smooth, atol=1e-6)
    np.testing.assert_allclose(dct_compress(smooth + wiggle, keep=4), smooth, atol=1e-6)
    coarse = dct_compress(smooth, keep=16, quantization_scale=4.0)
    from scipy.fft import dct

    coefficients = dct(coarse.astype(np.float64), norm="ortho", axis=0) * 4.0
    np.testing.assert_allclose(coefficients, np.round(coefficients), atol=1e-4)  # multiples of 1/4
    assert 0 < np.abs(coarse - smooth).max()
    with pytest.raises(ValueError, match=r"keep=9: expected 1..8"):
        dct_compress(np.zeros((8, 2)), keep=9)


def test_temporal_downsampling_interpolates_linearly():
    chunk = np.stack([np.arange(8.0) ** 2, np.arange(8.0)], axis=1)
    out = temporal_downsample(chunk, 2)
    np.testing.assert_array_equal(out[[0, 2, 4, 6, 7]], chunk[[0, 2, 4, 6, 7]])
    assert out[1, 0] == (0 + 4) / 2 and out[3, 0] == (4 + 16) / 2
    np.testing.assert_array_equal(out[:, 1], chunk[:, 1])  # linear signals are untouched
    np.testing.assert_array_equal(temporal_downsample(chunk, 1), chunk)


def _adapter(mlp_model):
    from policies.adapters import ModuleAdapter

    return ModuleAdapter(mlp_model, action_dim=2, chunk_size=8)


def test_compress_from_a_spec_changes_only_what_it_names(mlp, tmp_path):
    from policies import ChunkExecutor
    from policies.compression import compress

    policy = _adapter(mlp)
    obs = {"state": np.linspace(-1, 1, 32).astype(np.float32)}
    base_chunk = policy.act(obs)

    pruned = compress(policy, {"pruning": {"fraction": 0.3}}, base_name="mlp")
    assert pruned.variant_card == {
        "base_model": "mlp", "methods": ["pruning"], "parameters": {"pruning": {"fraction": 0.3, "structured": False}},
    }
    assert int((pruned.torch_module()[0].weight == 0).sum()) == int(0.3 * 32 * 64)
    assert torch.equal(policy.model[0].weight, mlp[0].weight)  # the base policy is untouched

    spec_file = tmp_path / "int4_dct.yaml"
    spec_file.write_text("quantization: {method: fake, bits: 4}\naction_codec: {dct_keep: 8}\nexecution: {open_loop_steps: 4}\n")
    variant = compress(policy, spec_file)
    assert variant.variant_card["methods"] == ["quantization", "action_codec", "execution"]
    assert torch.unique(variant.torch_module()[0].weight[0]).numel() <= 16
    chunk = variant.act(obs)
    assert chunk.shape == base_chunk.shape and not np.array_equal(chunk, base_chunk)
    executor = ChunkExecutor(variant, execute_steps=variant.execute_steps)
    for t in range(8):
        executor.step(obs)
    assert executor.inference_calls == 2

    codec_only = compress(policy, {"action_codec": {"dct_keep": 8}})
    np.testing.assert_allclose(codec_only.act(obs), base_chunk, atol=1e-5)  # all coefficients: identity
    assert codec_only.base is policy  # no weight method: no copy


def test_compress_rejects_what_it_cannot_do(mlp, tmp_path):
    from policies.compression import compress
    from vla_envs.config import ConfigError

    policy = _adapter(mlp)
    with pytest.raises(ValueError, match="does not support token sparsification"):
        compress(policy, {"token_sparsification": {"keep": 0.5}})
    with pytest.raises(Exception, match="fraction"):
        compress(policy, {"pruning": {"fraction": 1.5}})
    with pytest.raises(Exception, match="Extra inputs"):
        compress(policy, {"distillation": {}})
    with pytest.raises(ValueError, match=r"open_loop_steps=9: expected <= chunk size 8"):
        compress(policy, {"execution": {"open_loop_steps": 9}})

    class NoModel(Policy):
        action_dim, chunk_size = 2, 1

        def act(self, obs):
            return np.zeros((1, 2), np.float32)

    with pytest.raises(ValueError, match="has no torch module"):
        compress(NoModel(), {"quantization": {"bits": 8}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("quantization: {bits: 3}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: field 'quantization.bits' = 3"):
        compress(policy, bad)


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def _assert_unchanged(module: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = module.state_dict()
    assert list(after) == list(before)
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), f"{name} changed in place"


METHODS = {
    "fake_int8": lambda m: fake_quantize(m, 8),
    "fake_int4": lambda m: fake_quantize(m, 4),
    "dynamic_int8": dynamic_int8,
    "magnitude_prune": lambda m: magnitude_prune(m, 0.5),
    "structured_prune_rows": lambda m: structured_prune_rows(m, 0.5),
}


@pytest.mark.parametrize("method", list(METHODS))
def test_every_weight_method_leaves_its_input_unchanged(mlp, method):
    before = _snapshot(mlp)
    out = METHODS[method](mlp)
    assert out is not mlp
    _assert_unchanged(mlp, before)
    # and the output did change: a method that returned its input untouched would pass above
    changed = out.state_dict() if method != "dynamic_int8" else {"0.weight": out[0].weight().dequantize()}
    assert not torch.equal(changed["0.weight"], before["0.weight"])


SPECS = {
    "quantization": {"quantization": {"method": "fake", "bits": 4}},
    "dynamic_int8": {"quantization": {"method": "dynamic_int8"}},
    "pruning": {"pruning": {"fraction": 0.5}},
    "structured": {"pruning": {"fraction": 0.5, "structured": True}},
    "tokens": {"token_sparsification": {"keep": 0.25, "method": "norm"}},
    "codec": {"action_codec": {"dct_keep": 2, "downsample": 2}},
    "everything": {"quantization": {"bits": 4}, "pruning": {"fraction": 0.3},
                   "token_sparsification": {"keep": 0.5}, "action_codec": {"dct_keep": 3}},
}


@pytest.mark.parametrize("spec", list(SPECS))
def test_compress_leaves_the_base_policy_unchanged(spec):
    """TinyVLA (every method applies to it): the base keeps its weights, its token setting and
    its actions, whatever ``compress`` did to the variant."""
    from policies.compression import compress
    from policies.tinyvla import load_reference

    policy = load_reference()
    rng = np.random.default_rng(0)
    obs = {
        "image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
        "wrist_image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
        "proprio": rng.normal(size=policy.model.config.proprio_dim).astype(np.float32),
    }
    policy.reset("pick up the red cube and lift it off the table")
    chunk = policy.act(obs)
    before = _snapshot(policy.model)
    token_setting = (policy.model.token_keep, policy.model.token_method)

    variant = compress(policy, SPECS[spec])
    variant.reset("pick up the red cube and lift it off the table")
    assert not np.array_equal(variant.act(obs), chunk)  # the variant is compressed

    _assert_unchanged(policy.model, before)
    assert (policy.model.token_keep, policy.model.token_method) == token_setting
    policy.reset("pick up the red cube and lift it off the table")
    np.testing.assert_array_equal(policy.act(obs), chunk)


# -- edges (each found by a surviving mutant, docs/testing.md) ----------------------------------
def test_fake_quantization_bit_range_and_errors():
    w = torch.linspace(-1, 1, 100).reshape(2, 50)
    assert torch.unique(fake_quantize_weight(w, 2)).numel() <= 3  # 2 bits: -1, 0, +1 steps
    assert torch.unique(fake_quantize_weight(w, 16)).numel() == 100  # fine enough for every value
    for bits in (1, 17):
        with pytest.raises(ValueError, match=rf"bits={bits}: expected 2..16"):
            fake_quantize_weight(w, bits)
    with pytest.raises(ValueError, match=r"weight must have an output-channel dimension, got shape \(5,\)"):
        fake_quantize_weight(torch.ones(5), 8)


def test_fake_quantization_keeps_an_all_zero_row_zero():
    w = torch.tensor([[0.0, 0.0, 0.0], [0.5, -1.0, 0.25]])
    q = fake_quantize_weight(w, 4)
    assert torch.equal(q[0], torch.zeros(3)) and torch.isfinite(q).all()


def test_dynamic_int8_quantizes_only_linear_layers():
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    torch.manual_seed(0)
    model = nn.ModuleDict({"rnn": nn.LSTM(4, 8), "head": nn.Linear(8, 2)})
    q = dynamic_int8(model)
    assert isinstance(q["head"], DynamicQuantizedLinear)
    assert type(q["rnn"]) is nn.LSTM  # torch's default set would quantize the LSTM too


class Headed(nn.Module):
    """A trunk and an action head; the head is listed in ``pruning_exclude``."""

    pruning_exclude = ("head",)

    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(8, 8)
        self.head = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2))
        self.head2 = nn.Linear(8, 8)  # "head2" is not "head" nor inside it


@pytest.mark.parametrize("prune", [magnitude_prune, structured_prune_rows])
def test_pruning_leaves_the_models_excluded_layers_whole(prune):
    torch.manual_seed(0)
    model = Headed()
    pruned = prune(model, 0.5)
    for name in ("head.0", "head.1"):
        assert torch.equal(pruned.get_submodule(name).weight, model.get_submodule(name).weight), name
    for name in ("trunk", "head2"):
        assert (pruned.get_submodule(name).weight == 0).any(), name
    # an explicit exclude replaces the model's list
    explicit = prune(model, 0.5, exclude=("trunk",))
    assert torch.equal(explicit.trunk.weight, model.trunk.weight)
    assert (explicit.get_submodule("head.0").weight == 0).any()


def test_magnitude_pruning_breaks_ties_by_position():
    layer = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]]))
    pruned = magnitude_prune(nn.Sequential(layer), 0.5)[0]
    assert torch.equal(pruned.weight != 0, torch.tensor([[False] * 4, [True] * 4]))


def test_action_codec_edges():
    chunk = np.random.default_rng(1).normal(size=(6, 3))
    np.testing.assert_allclose(dct_compress(chunk, keep=1), np.tile(chunk.mean(axis=0), (6, 1)), atol=1e-6)
    one = np.array([[0.25, -0.5]])
    np.testing.assert_allclose(dct_compress(one, keep=1), one, atol=1e-7)  # a chunk of one action
    np.testing.assert_array_equal(temporal_downsample(one, 3), one.astype(np.float32))
    for out in (dct_compress(chunk, 3), dct_compress(chunk, 6, 0.5), temporal_downsample(chunk, 2)):
        assert out.dtype == np.float32
    with pytest.raises(ValueError, match=r"action chunk must have shape \(H, D\) with H >= 1, got \(6,\)"):
        dct_compress(np.zeros(6), 1)
    with pytest.raises(ValueError, match=r"action chunk must have shape \(H, D\) with H >= 1, got \(0, 3\)"):
        temporal_downsample(np.zeros((0, 3)), 2)
    with pytest.raises(ValueError, match=r"quantization_scale=0: expected > 0"):
        dct_compress(chunk, 6, 0)
    with pytest.raises(ValueError, match=r"factor=0: expected >= 1"):
        temporal_downsample(chunk, 0)


@pytest.mark.parametrize("scale", [0.5, 4.0, 10.0])
def test_dct_quantization_error_is_at_most_half_a_step_per_coefficient(scale):
    from scipy.fft import dct

    chunk = np.random.default_rng(2).normal(size=(8, 3))
    coefficients = dct(chunk, norm="ortho", axis=0)
    coarse = dct(dct_compress(chunk, 8, scale).astype(np.float64), norm="ortho", axis=0)
    assert np.abs(coarse - coefficients).max() <= 0.5 / scale + 1e-5
    np.testing.assert_allclose(coarse * scale, np.round(coarse * scale), atol=1e-4)


def test_compress_applies_exactly_the_named_codec_and_settings(mlp):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    from policies.compression import compress

    policy = _adapter(mlp)
    obs = {"state": np.linspace(-1, 1, 32).astype(np.float32)}
    chunk = policy.act(obs)
    cases = {
        "quantization_scale": ({"action_codec": {"quantization_scale": 2.0}}, dct_compress(chunk, 8, 2.0)),
        "dct_keep": ({"action_codec": {"dct_keep": 3}}, dct_compress(chunk, 3)),
        "downsample": ({"action_codec": {"downsample": 3}}, temporal_downsample(chunk, 3)),
        "both": ({"action_codec": {"dct_keep": 3, "quantization_scale": 2.0, "downsample": 2}},
                 temporal_downsample(dct_compress(chunk, 3, 2.0), 2)),
    }
    for name, (spec, expected) in cases.items():
        np.testing.assert_allclose(compress(policy, spec).act(obs), expected, atol=1e-6, err_msg=name)

    structured = compress(policy, {"pruning": {"fraction": 0.25, "structured": True}})
    assert int((structured.torch_module()[0].weight == 0).all(dim=1).sum()) == 16
    dynamic = compress(policy, {"quantization": {"method": "dynamic_int8"}})
    assert isinstance(dynamic.torch_module()[0], DynamicQuantizedLinear)

    full = compress(policy, {"execution": {"open_loop_steps": 8}})  # k = chunk size is allowed
    assert full.execute_steps == 8
    full.reset("lift the cube")
    assert full.instruction == "lift the cube" and policy.instruction == "lift the cube"
    full.reset()
    assert full.instruction == "" and policy.instruction == ""

    with pytest.raises(ValueError, match=r"^ModuleAdapter does not support token sparsification \(it does not override Policy.set_token_sparsification\)$"):
        compress(policy, {"token_sparsification": {"keep": 0.5}})


def test_compress_sets_the_token_method_and_names_the_base():
    from policies.compression import compress
    from policies.tinyvla import load_reference

    policy = load_reference()
    variant = compress(policy, {"token_sparsification": {"keep": 0.5, "method": "random"}})
    assert (variant.torch_module().token_keep, variant.torch_module().token_method) == (0.5, "random")
    assert compress(policy, {"action_codec": {"dct_keep": 2}}).variant_card["base_model"] == "TinyVLAPolicy"

    class NoModel(Policy):
        action_dim, chunk_size = 2, 1

        def act(self, obs):
            return np.zeros((1, 2), np.float32)

    with pytest.raises(ValueError, match=r"^NoModel has no torch module"):
        compress(NoModel(), {"pruning": {"fraction": 0.1}})


def test_layer_skipping_saves_exactly_the_skipped_blocks_flops_and_leaves_the_base_alone():
    from policies.compression import compress
    from policies.profiling import profile
    from policies.tinyvla import load_reference

    policy = load_reference()
    rng = np.random.default_rng(0)
    config = policy.model.config
    obs = {"image": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
           "wrist_image": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
           "proprio": rng.normal(size=config.proprio_dim).astype(np.float32)}
    policy.reset("lift the red cube")
    base_chunk = policy.act(obs)
    flops = {}
    for blocks in ([3], [2, 3]):
        variant = compress(policy, {"layer_skip": {"blocks": blocks}})
        variant.reset("lift the red cube")
        assert not np.array_equal(variant.act(obs), base_chunk)
        flops[len(blocks)] = profile(variant, obs, repeats=1, warmup=0).flops_per_call
    assert policy.model.skip_blocks == frozenset()
    flops[0] = profile(policy, obs, repeats=1, warmup=0).flops_per_call
    # every block sees the same tokens (no sparsification): each skipped one saves the same FLOPs
    assert flops[0] - flops[1] == flops[1] - flops[2] > 0


@pytest.mark.parametrize("blocks, message", [([4], "from 0 to 3"), ([0, 2, 3, 3], "distinct"),
                                              ([1], "cannot be skipped"), ([0, 1, 2, 3], "one block must run")])
def test_layer_skipping_refuses_blocks_it_cannot_skip(blocks, message):
    from policies.compression import compress
    from policies.tinyvla import load_reference

    with pytest.raises(ValueError, match=message):
        compress(load_reference(), {"layer_skip": {"blocks": blocks}})
