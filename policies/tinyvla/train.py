"""Behaviour cloning of TinyVLA on scripted-expert demonstrations, multi-task.

    python -m policies.tinyvla.train configs/policies/tinyvla.yaml [--steps N] [--output DIR]
    python -m policies.tinyvla.train configs/policies/tinyvla_smooth.yaml   # smoothness fine-tune

Collects the demonstrations it lacks (``policies.tinyvla.demos``), then minimises the L1 error
between predicted and demonstrated action chunks (normalised). A frame's chunk is the next
``chunk_size`` expert actions, the episode's last action repeated past its end. Batches draw
every task equally often, whatever its episode lengths. Images get a random shift of up to
``shift_px`` pixels (DrQ, Kostrikov et al. 2020), the usual remedy for BC from few demos.

Smoothness-aware fine-tuning (``smoothness`` and ``init_from`` in the YAML): start from a
trained checkpoint (its vocabulary and action normaliser are kept, so actions mean the same),
and add ``policies.smoothness`` terms on the predicted (normalised) chunk: action rate and jerk
inside the chunk, and continuity with the chunk the model predicts for the frame ``shift``
steps earlier in the same episode (detached: the new chunk follows the plan being executed).
Frames whose earlier frame is in another episode leave the continuity term out.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
from collections import defaultdict
import time
from pathlib import Path

import numpy as np
import torch
from typing import Literal

from pydantic import ConfigDict, Field, model_validator
from rich.progress import Progress, TextColumn

from policies.normalization import ActionNormalizer
from policies.smoothness import SmoothnessWeights, continuity_loss, smoothness_loss
from policies.tinyvla import checkpoint
from policies.tinyvla.model import TinyVLA, TinyVLAConfig
from policies.tinyvla.tokenizer import ByteBPETokenizer, WordTokenizer
from vla_envs.config import load_config
from vla_envs.progress import progress_columns
from vla_envs.strict_config import StrictConfig


class _Strict(StrictConfig):
    # training configs hold numbers written by hand and by scripts: 1e-3 as a float, not text
    model_config = ConfigDict(strict=False)


class DemosSection(_Strict):
    """The suite's own tasks (``episodes``: successful expert episodes per task, cached under
    ``cache_dir``), or LIBERO's (``libero``: a ``configs/demos/*.yaml`` of
    ``policies.libero_demos``, which also sets the image size)."""

    cache_dir: str = "data/demos"
    image_size: int = Field(64, ge=8)
    translation_noise: float = Field(0.1, ge=0.0)
    episodes: dict[str, int] | None = None
    libero: str | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if (self.episodes is None) == (self.libero is None):
            raise ValueError("demos: expected either 'episodes' (the suite's tasks) or 'libero' (a LIBERO demos config), "
                             "not both or neither")
        if self.libero is not None:
            from policies.libero_demos import LiberoDemoConfig

            demos = load_config(self.libero, LiberoDemoConfig)
            if "image_size" in self.model_fields_set and self.image_size != demos.image_size:
                raise ValueError(f"demos.image_size = {self.image_size}: the LIBERO demos config {self.libero} "
                                 f"renders {demos.image_size} px")
            object.__setattr__(self, "image_size", demos.image_size)
        return self


class ModelSection(_Strict):
    width: int = Field(128, ge=8)
    depth: int = Field(4, ge=1)
    heads: int = Field(4, ge=1)
    chunk_size: int = Field(8, ge=1)
    patch_sizes: dict[str, int] = {"image": 8, "wrist_image": 16}
    max_instruction_tokens: int = Field(12, ge=1)
    sparsify_after_block: int = Field(1, ge=0)
    mlp_ratio: int = Field(4, ge=1)
    tokenizer: Literal["word", "byte_bpe"] = "word"
    tokenizer_vocab_size: int = Field(512, ge=257, description="byte_bpe: 256 bytes, the padding token and merges")
    proprio_key: Literal["proprio", "libero_state"] = "proprio"


class TrainSection(_Strict):
    steps: int = Field(3000, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(3e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(200, ge=0)
    shift_px: int = Field(4, ge=0)
    seed: int = 0
    threads: int = Field(2, ge=1)
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$")


class SmoothnessSection(_Strict):
    """Weights of ``policies.smoothness`` terms added to the L1 imitation loss (0: off)."""

    action_rate: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    jerk: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    continuity: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    shift: int = Field(4, ge=1, description="the open-loop k the continuity term assumes")
    action_dims: list[int] | None = Field(None, description="action dimensions the terms see (default: all)")

    def weights(self):
        from policies.smoothness import SmoothnessWeights

        return SmoothnessWeights(self.action_rate, self.jerk, self.continuity, self.shift)


class InitSection(_Strict):
    """Fine-tune from this checkpoint instead of a random initialisation."""

    directory: str = "policies/tinyvla/weights"
    name: str = "tinyvla"


class OutputSection(_Strict):
    directory: str = "policies/tinyvla/weights"
    name: str = "tinyvla"


class TrainConfig(_Strict):
    demos: DemosSection
    model: ModelSection = ModelSection()
    train: TrainSection = TrainSection()
    smoothness: SmoothnessSection = SmoothnessSection()
    init_from: InitSection | None = None
    output: OutputSection = OutputSection()

    @model_validator(mode="after")
    def _continuity_overlaps(self):
        dims = self.smoothness.action_dims
        if dims is not None and (not dims or len(set(dims)) != len(dims) or min(dims) < 0):
            raise ValueError(f"smoothness.action_dims = {dims}: expected distinct action indices >= 0")
        if self.smoothness.continuity > 0 and self.smoothness.shift >= self.model.chunk_size:
            raise ValueError(f"smoothness.shift = {self.smoothness.shift}: expected < model.chunk_size = "
                             f"{self.model.chunk_size} (the chunks must overlap)")
        return self


def load_demos(section: DemosSection, workers: int = 1) -> dict[str, dict[str, np.ndarray]]:
    """Each task's demonstrations from the cache, collecting what is missing first: in this
    process (``workers=1``, topping up a short file) or over ``workers`` processes in shards."""
    if section.libero is not None:
        return load_libero_demos(section.libero, workers)
    from policies.tinyvla.demos import DemoSpec, collect, collect_parallel, load

    out, missing = {}, []
    for task, episodes in section.episodes.items():
        path = Path(section.cache_dir) / f"{task}.npz"
        spec = DemoSpec(task, episodes, image_size=section.image_size, translation_noise=section.translation_noise)
        if path.exists():
            data = load(path)
            if len(data["seed"]) >= episodes and data["image"].shape[1] == section.image_size:
                out[task] = first_episodes(data, episodes)
                continue
        missing.append((spec, path))
    if missing and workers > 1:
        print(f"collecting {', '.join(spec.task for spec, _ in missing)} demonstrations over {workers} processes")
        collect_parallel(missing, workers)
    for spec, path in missing:
        if workers <= 1:
            print(f"collecting {spec.task} demonstrations up to {spec.episodes} -> {path}")
            collect(spec, path)
        out[spec.task] = first_episodes(load(path), spec.episodes)
    return {task: out[task] for task in section.episodes}


def load_libero_demos(path: str, workers: int = 1) -> dict[str, dict[str, np.ndarray]]:
    """Each LIBERO task's demonstrations (``LIBERO-Spatial-3``: its shards merged), collecting
    the shards that are missing first."""
    from policies.libero_demos import LiberoDemoConfig, collect, load_task
    from vla_envs.libero.suites import task_name

    config = load_config(path, LiberoDemoConfig)
    collect(config, workers=workers)
    return {task_name(suite, task): load_task(config.out, suite, task) for suite in config.suites
            for task in config.task_indices(suite)}


def tokenizer_texts(instructions: list[str]) -> list[str]:
    """What a byte-level BPE tokenizer is trained on: the demonstrations' instructions and every
    LIBERO instruction (text only), so that held-out LIBERO tasks' words are whole tokens too."""
    try:
        from vla_envs.libero.suites import SUITES, suite_tasks

        libero = [task.instruction for suite in SUITES for task in suite_tasks(suite)]
    except ImportError:  # LIBERO not installed: the demonstrations' own
        libero = []
    return sorted(set(instructions) | set(libero))


def build_tokenizer(section: ModelSection, instructions: list[str]):
    if section.tokenizer == "byte_bpe":
        return ByteBPETokenizer.from_texts(tokenizer_texts(instructions), section.max_instruction_tokens,
                                           section.tokenizer_vocab_size)
    return WordTokenizer.from_texts(instructions, section.max_instruction_tokens)


def first_episodes(data: dict[str, np.ndarray], episodes: int) -> dict[str, np.ndarray]:
    """The first ``episodes`` episodes of a demonstration file (a cache may hold more)."""
    keep = data["episode"] < episodes
    per_frame = len(data["episode"])
    trimmed = {key: (value[keep] if value.ndim and len(value) == per_frame else value) for key, value in data.items()}
    trimmed["seed"] = data["seed"][:episodes]
    return trimmed


def chunk_indices(episode: np.ndarray, chunk_size: int) -> np.ndarray:
    """(N, chunk_size) frame indices of each frame's next actions, clamped to its episode's end."""
    n = len(episode)
    last = np.empty(n, np.int64)
    # the last frame of each frame's episode (episodes are contiguous runs)
    boundaries = np.flatnonzero(np.diff(episode)) + 1
    ends = np.append(boundaries, n) - 1
    starts = np.insert(boundaries, 0, 0)
    for start, end in zip(starts, ends):
        last[start : end + 1] = end
    return np.minimum(np.arange(n)[:, None] + np.arange(chunk_size)[None, :], last[:, None])


def earlier_frames(episode: np.ndarray, shift: int) -> np.ndarray:
    """Index of the frame ``shift`` steps earlier in the same episode, or -1 where there is none."""
    n = len(episode)
    earlier = np.arange(n) - shift
    valid = earlier >= 0
    valid[valid] = episode[earlier[valid]] == episode[valid]
    return np.where(valid, earlier, -1)


def random_shift(images: torch.Tensor, pad: int, offsets: torch.Tensor) -> torch.Tensor:
    """Shift each (S, S, C) image by ``offsets[i] - pad`` pixels (rows, columns), repeating edge
    pixels: the same as replicate-padding by ``pad`` and cropping at ``offsets[i]``."""
    if pad == 0:
        return images
    batch, size = images.shape[0], images.shape[1]
    span = torch.arange(size, device=images.device)
    rows = (offsets[:, :1] - pad + span).clamp(0, size - 1)  # (B, S)
    cols = (offsets[:, 1:] - pad + span).clamp(0, size - 1)
    return images[torch.arange(batch, device=images.device)[:, None, None], rows[:, :, None], cols[:, None, :]]


def train(config: TrainConfig, steps: int | None = None, output: Path | None = None, device: str | None = None,
          collect_workers: int = 1) -> Path:
    section = config.train
    device = torch.device(device or section.device)
    torch.manual_seed(section.seed)
    torch.set_num_threads(section.threads)
    generator = torch.Generator().manual_seed(section.seed)
    rng = np.random.default_rng(section.seed)

    demos = load_demos(config.demos, collect_workers)
    tasks = list(demos)
    instructions = {task: str(data["instruction"]) for task, data in demos.items()}
    tokenizer = build_tokenizer(config.model, list(instructions.values()))
    images = {cam: np.concatenate([demos[t][cam] for t in tasks]) for cam in config.model.patch_sizes}
    proprio = np.concatenate([demos[t][config.model.proprio_key] for t in tasks]).astype(np.float32)
    actions = np.concatenate([demos[t]["action"] for t in tasks])
    offsets = np.cumsum([0] + [len(demos[t]["action"]) for t in tasks])
    chunks = np.concatenate([chunk_indices(demos[t]["episode"], config.model.chunk_size) + offsets[i]
                             for i, t in enumerate(tasks)])
    word_ids = np.concatenate([np.tile(tokenizer.encode(instructions[t]), (len(demos[t]["action"]), 1)) for t in tasks])
    # equal probability mass per task
    weights = np.concatenate([np.full(len(demos[t]["action"]), 1.0 / len(demos[t]["action"])) for t in tasks])
    weights /= weights.sum()

    if config.init_from is not None:
        model, tokenizer, normalizer, init_meta = checkpoint.load(Path(config.init_from.directory), config.init_from.name)
        _check_compatible(model, tokenizer, instructions, proprio, actions, config)
        word_ids = np.concatenate([np.tile(tokenizer.encode(instructions[t]), (len(demos[t]["action"]), 1)) for t in tasks])
    else:
        init_meta = None
        normalizer = ActionNormalizer.from_data(actions)
        model_config = TinyVLAConfig(vocab_size=tokenizer.vocab_size, proprio_dim=proprio.shape[1],
                                     action_dim=actions.shape[1], image_size=config.demos.image_size,
                                     **config.model.model_dump(exclude={"tokenizer", "tokenizer_vocab_size"}))
        model = TinyVLA(model_config)
        model.proprio_mean.copy_(torch.from_numpy(proprio.mean(axis=0)))
        model.proprio_std.copy_(torch.from_numpy(np.maximum(proprio.std(axis=0), 1e-3)))
    targets = torch.from_numpy(normalizer.normalize(actions)).to(device)
    smooth = config.smoothness.weights()
    smooth_dims = list(range(actions.shape[1])) if config.smoothness.action_dims is None else config.smoothness.action_dims
    if max(smooth_dims) >= actions.shape[1]:
        raise ValueError(f"smoothness.action_dims = {smooth_dims}: the actions have {actions.shape[1]} dimensions")
    earlier = np.concatenate([np.where(e >= 0, e + offsets[i], -1) for i, e in
                              enumerate(earlier_frames(demos[t]["episode"], smooth.shift) for t in tasks)])
    earlier_t = torch.from_numpy(earlier).to(device)
    model.to(device)
    if device.type == "cuda":  # tensor cores for the matmuls and convolutions (TF32); ~1e-3 relative error
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    optimizer = torch.optim.AdamW(model.parameters(), lr=section.learning_rate, weight_decay=section.weight_decay)
    total = steps or section.steps

    def learning_rate(step: int) -> float:  # linear warm-up, cosine decay to 0
        if step < section.warmup_steps:
            return (step + 1) / section.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * (step - section.warmup_steps) / max(1, total - section.warmup_steps)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate)
    images_t = {cam: torch.from_numpy(array).to(device) for cam, array in images.items()}
    proprio_t, words_t, chunks_t = (torch.from_numpy(a).to(device) for a in (proprio, word_ids, chunks))
    losses: list[float] = []
    term_history: dict[str, list[float]] = defaultdict(list)  # the loss's parts, for the record
    # Losses stay on the device until a log line needs them: a .item() per step would wait for the
    # GPU every step, which made small-batch training launch-bound.
    pending_losses: list[torch.Tensor] = []
    pending_l1: list[torch.Tensor] = []

    def drain() -> None:
        if pending_losses:
            losses.extend(torch.stack(pending_losses).tolist())
            term_history["imitation_l1"].extend(torch.stack(pending_l1).tolist())
            pending_losses.clear()
            pending_l1.clear()

    start = time.perf_counter()
    model.train()
    columns = progress_columns("steps", TextColumn("loss {task.fields[loss]:.4f}"))
    with Progress(*columns) as progress:
        bar = progress.add_task(f"training {config.output.name}", total=total, loss=float("nan"))
        for step in range(total):
            index = torch.from_numpy(rng.choice(len(weights), section.batch_size, p=weights)).to(device)
            batch_images = {}
            for cam in images_t:
                offsets = torch.randint(0, 2 * section.shift_px + 1, (section.batch_size, 2), generator=generator)
                batch_images[cam] = random_shift(images_t[cam][index], section.shift_px, offsets.to(device))
            predicted = model(batch_images, words_t[index], proprio_t[index])
            loss = (predicted - targets[chunks_t[index]]).abs().mean()
            pending_l1.append(loss.detach())
            smoothed = predicted[..., smooth_dims]
            previous = None
            if smooth.continuity > 0:
                has_earlier = earlier_t[index] >= 0
                if has_earlier.any():
                    before = earlier_t[index][has_earlier]
                    with torch.no_grad():
                        previous = model({cam: images_t[cam][before] for cam in images_t}, words_t[before], proprio_t[before])
                    previous = previous[..., smooth_dims]
                    smoothed_with_earlier = smoothed[has_earlier]
            if smooth.action_rate > 0 or smooth.jerk > 0 or previous is not None:
                extra, terms = smoothness_loss(smoothed, SmoothnessWeights(smooth.action_rate, smooth.jerk, 0.0, smooth.shift))
                if previous is not None:
                    continuity = continuity_loss(smoothed_with_earlier, previous, smooth.shift)
                    extra = extra + smooth.continuity * continuity
                    terms["continuity"] = float(continuity.detach())
                for name, value in terms.items():
                    term_history[name].append(value)
                loss = loss + extra
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            pending_losses.append(loss.detach())
            if step % 20 == 0 or step == total - 1:
                drain()
                progress.update(bar, completed=step + 1, loss=float(np.mean(losses[-20:])))
                if not progress.console.is_terminal and step % 100 == 0:  # logs get a line now and then
                    elapsed = time.perf_counter() - start
                    print(f"step {step + 1}/{total} loss {np.mean(losses[-100:]):.4f} "
                          f"elapsed {elapsed:.0f} s eta {elapsed / (step + 1) * (total - step - 1):.0f} s", flush=True)
    wall_time_s = time.perf_counter() - start
    model.eval().cpu()
    record = {
        "config": config.model_dump(),
        "steps": total,
        "wall_time_s": round(wall_time_s, 1),
        "torch_threads": section.threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
        "device": str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})",
        "frames": {t: int(len(demos[t]["action"])) for t in tasks},
        "episodes": {t: int(len(demos[t]["seed"])) for t in tasks},
        "demo_seeds": {t: [int(demos[t]["seed"].min()), int(demos[t]["seed"].max())] for t in tasks},
        "instructions": instructions,
        "final_loss": float(np.mean(losses[-100:])),
        "final_terms": {name: float(np.mean(values[-100:])) for name, values in term_history.items()},
        "smoothness": config.smoothness.model_dump(),
        "init_from": None if init_meta is None else {**config.init_from.model_dump(), "steps": init_meta["training"].get("steps")},
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    path = checkpoint.save(output or Path(config.output.directory), config.output.name, model, tokenizer, normalizer, record)
    print(f"saved {path} after {total} steps in {wall_time_s:.0f} s (final L1 {record['final_loss']:.4f})")
    return path


def _check_compatible(model: TinyVLA, tokenizer: WordTokenizer, instructions: dict[str, str], proprio: np.ndarray,
                      actions: np.ndarray, config: TrainConfig) -> None:
    """The demonstrations must fit the checkpoint being fine-tuned (ValueError naming what differs)."""
    have = model.config
    for field, expected, actual in (("proprio_dim", have.proprio_dim, proprio.shape[1]),
                                    ("action_dim", have.action_dim, actions.shape[1]),
                                    ("image_size", have.image_size, config.demos.image_size),
                                    ("chunk_size", have.chunk_size, config.model.chunk_size)):
        if expected != actual:
            raise ValueError(f"init_from {config.init_from.name}: {field} is {expected} in the checkpoint, "
                             f"{actual} in this config's demonstrations/model")
    unknown = tokenizer.unknown_words(list(instructions.values()))
    if unknown:
        raise ValueError(f"init_from {config.init_from.name}: instruction words {unknown} are not in the checkpoint's vocabulary")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="YAML config (e.g. configs/policies/tinyvla.yaml)")
    parser.add_argument("--steps", type=int, help="override train.steps")
    parser.add_argument("--output", type=Path, help="override output.directory")
    parser.add_argument("--device", help="override train.device (cpu, cuda)")
    parser.add_argument("--collect-workers", type=int, default=1,
                        help="processes that collect missing demonstrations (in fixed shards: the data do not depend on it)")
    parser.add_argument("--collect-only", action="store_true", help="collect the demonstrations, do not train")
    args = parser.parse_args(argv)
    config = load_config(args.config, TrainConfig)
    if args.collect_only:
        load_demos(config.demos, args.collect_workers)
        return
    train(config, steps=args.steps, output=args.output, device=args.device, collect_workers=args.collect_workers)


if __name__ == "__main__":
    main()
