"""Weight pruning: unstructured by magnitude, structured by whole output rows."""

from __future__ import annotations

import copy

import torch
from torch import nn


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction={fraction}: expected 0 <= fraction < 1")


def _prunable(module: nn.Module, layer_types: tuple[type, ...], exclude: tuple[str, ...] | None):
    """(name, layer) pairs to prune. A model lists layers to leave whole in ``pruning_exclude``
    (as pruning papers leave the output head: zeroed rows there would delete action dimensions)."""
    skip = tuple(getattr(module, "pruning_exclude", ())) if exclude is None else exclude
    for name, layer in module.named_modules():
        if isinstance(layer, layer_types) and not any(name == s or name.startswith(s + ".") for s in skip):
            yield name, layer


def magnitude_prune(
    module: nn.Module, fraction: float, layer_types: tuple[type, ...] = (nn.Linear,), exclude: tuple[str, ...] | None = None
) -> nn.Module:
    """A copy where, in each layer, the floor(fraction * numel) smallest-|w| weights are zero.
    ``exclude``: module names to leave whole (default: the model's ``pruning_exclude``)."""
    _check_fraction(fraction)
    pruned = copy.deepcopy(module)
    with torch.no_grad():
        for _, layer in _prunable(pruned, layer_types, exclude):
            weight = layer.weight
            n_zero = int(fraction * weight.numel())
            if n_zero:
                order = torch.argsort(weight.abs().reshape(-1), stable=True)
                weight.view(-1)[order[:n_zero]] = 0.0
    return pruned


def structured_prune_rows(
    module: nn.Module, fraction: float, layer_types: tuple[type, ...] = (nn.Linear,), exclude: tuple[str, ...] | None = None
) -> nn.Module:
    """A copy where, in each layer, the floor(fraction * rows) output rows (neurons) with the
    smallest L2 norm are zeroed, with their biases. ``exclude`` as in ``magnitude_prune``."""
    _check_fraction(fraction)
    pruned = copy.deepcopy(module)
    with torch.no_grad():
        for _, layer in _prunable(pruned, layer_types, exclude):
            rows = layer.weight.shape[0]
            n_rows = int(fraction * rows)
            if n_rows:
                norms = layer.weight.reshape(rows, -1).norm(dim=1)
                drop = torch.argsort(norms, stable=True)[:n_rows]
                layer.weight[drop] = 0.0
                if layer.bias is not None:
                    layer.bias[drop] = 0.0
    return pruned
