"""ModuleAdapter with small real torch modules and callables."""

import numpy as np
import pytest
import torch
from torch import nn

from policies import ActionNormalizer
from policies.adapters import ModuleAdapter


def test_module_adapter_maps_state_to_a_chunk_and_unnormalizes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(60, 32), nn.Tanh(), nn.Linear(32, 4 * 7), nn.Tanh())
    normalizer = ActionNormalizer.from_bounds(-np.full(7, 2.0), np.full(7, 2.0))
    policy = ModuleAdapter(model, action_dim=7, chunk_size=4, normalizer=normalizer)
    obs = {"state": np.linspace(-1, 1, 60).astype(np.float32)}
    chunk = policy.act(obs)
    with torch.no_grad():
        expected = 2.0 * model(torch.as_tensor(obs["state"])[None]).reshape(4, 7).numpy()
    assert chunk.shape == (4, 7) and chunk.dtype == np.float32
    np.testing.assert_allclose(chunk, expected, rtol=1e-6)


def test_custom_pre_and_post_processing_with_images_and_instruction():
    class TwoInputs(nn.Module):
        def forward(self, image, state):
            return torch.cat([image.mean(dim=(1, 2, 3))[:, None], state[:, :1]], dim=1)

    seen = []

    def preprocess(obs, instruction):
        seen.append(instruction)
        image = torch.from_numpy(obs["image"]).permute(2, 0, 1)[None].float() / 255
        return {"image": image, "state": torch.from_numpy(obs["proprio"])[None]}

    resets = []
    policy = ModuleAdapter(TwoInputs(), action_dim=2, preprocess=preprocess, reset_hook=lambda: resets.append(1))
    policy.reset("open the door")
    obs = {"image": np.full((8, 8, 3), 255, np.uint8), "proprio": np.array([0.5, 3.0], np.float32)}
    np.testing.assert_allclose(policy.act(obs), [[1.0, 0.5]])
    assert seen == ["open the door"] and resets == [1]


def test_lerobot_style_callable_gets_the_batch_dict():
    def predict_action_chunk(batch):
        return torch.ones(1, 3, 2) * batch["observation.state"].sum()

    policy = ModuleAdapter(
        predict_action_chunk, action_dim=2, chunk_size=3,
        preprocess=lambda obs, instr: {"observation.state": torch.as_tensor(obs["proprio"])[None], "task": [instr]},
    )
    np.testing.assert_array_equal(policy.act({"proprio": np.array([1.0, 2.0])}), np.full((3, 2), 3.0))


def test_adapter_reports_bad_outputs():
    policy = ModuleAdapter(lambda x: torch.full((1, 5), float("nan")), action_dim=5)
    with pytest.raises(ValueError, match="non-finite actions"):
        policy.act({"state": np.zeros(3)})
    with pytest.raises(ValueError, match="action_dim=0"):
        ModuleAdapter(lambda x: x, action_dim=0)


def test_a_plain_callable_adapter_is_profiled_without_model_metrics():
    """README's recipe wraps external models as callables: profile() must time them, not crash."""
    import numpy as np

    from policies.adapters import ModuleAdapter
    from policies.profiling import profile

    adapter = ModuleAdapter(lambda x: np.zeros((2, 7), np.float32), action_dim=7, chunk_size=2,
                            preprocess=lambda obs, instruction: obs["state"],
                            postprocess=lambda out: np.asarray(out))
    result = profile(adapter, {"state": np.zeros(3, np.float32)}, repeats=3, warmup=1)
    assert result.params is None and result.flops_per_call is None and result.weight_memory_mb is None
    assert result.latency_median_ms >= 0
