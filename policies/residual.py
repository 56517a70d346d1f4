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
its chunk execution, so the file alone rebuilds the deployed policy. Loading checks both
against each other (``check_residual``): a NaN weight or a bound of the wrong length would
otherwise act, wrongly, without a word.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from policies.base import Policy
from policies.checkpoint_checks import CheckpointError, check_finite, check_vector

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
    """Normalise features, run the MLP, squash to [-1, 1]: numpy in, numpy out.

    ``tensors`` and ``spec`` are checked first (``check_residual``); ``source`` names them in
    errors (the file they came from)."""

    def __init__(self, spec: ResidualSpec, tensors: dict[str, Any], source: str = "residual"):
        torch = _torch()
        shapes = check_residual(spec, tensors, source)
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

    def __call__(self, features: np.ndarray) -> np.ndarray:
        torch = _torch()
        features = np.asarray(features, dtype=np.float64)
        if features.shape != (self.input_dim,):
            raise ValueError(f"residual features have shape {features.shape}, expected ({self.input_dim},)")
        normalised = np.clip((features - self.obs_mean) / self.obs_std, -self.spec.obs_clip, self.spec.obs_clip)
        with torch.no_grad():
            out = self.mlp(torch.as_tensor(normalised, dtype=torch.float32)[None])[0].double().numpy()
        return np.tanh(out) if self.spec.squash == "tanh" else np.clip(out, -1.0, 1.0)


def check_spec(spec: ResidualSpec, source: str, action_dim: int | None = None) -> None:
    """The spec's own numbers and choices: ``scale`` (>= 0), ``action_low`` and ``action_high``
    of ``action_dim`` finite numbers each (the length of ``action_low`` when ``None``), low <=
    high, a known activation and squash, ``obs_clip > 0`` (infinity: no clipping)."""
    for name, value, choices in (("activation", spec.activation, ("tanh", "relu")), ("squash", spec.squash, ("tanh", "clip"))):
        if value not in choices:
            raise CheckpointError(f"{source}: {name} is {str(value)[:40]!r}: expected one of {choices}")
    clip = spec.obs_clip
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0:  # NaN fails clip > 0
        raise CheckpointError(f"{source}: obs_clip is {str(clip)[:40]}: expected a number > 0 (or Infinity)")
    length_of = "the network's outputs" if action_dim is not None else "action_low's length"
    low = check_vector(f"{source}: action_low", spec.action_low, action_dim, length_of)
    high = check_vector(f"{source}: action_high", spec.action_high, len(low), length_of)
    check_vector(f"{source}: scale", spec.scale, len(low), length_of, minimum=">= 0")
    if (low > high).any():
        i = int(np.flatnonzero(low > high)[0])
        raise CheckpointError(f"{source}: action_low[{i}] = {low[i]:.6g} > action_high[{i}] = {high[i]:.6g}: "
                              "expected action_low <= action_high")


def check_residual(spec: ResidualSpec, tensors: dict[str, Any], source: str) -> list[tuple[int, int]]:
    """The (out, in) shape of each layer, once the tensors are what ``save_residual`` writes:
    ``layers.0 .. layers.<n-1>`` (2-D weights, each taking the previous layer's output, biases
    of their weight's rows), ``obs_mean`` and ``obs_std`` (> 0: it divides) of the first layer's
    input, nothing else, all finite; and the spec fits the last layer (``check_spec``)."""
    count = len([k for k in tensors if k.startswith("layers.") and k.endswith(".weight")])
    if count == 0:
        raise CheckpointError(f"{source} holds no layers.<i>.weight tensors")
    expected = {"obs_mean", "obs_std"} | {f"layers.{i}.{part}" for i in range(count) for part in ("weight", "bias")}
    missing, unexpected = sorted(expected - tensors.keys()), sorted(tensors.keys() - expected)
    if missing or unexpected:
        raise CheckpointError(f"{source}: tensors missing {missing[:5]}, unexpected {unexpected[:5]}: expected "
                              f"obs_mean, obs_std and layers.0 .. layers.{count - 1} (weight and bias)")
    shapes: list[tuple[int, int]] = []
    for i in range(count):
        weight, bias = tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"]
        if weight.ndim != 2 or (shapes and weight.shape[1] != shapes[-1][0]):
            wanted = f"(out, {shapes[-1][0]}): layers.{i - 1}'s outputs" if shapes else "2-D (out, in)"
            raise CheckpointError(f"{source}: tensor 'layers.{i}.weight' has shape {tuple(weight.shape)}: expected {wanted}")
        if tuple(bias.shape) != (weight.shape[0],):
            raise CheckpointError(f"{source}: tensor 'layers.{i}.bias' has shape {tuple(bias.shape)}: "
                                  f"expected ({weight.shape[0]},), the rows of layers.{i}.weight")
        check_finite(f"{source}: tensor 'layers.{i}.weight'", weight)
        check_finite(f"{source}: tensor 'layers.{i}.bias'", bias)
        shapes.append((int(weight.shape[0]), int(weight.shape[1])))
    input_dim = shapes[0][1]
    check_vector(f"{source}: tensor 'obs_mean'", tensors["obs_mean"].double().numpy(), input_dim, "layers.0's input")
    check_vector(f"{source}: tensor 'obs_std'", tensors["obs_std"].double().numpy(), input_dim, "layers.0's input",
                 minimum="> 0")
    check_spec(spec, source, action_dim=shapes[-1][0])
    return shapes


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
    try:
        fields = json.loads(metadata[RESIDUAL_METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: the {RESIDUAL_METADATA_KEY!r} metadata is not JSON ({exc})") from None
    if not isinstance(fields, dict):
        raise CheckpointError(f"{path}: the {RESIDUAL_METADATA_KEY!r} metadata is {type(fields).__name__}: expected an object")
    if fields.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: residual format_version {fields.get('format_version')!r}, expected {FORMAT_VERSION}")
    try:
        spec = ResidualSpec(**fields)
    except TypeError as exc:  # a missing or unknown field
        raise CheckpointError(f"{path}: the residual spec does not fit ResidualSpec ({exc})") from None
    check_spec(spec, str(path))
    return spec


def load_residual(path: str | Path) -> ResidualNetwork:
    from safetensors.torch import load_file

    spec = read_residual_spec(path)
    return ResidualNetwork(spec, load_file(str(path)), source=str(path))


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
