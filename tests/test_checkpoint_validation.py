"""Damaged checkpoints are refused at load, naming the file, the field or tensor and what was
expected, instead of acting wrongly: a length-1 normaliser that broadcasts, a NaN that spreads
into every action, a tensor of the wrong shape, a residual whose bounds do not fit its network.

Each case tampers with a copy of a real checkpoint (the shipped TinyVLA and Lift residual) or
with a small residual written by ``save_residual``; the untouched copies load and act exactly
like the originals."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from policies.checkpoint_checks import CheckpointError
from policies.residual import ResidualSpec, load_residual, read_residual_spec, save_residual
from policies.tinyvla import checkpoint, load_reference

SHIPPED_RESIDUAL = Path(__file__).parents[1] / "policies" / "finetuned" / "lift_expert_residual.safetensors"
INSTRUCTION = "pick up the red cube and lift it off the table"


def _rewrite_tensors(path: Path, change) -> None:
    """Apply ``change`` to the file's tensors (a dict, edited in place), keeping its metadata."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path), metadata=metadata)


def _refused(load, file: Path, pattern: str) -> str:
    """Loading fails with a CheckpointError that names ``file`` and matches ``pattern``, in a
    message short enough to read (no array dumped into it)."""
    with pytest.raises(CheckpointError, match=pattern) as caught:
        load()
    message = str(caught.value)
    assert str(file) in message and len(message) < 400, message
    return message


# -- TinyVLA -----------------------------------------------------------------------------------

@pytest.fixture
def tinyvla_copy(tmp_path) -> Path:
    for suffix in (".safetensors", ".json"):
        shutil.copy(checkpoint.REFERENCE_DIR / f"{checkpoint.REFERENCE_NAME}{suffix}", tmp_path)
    return tmp_path


def _vla_obs(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
            "wrist_image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
            "proprio": rng.normal(size=50).astype(np.float32)}


def test_an_untouched_copy_of_the_shipped_tinyvla_loads_and_acts_identically(tinyvla_copy):
    reference, copy = load_reference(), load_reference(tinyvla_copy)
    for policy in (reference, copy):
        policy.reset(INSTRUCTION)
    for seed in range(3):
        np.testing.assert_array_equal(copy.act(_vla_obs(seed)), reference.act(_vla_obs(seed)))


def _short_normalizer(meta):  # offset and scale cut alike: they used to broadcast over all 7 dimensions
    meta["action_normalizer"] = {key: values[:1] for key, values in meta["action_normalizer"].items()}


def _set(field, index, value):
    def change(meta):
        meta["action_normalizer"][field][index] = value
    return change


def _drop_a_word(meta):
    meta["vocabulary"].pop()


@pytest.mark.parametrize("change, pattern", [
    (_short_normalizer, r"action_normalizer\.offset has shape \(1,\): expected shape \(7,\) \(action_dim\)"),
    (_set("offset", 2, math.nan), r"action_normalizer\.offset \(shape \(7,\)\) contains NaN in 1 of 7 values \(first at index \(2,\)\)"),
    (_set("scale", 0, math.inf), r"action_normalizer\.scale \(shape \(7,\)\) contains infinity"),
    (_set("scale", 4, 0.0), r"action_normalizer\.scale has 1 of 7 values not > 0 \(first: 0 at index 4\)"),
    (_drop_a_word, r"vocabulary has 30 words: expected model\.vocab_size = 31"),
], ids=["length-1 normalizer", "NaN offset", "infinite scale", "zero scale", "short vocabulary"])
def test_a_tinyvla_json_that_does_not_fit_the_model_is_refused_naming_the_field(tinyvla_copy, change, pattern):
    meta_path = tinyvla_copy / "tinyvla.json"
    meta = json.loads(meta_path.read_text())
    change(meta)
    meta_path.write_text(json.dumps(meta))  # json writes NaN and Infinity as Python reads them back
    _refused(lambda: load_reference(tinyvla_copy), meta_path, pattern)


def _nan_at(name, index):
    def change(tensors):
        tensors[name][index] = math.nan
    return change


def _inf_at(name, index):
    def change(tensors):
        tensors[name][index] = -math.inf
    return change


def _zero_at(name, index):
    def change(tensors):
        tensors[name][index] = 0.0
    return change


def _cut(name, rows):
    def change(tensors):
        tensors[name] = tensors[name][:rows].contiguous()
    return change


def _narrow_second_layer(tensors):  # takes 15 inputs where the first layer gives 16
    tensors["layers.1.weight"] = tensors["layers.1.weight"][:, :15].contiguous()


def _drop(name):
    def change(tensors):
        del tensors[name]
    return change


@pytest.mark.parametrize("change, pattern", [
    (_nan_at("blocks.0.attn.qkv.weight", (5, 7)),
     r"tensor 'blocks\.0\.attn\.qkv\.weight' \(shape \(384, 128\)\) contains NaN in 1 of 49152 values "
     r"\(first at index \(5, 7\)\): expected finite numbers"),
    (_inf_at("proprio_mean", 3), r"tensor 'proprio_mean' \(shape \(50,\)\) contains infinity"),
    (_zero_at("proprio_std", 10), r"tensor 'proprio_std' has 1 of 50 values not > 0"),
    (_cut("action_head.weight", 55), r"tensor 'action_head\.weight' has shape \(55, 128\): expected \(56, 128\)"),
    (_drop("readout"), r"missing \['readout'\], unexpected \[\]"),
], ids=["NaN weight", "infinite proprio_mean", "zero proprio_std", "wrong-shape tensor", "missing tensor"])
def test_a_tinyvla_tensor_that_does_not_fit_the_model_is_refused_naming_the_tensor(tinyvla_copy, change, pattern):
    weights = tinyvla_copy / "tinyvla.safetensors"
    _rewrite_tensors(weights, change)
    _refused(lambda: load_reference(tinyvla_copy), weights, pattern)


# -- residuals ---------------------------------------------------------------------------------

def _spec(**changes) -> ResidualSpec:
    spec = ResidualSpec(obs_keys=["state"], include_base_action=False, scale=[0.5] * 7, action_low=[-1.0] * 7,
                        action_high=[1.0] * 7, activation="tanh", squash="clip", obs_clip=5.0,
                        base_policy={"kind": "expert"}, task="Lift")
    return dataclasses.replace(spec, **changes)


def _small_residual(path: Path, spec: ResidualSpec | None = None) -> Path:
    """A 10 -> 16 -> 7 residual, as ``vla-envs finetune`` writes one."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(10, 16), torch.nn.Linear(16, 7)]
    rng = np.random.default_rng(0)
    return save_residual(path, spec or _spec(), [(layer.weight, layer.bias) for layer in layers],
                         rng.normal(size=10), rng.uniform(0.5, 2.0, 10))


def test_an_untouched_copy_of_the_shipped_residual_loads_and_acts_identically(tmp_path):
    copy = tmp_path / SHIPPED_RESIDUAL.name
    shutil.copy(SHIPPED_RESIDUAL, copy)
    original, loaded = load_residual(SHIPPED_RESIDUAL), load_residual(copy)
    rng = np.random.default_rng(0)
    for _ in range(3):
        features = rng.normal(size=original.input_dim)
        np.testing.assert_array_equal(loaded(features), original(features))


def test_a_nan_weight_in_the_shipped_residual_is_refused_naming_the_tensor(tmp_path):
    copy = tmp_path / SHIPPED_RESIDUAL.name
    shutil.copy(SHIPPED_RESIDUAL, copy)
    _rewrite_tensors(copy, _nan_at("layers.1.weight", (3, 4)))
    _refused(lambda: load_residual(copy), copy,
             r"tensor 'layers\.1\.weight' \(shape \(64, 64\)\) contains NaN in 1 of 4096 values")


@pytest.mark.parametrize("change, pattern", [
    (_nan_at("layers.0.weight", (2, 3)), r"tensor 'layers\.0\.weight' \(shape \(16, 10\)\) contains NaN"),
    (_inf_at("layers.1.bias", 6), r"tensor 'layers\.1\.bias' \(shape \(7,\)\) contains infinity"),
    (_cut("layers.1.bias", 6), r"tensor 'layers\.1\.bias' has shape \(6,\): expected \(7,\), the rows of layers\.1\.weight"),
    (_narrow_second_layer, r"tensor 'layers\.1\.weight' has shape \(7, 15\): expected \(out, 16\): layers\.0's outputs"),
    (_nan_at("obs_mean", 9), r"tensor 'obs_mean' \(shape \(10,\)\) contains NaN"),
    (_cut("obs_mean", 9), r"tensor 'obs_mean' has shape \(9,\): expected shape \(10,\) \(layers\.0's input\)"),
    (_zero_at("obs_std", 1), r"tensor 'obs_std' has 1 of 10 values not > 0"),
    (_nan_at("obs_std", 1), r"tensor 'obs_std' \(shape \(10,\)\) contains NaN"),
    (_drop("layers.0.bias"), r"tensors missing \['layers\.0\.bias'\], unexpected \[\]"),
], ids=["NaN weight", "infinite bias", "short bias", "layers that do not chain", "NaN obs_mean",
        "short obs_mean", "zero obs_std", "NaN obs_std", "missing bias"])
def test_a_residual_tensor_that_does_not_fit_is_refused_naming_the_tensor(tmp_path, change, pattern):
    path = _small_residual(tmp_path / "residual.safetensors")
    _rewrite_tensors(path, change)
    _refused(lambda: load_residual(path), path, pattern)


@pytest.mark.parametrize("changes, pattern", [
    ({"scale": [0.5] * 6}, r"scale has shape \(6,\): expected shape \(7,\) \(action_low's length\)"),
    ({"scale": [0.5] * 6 + [-0.1]}, r"scale has 1 of 7 values not >= 0 \(first: -0\.1 at index 6\)"),
    ({"action_low": [-1.0] * 6 + [2.0]}, r"action_low\[6\] = 2 > action_high\[6\] = 1: expected action_low <= action_high"),
    ({"action_high": [1.0] * 6 + [math.nan]}, r"action_high \(shape \(7,\)\) contains NaN"),
    ({"obs_clip": math.nan}, r"obs_clip is nan: expected a number > 0"),
    ({"activation": "sigmoid"}, r"activation is 'sigmoid': expected one of \('tanh', 'relu'\)"),
], ids=["short scale", "negative scale", "low above high", "NaN bound", "NaN obs_clip", "unknown activation"])
def test_a_residual_spec_with_bad_numbers_is_refused_when_its_header_is_read(tmp_path, changes, pattern):
    path = _small_residual(tmp_path / "residual.safetensors", _spec(**changes))
    _refused(lambda: read_residual_spec(path), path, pattern)
    _refused(lambda: load_residual(path), path, pattern)


def test_a_residual_spec_whose_bounds_do_not_fit_the_network_is_refused(tmp_path):
    """Consistent with itself (6 numbers each) but the network outputs 7: only the tensors tell."""
    path = _small_residual(tmp_path / "residual.safetensors",
                           _spec(scale=[0.5] * 6, action_low=[-1.0] * 6, action_high=[1.0] * 6))
    assert read_residual_spec(path).scale == [0.5] * 6
    _refused(lambda: load_residual(path), path,
             re.escape("action_low has shape (6,): expected shape (7,) (the network's outputs)"))


def test_an_untouched_small_residual_still_loads(tmp_path):
    path = _small_residual(tmp_path / "residual.safetensors")
    network = load_residual(path)
    assert (network.input_dim, network.output_dim) == (10, 7)
    assert np.isfinite(network(np.zeros(10))).all()
