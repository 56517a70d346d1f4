"""Weight pruning: unstructured by magnitude, structured by whole output rows."""

from __future__ import annotations

import copy

import torch
from torch import nn


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction={fraction}: expected 0 <= fraction < 1")


def magnitude_prune(module: nn.Module, fraction: float, layer_types: tuple[type, ...] = (nn.Linear,)) -> nn.Module:
    """A copy where, in each layer, the floor(fraction * numel) smallest-|w| weights are zero."""
    _check_fraction(fraction)
    pruned = copy.deepcopy(module)
    with torch.no_grad():
        for layer in pruned.modules():
            if isinstance(layer, layer_types):
                weight = layer.weight
                n_zero = int(fraction * weight.numel())
                if n_zero:
                    order = torch.argsort(weight.abs().reshape(-1), stable=True)
                    weight.view(-1)[order[:n_zero]] = 0.0
    return pruned


def structured_prune_rows(
    module: nn.Module, fraction: float, layer_types: tuple[type, ...] = (nn.Linear,)
) -> nn.Module:
    """A copy where, in each layer, the floor(fraction * rows) output rows (neurons) with the
    smallest L2 norm are zeroed, with their biases."""
    _check_fraction(fraction)
    pruned = copy.deepcopy(module)
    with torch.no_grad():
        for layer in pruned.modules():
            if isinstance(layer, layer_types):
                rows = layer.weight.shape[0]
                n_rows = int(fraction * rows)
                if n_rows:
                    norms = layer.weight.reshape(rows, -1).norm(dim=1)
                    drop = torch.argsort(norms, stable=True)[:n_rows]
                    layer.weight[drop] = 0.0
                    if layer.bias is not None:
                        layer.bias[drop] = 0.0
    return pruned
