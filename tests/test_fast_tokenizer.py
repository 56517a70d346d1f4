"""FAST action tokenization (``policies.compression.fast``): pi0-FAST's encoding and decoding,
its decode failures (zeros, or LeRobot's relaxed decoding), the shipped TinyVLA vocabulary, and
failures counted per episode through ``compress`` and ``vla-envs eval``."""

from __future__ import annotations

import numpy as np
import pytest

from policies.base import EPISODE_COUNTERS, Policy
from policies.compression import compress
from policies.compression.fast import FastTokenizer, rounding_bound, shipped_path


@pytest.fixture(scope="module")
def fast():
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.0, 1.0, 8)[None, :, None]
    chunks = np.clip(rng.normal(0, 0.4, (1500, 1, 7)) + rng.normal(0, 0.3, (1500, 1, 7)) * ramp, -1, 1)
    return FastTokenizer.fit(chunks, scale=10.0, vocab_size=512)


def test_a_constant_chunk_is_one_dct_coefficient_per_dimension_and_decodes_exactly(fast):
    # the orthonormal DCT of a constant c over H steps is c * sqrt(H) at frequency 0, zero after
    chunk = np.full((8, 7), 0.5 / np.sqrt(8))  # 0.5 * scale = 5: an integer, so no rounding
    coefficients = fast.coefficients(chunk)
    assert coefficients[0].tolist() == [5] * 7 and not coefficients[1:].any()
    decoded = fast.decode(fast.encode(chunk))
    assert not decoded.failed and decoded.coefficients == 56
    np.testing.assert_allclose(decoded.chunk, chunk, atol=1e-6)


def test_rounding_stays_within_its_closed_form_bound(fast):
    rng = np.random.default_rng(1)
    for _ in range(50):
        chunk = np.clip(rng.normal(0, 0.5, (8, 7)), -1, 1)
        decoded = fast.decode(fast.encode(chunk))
        assert not decoded.failed
        assert np.abs(decoded.chunk - chunk).max() <= rounding_bound(10.0, 8) + 1e-6
    assert rounding_bound(10.0, 8) == pytest.approx(0.05 * np.sqrt(8))


def test_a_truncated_token_sequence_fails_as_pi0_fast_fails_or_decodes_relaxed(fast):
    chunk = np.clip(np.random.default_rng(2).normal(0, 0.5, (8, 7)), -1, 1)
    ids = fast.encode(chunk)
    assert len(ids) >= 2
    strict = fast.decode(ids[:-1])
    assert strict.failed and strict.coefficients < 56 and not strict.chunk.any()  # openpi: zeros
    relaxed = fast.decode(ids[:-1], relaxed=True)
    assert relaxed.failed and relaxed.chunk.any() and np.isfinite(relaxed.chunk).all()
    # relaxed = the coefficients that arrived, the missing (highest) ones zero
    values = np.zeros(56)
    received = [ord(c) for c in fast.bpe.decode(ids[:-1])]
    values[:len(received)] = np.array(received) + fast.min_token
    from scipy.fft import idct
    np.testing.assert_allclose(relaxed.chunk, idct(values.reshape(8, 7) / 10.0, axis=0, norm="ortho"), atol=1e-6)
    assert fast.decode([10**6]).failed  # an id outside the vocabulary


def test_a_tokenizer_survives_its_file(fast, tmp_path):
    again = FastTokenizer.load(fast.save(tmp_path / "fast.json"))
    chunk = np.clip(np.random.default_rng(3).normal(0, 0.5, (8, 7)), -1, 1)
    assert again.encode(chunk) == fast.encode(chunk)
    with pytest.raises(FileNotFoundError, match="fast_vocabulary"):
        FastTokenizer.load(tmp_path / "missing.json")


def test_the_shipped_tinyvla_vocabulary_codes_tinyvla_chunks():
    fast = FastTokenizer.load(shipped_path("tinyvla"))
    assert (fast.horizon, fast.action_dim, fast.scale) == (8, 7, 10.0) and fast.bpe.get_vocab_size() == 1024
    chunk = np.zeros((8, 7))
    chunk[:, 6] = 1.0  # gripper closed, arm still: a common expert chunk is a handful of tokens
    assert len(fast.encode(chunk)) <= 3


class _Ramp(Policy):
    """Chunks of a slow ramp (one per call), each a different chunk."""

    action_dim, chunk_size = 7, 8

    def __init__(self):
        self.calls = 0

    def act(self, obs):
        self.calls += 1
        return np.clip(0.1 * self.calls + np.linspace(0, 0.3, 8)[:, None] * np.ones((1, 7)), -1, 1).astype(np.float32)


def test_compress_counts_decode_failures_per_episode():
    policy = compress(_Ramp(), {"action_codec": {"fast": {"tokenizer": "tinyvla", "max_tokens": 1}}})
    policy.reset("x")
    chunks = [policy.act(None) for _ in range(3)]
    assert policy.episode_counters()["decode_failures"] == 3
    assert not any(chunk.any() for chunk in chunks)  # each failure is a zero chunk
    policy.reset("x")
    assert policy.episode_counters()["decode_failures"] == 0
    whole = compress(_Ramp(), {"action_codec": {"fast": {"tokenizer": "tinyvla"}}})
    whole.reset("x")
    chunk = whole.act(None)
    assert whole.episode_counters() == dict.fromkeys(EPISODE_COUNTERS, 0)
    assert np.abs(chunk - _Ramp().act(None)).max() <= rounding_bound(10.0, 8) + 1e-6


def test_a_vocabulary_for_other_chunks_is_refused_naming_both_shapes():
    class Long(_Ramp):
        chunk_size = 16

    with pytest.raises(ValueError, match=r"codes chunks of 8 x 7 actions: expected the policy's 16 x 7"):
        compress(Long(), {"action_codec": {"fast": {"tokenizer": "tinyvla"}}})


def test_vla_envs_eval_writes_each_episodes_decode_failures(tmp_path):
    """A FAST variant with a 2-token budget next to the base: its failures per episode land in
    episodes.parquet and their mean in summary.csv; the base counts none."""
    import pandas as pd
    from eval_helpers import small_config
    from typer.testing import CliRunner

    from cli.app import app

    rng = np.random.default_rng(0)
    chunks = np.clip(rng.normal(0, 0.4, (800, 1, 7)) * np.ones((1, 4, 1)), -1, 1)  # the perturbed expert: chunks of 4
    vocabulary = FastTokenizer.fit(chunks, scale=10.0, vocab_size=512).save(tmp_path / "fast4.json")
    text = f"""\
tasks: [Lift]
seeds: [0]
env: {{obs_mode: state, max_episode_steps: 40}}
base:
  name: perturbed
  policy: {{factory: "policies.demo:perturbed_expert", kwargs: {{chunk_size: 4, scale: 0.2}}}}
variants:
  - {{name: fast2, compression: {{action_codec: {{fast: {{tokenizer: "{vocabulary}", max_tokens: 2}}}}}}}}
execution: {{schedule: open_loop, execute_steps: 2}}
profile: {{enabled: false}}
stats: {{bootstrap_resamples: 200}}
"""
    path, _ = small_config(tmp_path, text)
    result = CliRunner().invoke(app, ["eval", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    episodes = pd.read_parquet(tmp_path / "out" / "episodes.parquet").set_index("variant")
    assert episodes.loc["perturbed", "decode_failures"] == 0
    assert 0 < episodes.loc["fast2", "decode_failures"] <= episodes.loc["fast2", "inference_calls"]
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("variant")
    assert summary.loc["fast2", "decode_failures_mean"] == episodes.loc["fast2", "decode_failures"]
