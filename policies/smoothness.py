"""Smoothness losses on predicted action chunks: pure torch functions any BC trainer can add.

A chunk is a tensor of shape (B, H, D): B samples, H future actions of D dimensions. All losses
are means of squared action differences (action units squared), so they are on the scale of an
MSE behaviour-cloning loss and their weights read as "how much a unit of roughness costs
against a unit of imitation error":

- ``action_rate_loss``: mean over t of ||a_{t+1} - a_t||^2 inside the chunk (first differences;
  the training-time twin of the ``action_rate`` metric);
- ``jerk_loss``: mean over t of ||a_{t+1} - 2 a_t + a_{t-1}||^2 (second differences; the
  chunk's own jerk, which the arm's joint jerk follows under a delta controller);
- ``continuity_loss``: the new chunk against the previous chunk's plan for the same time steps:
  with the previous chunk predicted ``shift`` control steps earlier, its rows shift..H-1 cover
  the new chunk's rows 0..H-1-shift; the mean of ||new - previous||^2 over that overlap. This is
  what open-loop execution with k = shift turns into a seam at every chunk boundary.

``smoothness_loss`` combines them with the weights of a ``SmoothnessWeights`` (YAML-friendly).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def _check_chunk(name: str, chunk: torch.Tensor, min_horizon: int) -> torch.Tensor:
    if chunk.ndim != 3:
        raise ValueError(f"{name} must have shape (B, H, D), got {tuple(chunk.shape)}")
    if chunk.shape[1] < min_horizon:
        raise ValueError(f"{name} has horizon H = {chunk.shape[1]}: expected H >= {min_horizon}")
    return chunk


def action_rate_loss(chunk: torch.Tensor) -> torch.Tensor:
    """mean_{b, t} ||a_{t+1} - a_t||^2 over a (B, H, D) chunk, H >= 2."""
    chunk = _check_chunk("chunk", chunk, 2)
    first = chunk[:, 1:] - chunk[:, :-1]
    return first.pow(2).sum(dim=-1).mean()


def jerk_loss(chunk: torch.Tensor) -> torch.Tensor:
    """mean_{b, t} ||a_{t+1} - 2 a_t + a_{t-1}||^2 over a (B, H, D) chunk, H >= 3."""
    chunk = _check_chunk("chunk", chunk, 3)
    second = chunk[:, 2:] - 2.0 * chunk[:, 1:-1] + chunk[:, :-2]
    return second.pow(2).sum(dim=-1).mean()


def continuity_loss(chunk: torch.Tensor, previous: torch.Tensor, shift: int) -> torch.Tensor:
    """mean_{b, t} ||chunk[:, t] - previous[:, t + shift]||^2 over the overlap t < H - shift.

    ``previous`` was predicted ``shift`` control steps before ``chunk`` (the open-loop k); it is
    a target here (detach it, or take it from the data) so the new chunk is pulled towards the
    plan already being executed, not the other way round.
    """
    chunk = _check_chunk("chunk", chunk, 1)
    previous = _check_chunk("previous", previous, 1)
    if chunk.shape != previous.shape:
        raise ValueError(f"chunk {tuple(chunk.shape)} and previous {tuple(previous.shape)} must have the same shape")
    horizon = chunk.shape[1]
    if not 1 <= shift < horizon:
        raise ValueError(f"shift={shift}: expected 1 <= shift < H = {horizon} (an overlap of at least one action)")
    overlap = chunk[:, : horizon - shift] - previous[:, shift:]
    return overlap.pow(2).sum(dim=-1).mean()


@dataclass(frozen=True)
class SmoothnessWeights:
    """Weights of the smoothness terms (0 turns a term off); ``shift`` is the open-loop k the
    continuity term assumes."""

    action_rate: float = 0.0
    jerk: float = 0.0
    continuity: float = 0.0
    shift: int = 4

    def __post_init__(self):
        for name in ("action_rate", "jerk", "continuity"):
            value = getattr(self, name)
            if not (value >= 0.0 and value != float("inf")):
                raise ValueError(f"{name}={value}: expected a finite weight >= 0")
        if self.shift < 1:
            raise ValueError(f"shift={self.shift}: expected >= 1")


def smoothness_loss(
    chunk: torch.Tensor, weights: SmoothnessWeights, previous: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted sum of the enabled terms, and each term's value (for logging). The
    continuity term needs ``previous``; without it the term is left out."""
    total = chunk.new_zeros(())
    terms: dict[str, float] = {}
    for name, weight, compute in (
        ("action_rate", weights.action_rate, lambda: action_rate_loss(chunk)),
        ("jerk", weights.jerk, lambda: jerk_loss(chunk)),
        ("continuity", weights.continuity, lambda: continuity_loss(chunk, previous, weights.shift)),
    ):
        if weight == 0.0 or (name == "continuity" and previous is None):
            continue
        value = compute()
        terms[name] = float(value.detach())
        total = total + weight * value
    return total, terms
