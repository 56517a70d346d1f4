"""Residual policies: a frozen base policy plus a small learned correction.

The residual formulation (Silver et al. 2018; Johannink et al. 2019), the one ``vla-envs
finetune`` trains and ``vla-envs eval`` runs::

    base_t     = the base policy's action for step t (its chunks run by a ChunkExecutor)
    residual_t = clip(network(features_t), -1, 1)                      # the learned part
    action_t   = clip(base_t + scale * residual_t, action_low, action_high)

    features_t = concat(obs[k].ravel() for k in obs_keys) [+ base_t if include_base_action]

``scale`` is per action dimension (0 freezes a dimension to the base), so the residual can
bend the base's motion but never move further than ``scale`` from it. The pure functions
below are that algebra, shared by the training env (``finetuning.residual_env``) and the
deployed ``ResidualPolicy``, so the two cannot drift apart.

A trained residual ships as one safetensors file: the network's tensors, and in the header's
metadata (``RESIDUAL_METADATA_KEY``) a JSON ``ResidualSpec``: layer activation, output squash,
observation normalisation clip, scale, feature layout, action bounds, and the base policy and
its chunk execution, so the file alone rebuilds the deployed policy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from policies.base import Policy

RESIDUAL_METADATA_KEY = "vla_envs.residual"
FORMAT_VERSION = 1


def compose_action(
    base_action: np.ndarray, residual: np.ndarray, scale: np.ndarray, low: np.ndarray, high: np.ndarray
) -> np.ndarray:
    """``clip(base + scale * clip(residual, -1, 1), low, high)``, float32."""
    bounded = np.clip(np.asarray(residual, dtype=np.float64), -1.0, 1.0)
    return np.clip(np.asarray(base_action, dtype=np.float64) + scale * bounded, low, high).astype(np.float32)


def residual_features(obs: dict, obs_keys: Sequence[str], base_action: np.ndarray | None) -> np.ndarray:
    """The residual network's input: the named observation entries, flattened, then the base
    action when given (float32). A missing key is a ``KeyError`` naming the keys there are."""
    parts = []
    for key in obs_keys:
        if key not in obs:
            raise KeyError(f"the residual reads obs[{key!r}], but the observation has keys {sorted(obs)}")
        parts.append(np.asarray(obs[key], dtype=np.float32).ravel())
    if base_action is not None:
        parts.append(np.asarray(base_action, dtype=np.float32).ravel())
    return np.concatenate(parts)


def broadcast_scale(scale: float | Sequence[float], action_dim: int) -> np.ndarray:
    """A scalar or per-dimension scale as an (action_dim,) array (``ValueError`` otherwise)."""
    array = np.asarray(scale, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(action_dim, float(array))
    if array.shape != (action_dim,):
        raise ValueError(f"residual scale has shape {array.shape}: expected a number or {action_dim} numbers")
    if not np.isfinite(array).all() or (array < 0).any():
        raise ValueError(f"residual scale {array.tolist()}: expected finite numbers >= 0")
    return array


@dataclass(frozen=True)
class ResidualSpec:
    """Everything besides the tensors that the deployed residual needs (stored as JSON)."""

    obs_keys: list[str]
    include_base_action: bool
    scale: list[float]
    action_low: list[float]
    action_high: list[float]
    activation: Literal["tanh", "relu"]
    squash: Literal["tanh", "clip"]  # SAC's actor ends in tanh; PPO's Gaussian mean is clipped
    obs_clip: float  # normalised features are clipped to +-obs_clip (VecNormalize's clip_obs)
    base_policy: dict[str, Any]  # an eval policy spec: {"kind": "expert"} or {"factory": ...}
    base_execution: dict[str, Any] = field(default_factory=dict)  # ChunkExecutor keyword arguments
    task: str = ""
    training: dict[str, Any] = field(default_factory=dict)  # algorithm, steps, wall time: provenance
    format_version: int = FORMAT_VERSION


def _torch():
    import torch

    return torch


def build_network(layer_shapes: Sequence[tuple[int, int]], activation: str):
    """An MLP with the given (out, in) weight shapes; hidden layers use ``activation``."""
    torch = _torch()
    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[activation]
    modules: list = []
    for index, (out_features, in_features) in enumerate(layer_shapes):
        modules.append(torch.nn.Linear(in_features, out_features))
        if index < len(layer_shapes) - 1:
            modules.append(act())
    return torch.nn.Sequential(*modules)


class ResidualNetwork:
    """Normalise features, run the MLP, squash to [-1, 1]: numpy in, numpy out."""

    def __init__(self, spec: ResidualSpec, tensors: dict[str, Any]):
        torch = _torch()
        count = len([k for k in tensors if k.startswith("layers.") and k.endswith(".weight")])
        if count == 0:
            raise ValueError("residual file holds no layers.<i>.weight tensors")
        shapes = [tuple(tensors[f"layers.{i}.weight"].shape) for i in range(count)]
        self.mlp = build_network(shapes, spec.activation)
        linears = [m for m in self.mlp if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            for i, linear in enumerate(linears):
                linear.weight.copy_(tensors[f"layers.{i}.weight"])
                linear.bias.copy_(tensors[f"layers.{i}.bias"])
        self.mlp.eval()
        self.obs_mean = tensors["obs_mean"].double().numpy()
        self.obs_std = tensors["obs_std"].double().numpy()
        self.spec = spec
        self.input_dim = shapes[0][1]
        self.output_dim = shapes[-1][0]
        if self.obs_mean.shape != (self.input_dim,):
            raise ValueError(f"obs_mean has shape {self.obs_mean.shape}, expected ({self.input_dim},) (the first layer's input)")

    def __call__(self, features: np.ndarray) -> np.ndarray:
        torch = _torch()
        features = np.asarray(features, dtype=np.float64)
        if features.shape != (self.input_dim,):
            raise ValueError(f"residual features have shape {features.shape}, expected ({self.input_dim},)")
        normalised = np.clip((features - self.obs_mean) / self.obs_std, -self.spec.obs_clip, self.spec.obs_clip)
        with torch.no_grad():
            out = self.mlp(torch.as_tensor(normalised, dtype=torch.float32)[None])[0].double().numpy()
        return np.tanh(out) if self.spec.squash == "tanh" else np.clip(out, -1.0, 1.0)


def save_residual(path: str | Path, spec: ResidualSpec, layers: Sequence[tuple[Any, Any]], obs_mean, obs_std) -> Path:
    """Write a residual file atomically: ``layers`` are (weight, bias) tensor pairs in order."""
    from safetensors.torch import save_file

    torch = _torch()
    tensors = {"obs_mean": torch.as_tensor(np.asarray(obs_mean), dtype=torch.float64),
               "obs_std": torch.as_tensor(np.asarray(obs_std), dtype=torch.float64)}
    for i, (weight, bias) in enumerate(layers):
        tensors[f"layers.{i}.weight"] = weight.detach().cpu().float().contiguous()
        tensors[f"layers.{i}.bias"] = bias.detach().cpu().float().contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={RESIDUAL_METADATA_KEY: json.dumps(asdict(spec))})
    tmp.replace(path)
    return path


def read_residual_spec(path: str | Path) -> ResidualSpec:
    """The ``ResidualSpec`` in a residual file's header (reads no tensors)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"residual checkpoint {str(path)!r} does not exist")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if RESIDUAL_METADATA_KEY not in metadata:
        raise ValueError(f"{path}: not a residual checkpoint (no {RESIDUAL_METADATA_KEY!r} metadata in its header)")
    fields = json.loads(metadata[RESIDUAL_METADATA_KEY])
    if fields.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: residual format_version {fields.get('format_version')!r}, expected {FORMAT_VERSION}")
    return ResidualSpec(**fields)


def load_residual(path: str | Path) -> ResidualNetwork:
    from safetensors.torch import load_file

    spec = read_residual_spec(path)
    return ResidualNetwork(spec, load_file(str(path)))


class ResidualPolicy(Policy):
    """A base policy (run by its own ``ChunkExecutor``) plus a trained residual; one action per
    query (``chunk_size = 1``), so the evaluator's executor asks it every control step."""

    chunk_size = 1

    def __init__(self, base: Policy, network: ResidualNetwork):
        from policies.chunk_executor import ChunkExecutor

        spec = network.spec
        self.base = base
        self.network = network
        self.action_dim = int(base.action_dim)
        self.scale = broadcast_scale(spec.scale, self.action_dim)
        self.low = np.asarray(spec.action_low, dtype=np.float64)
        self.high = np.asarray(spec.action_high, dtype=np.float64)
        if network.output_dim != self.action_dim:
            raise ValueError(f"residual network outputs {network.output_dim} numbers, the base policy's actions have {self.action_dim}")
        self.executor = ChunkExecutor(base, **spec.base_execution)
        # what profile() counts (params, FLOPs): the base's network, if any, and the residual's
        base_model = base.torch_module()
        self._module = network.mlp if base_model is None else _torch().nn.ModuleList([base_model, network.mlp])
        self.last_base_action: np.ndarray | None = None
        self.last_residual: np.ndarray | None = None

    def torch_module(self):
        return self._module

    @classmethod
    def load(cls, path: str | Path, base: Policy) -> ResidualPolicy:
        return cls(base, load_residual(path))

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        self.executor.reset(instruction)

    def act(self, obs) -> np.ndarray:
        spec = self.network.spec
        base_action = self.executor.step(obs)
        features = residual_features(obs, spec.obs_keys, base_action if spec.include_base_action else None)
        self.last_base_action = base_action
        self.last_residual = self.network(features)
        return compose_action(base_action, self.last_residual, self.scale, self.low, self.high)[None, :]
