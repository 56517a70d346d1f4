"""Small policies for demos and tests of the evaluation pipeline (no downloads).

``perturbed_expert``: the task's scripted expert plus a small torch MLP's output. The MLP gives
compression (quantization, pruning) a model to act on, and its output moves the arm a little,
so compressed variants differ measurably while still solving the task.

``noisy_expert``: the expert with exploration noise from numpy's and torch's global RNGs, a
stochastic policy whose episodes are reproducible only through the evaluation's seeding.
"""

from __future__ import annotations

import numpy as np

from policies.base import Policy


class PerturbedExpert(Policy):
    """Expert action repeated over a chunk of ``chunk_size``, plus ``scale * tanh(mlp(obs))``."""

    def __init__(self, expert: Policy, model, obs_key: str, chunk_size: int, scale: float):
        self.expert = expert
        self.model = model
        self.obs_key = obs_key
        self.action_dim = expert.action_dim
        self.chunk_size = chunk_size
        self.scale = scale

    def __deepcopy__(self, memo):
        # compress() deep-copies a policy before changing its weights; the expert holds the live
        # simulator, which must be shared, not copied (a copy would be a frozen snapshot), but its
        # own phase must not be: a shallow copy reads the same simulator with a state machine of
        # its own (teacher forcing queries the copy while the original runs an episode)
        import copy

        return PerturbedExpert(copy.copy(self.expert), copy.deepcopy(self.model, memo), self.obs_key,
                               self.chunk_size, self.scale)

    def torch_module(self):
        return self.model

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        self.expert.reset(instruction)

    def act(self, obs) -> np.ndarray:
        import torch

        action = self.expert.act(obs)[0]
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(obs[self.obs_key], dtype=np.float32))[None]
            residual = torch.tanh(self.model(x)).reshape(self.chunk_size, self.action_dim).numpy()
        chunk = np.repeat(action[None, :], self.chunk_size, axis=0) + self.scale * residual
        chunk[:, -1] = action[-1]  # the gripper command stays the expert's
        return np.clip(chunk, -1.0, 1.0).astype(np.float32)


def perturbed_expert(env, task: str, chunk_size: int = 1, hidden: int = 64, scale: float = 0.1) -> PerturbedExpert:
    """Factory for configs: ``{factory: "policies.demo:perturbed_expert", kwargs: {...}}``.
    Weights come from torch's RNG, which the evaluation seeds before calling a factory."""
    import torch

    from policies.experts import expert_for_task

    expert = expert_for_task(task, env)
    obs_key = "state" if "state" in env.observation_space.spaces else "proprio"
    in_dim = env.observation_space[obs_key].shape[0]
    model = torch.nn.Sequential(
        torch.nn.Linear(in_dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, chunk_size * expert.action_dim)
    )
    return PerturbedExpert(expert, model, obs_key, chunk_size, scale)


class NoisyExpert(Policy):
    """The task's scripted expert plus Gaussian exploration noise drawn from numpy's *and*
    torch's global RNGs (as many research policies sample): reproducible only because the
    evaluation seeds both before every episode."""

    def __init__(self, expert: Policy, noise: float):
        self.expert = expert
        self.action_dim = expert.action_dim
        self.noise = noise

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        self.expert.reset(instruction)

    def act(self, obs) -> np.ndarray:
        import torch

        action = self.expert.act(obs)[0].astype(np.float64)
        half = self.action_dim // 2
        action[:half] += self.noise * np.random.standard_normal(half)
        action[half:-1] += self.noise * torch.randn(self.action_dim - 1 - half, dtype=torch.float64).numpy()
        return np.clip(action, -1.0, 1.0).astype(np.float32)[None]


def noisy_expert(env, task: str, noise: float = 0.2) -> NoisyExpert:
    """Factory for configs: ``{factory: "policies.demo:noisy_expert", kwargs: {noise: 0.2}}``."""
    from policies.experts import expert_for_task

    return NoisyExpert(expert_for_task(task, env), noise)
