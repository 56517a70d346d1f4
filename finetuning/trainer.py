"""``vla-envs finetune``: train a residual on a frozen base policy with stable-baselines3.

The env stack of every training env (``make_env``)::

    gym.make(task, **env)  ->  EfficiencyReward(reward)  ->  ResidualActionEnv(base)  ->  Monitor

so the shaped reward and the embodied metrics see the action the simulator applies. Envs are
vectorised (``DummyVecEnv`` or ``SubprocVecEnv``) and optionally ``VecNormalize``d
(observations only). The run directory::

    OUT/config.yaml              the config as run
    OUT/logs/progress.csv        SB3's log: rollout/ep_rew_mean, rollout/success_rate,
                                 embodied/<metric> and reward_terms/<term> per dump (mean of the
                                 episodes that ended since the previous one), time/*, train/*;
                                 OUT/logs/events.* too when TensorBoard is installed
    OUT/checkpoints/             resumable checkpoints (``finetuning.checkpoints``)
    OUT/residual.safetensors     the final residual: ``policy: {kind: residual, checkpoint: ...}``
    OUT/learning_curve.png       success, return, jerk and energy against environment steps
    OUT/.vla-envs.json           the folder's manifest, OUT/.vla-envs.lock its lock
                                 (``vla_envs.files``): one run at a time, and OUT must be new,
                                 empty or this command's (a folder with ``checkpoints/latest`` and
                                 only the names above counts as one, written before the manifest)

``--resume`` continues from ``checkpoints/latest`` with the same settings (the step budget may
grow); when that checkpoint is damaged, from the newest intact one, with a warning naming what
was wrong (``finetuning.checkpoints``). The resumed run reloads networks, optimizers, the
normaliser and SAC's replay buffer; the envs restart with fresh episodes, so it is not
bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml
from stable_baselines3.common.logger import (
    CSVOutputFormat,
    Logger,
    TensorBoardOutputFormat,
)

from finetuning import checkpoints
from finetuning.checkpoints import CheckpointError
from finetuning.config import FinetuneConfig
from finetuning.residual_env import ResidualActionEnv
from vla_envs.errors import VlaEnvsError
from vla_envs.files import OutputFolderError, atomic_path, claim_output_folder, lock_output_folder

RESIDUAL_FILE = "residual.safetensors"
CURVE_FILE = "learning_curve.png"
# what a run writes at the top of its folder (module docstring)
RUN_FILES = ("config.yaml", "logs", "checkpoints", RESIDUAL_FILE, CURVE_FILE)
_ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}


class FinetuneError(VlaEnvsError, RuntimeError):
    """A run that cannot start or continue (the message says why and what to do)."""


def make_env(config: FinetuneConfig) -> gym.Env:
    """One training env: the task, the shaped reward, the residual action (no Monitor)."""
    import vla_envs  # noqa: F401  (registers the tasks)
    from policies.specs import build_policy, stable_seed
    from wrappers import EfficiencyReward

    env_id, kwargs = config.env.env_for(config.task)
    env = gym.make(env_id, **kwargs)
    env = EfficiencyReward(env, config=config.reward_config())
    return ResidualActionEnv(
        env,
        base_policy=lambda inner: build_policy(config.base.policy, inner, config.task,
                                               stable_seed(config.training.seed, config.task, "base")),
        scale=config.residual.scale,
        obs_keys=config.residual.obs_keys,
        include_base_action=config.residual.include_base_action,
        execution=config.base.execution.executor_kwargs(),
    )


def _env_factory(config: FinetuneConfig):
    def build():
        from stable_baselines3.common.monitor import Monitor

        torch.set_num_threads(1)  # envs (and their base policies) run one per core
        if multiprocessing.parent_process() is not None:
            # a SubprocVecEnv worker: Ctrl-C reaches the whole process group, and the main
            # process stops the run between steps; a worker interrupted mid-step would die
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return Monitor(make_env(config))

    return build


def make_vec_env(config: FinetuneConfig):
    from stable_baselines3.common.vec_env import (
        DummyVecEnv,
        SubprocVecEnv,
        VecNormalize,
    )

    factories = [_env_factory(config) for _ in range(config.training.num_envs)]
    vec = SubprocVecEnv(factories, start_method="spawn") if config.training.vec_env == "subproc" else DummyVecEnv(factories)
    vec.seed(config.training.env_seed_start + config.training.seed)  # env i: this + i, on its first reset
    if config.algorithm.normalize_observations:
        vec = VecNormalize(vec, norm_obs=True, norm_reward=False, clip_obs=config.algorithm.obs_clip)
    return vec


def build_model(config: FinetuneConfig, vec_env):
    from stable_baselines3 import PPO, SAC

    algorithm = config.algorithm
    policy_kwargs = dict(algorithm.policy_kwargs)
    policy_kwargs["activation_fn"] = _ACTIVATIONS[algorithm.activation]
    policy_kwargs.setdefault("net_arch", [64, 64])
    cls = {"PPO": PPO, "SAC": SAC}[algorithm.name]
    return cls("MlpPolicy", vec_env, seed=config.training.seed, device=config.training.device,
               policy_kwargs=policy_kwargs, verbose=0, **algorithm.hyperparameters)


# -- the deployable residual ----------------------------------------------------------------
def actor_layers(model) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) of the deterministic actor's linear layers, input first."""
    from stable_baselines3 import SAC

    if isinstance(model, SAC):
        modules = [*model.actor.latent_pi, model.actor.mu]
    else:
        modules = [*model.policy.mlp_extractor.policy_net, model.policy.action_net]
    return [(m.weight, m.bias) for m in modules if isinstance(m, torch.nn.Linear)]


def export_residual(model, vec_env, config: FinetuneConfig, path: Path, training: dict[str, Any]) -> Path:
    """Write the residual file ``vla-envs eval`` loads (``policies.residual``)."""
    from stable_baselines3.common.vec_env import VecNormalize

    from policies.residual import ResidualSpec, broadcast_scale, save_residual

    space = vec_env.get_attr("base_action_space")[0]  # the bounds executed actions are clipped to
    features = vec_env.observation_space.shape[0]
    if isinstance(vec_env, VecNormalize):
        mean = vec_env.obs_rms.mean
        std = np.sqrt(vec_env.obs_rms.var + vec_env.epsilon)
    else:
        mean, std = np.zeros(features), np.ones(features)
    spec = ResidualSpec(
        obs_keys=list(config.residual.obs_keys),
        include_base_action=config.residual.include_base_action,
        scale=broadcast_scale(config.residual.scale, space.shape[0]).tolist(),
        action_low=space.low.astype(float).tolist(),
        action_high=space.high.astype(float).tolist(),
        activation=config.algorithm.activation,
        squash="tanh" if config.algorithm.name == "SAC" else "clip",
        obs_clip=config.algorithm.obs_clip if isinstance(vec_env, VecNormalize) else float("inf"),
        base_policy=config.base.policy.model_dump(mode="json"),
        base_execution=config.base.execution.executor_kwargs(),
        task=config.task,
        training=training,
    )
    return save_residual(path, spec, actor_layers(model), mean, std)


# -- checkpoints ------------------------------------------------------------------------------
def _torch_state(model) -> tuple[dict[str, dict], dict[str, torch.Tensor]]:
    from stable_baselines3.common.save_util import recursive_getattr

    state_dict_names, variable_names = model._get_torch_save_params()
    states = {name: recursive_getattr(model, name).state_dict() for name in state_dict_names}
    variables = {name: recursive_getattr(model, name).detach().clone() for name in variable_names}
    return states, variables


def save_checkpoint(model, vec_env, config: FinetuneConfig, out: Path, wall_time_s: float) -> Path:
    from safetensors.torch import save_file
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.vec_env import VecNormalize

    states, variables = _torch_state(model)
    policy_tensors = {f"policy.{k}": v.detach().cpu().contiguous() for k, v in states.pop("policy").items()}
    policy_tensors.update({f"variable.{k}": v.cpu().reshape(-1).contiguous() for k, v in variables.items()})
    writers: dict[str, Any] = {
        "agent.safetensors": lambda p: save_file(policy_tensors, str(p)),
        "optimizers.pt": lambda p: checkpoints.save_torch_states(p, states),
    }
    if isinstance(vec_env, VecNormalize):
        rms = vec_env.obs_rms
        writers["normalizer.safetensors"] = lambda p: save_file(
            {"mean": torch.as_tensor(rms.mean), "var": torch.as_tensor(rms.var),
             "count": torch.as_tensor([float(rms.count)], dtype=torch.float64)}, str(p))
    if isinstance(model, OffPolicyAlgorithm):
        writers["replay_buffer.npz"] = lambda p: checkpoints.save_arrays(p, _replay_arrays(model.replay_buffer))
    training = _provenance(config, model.num_timesteps, wall_time_s)
    writers[RESIDUAL_FILE] = lambda p: export_residual(model, vec_env, config, p, training)
    state = {"num_timesteps": int(model.num_timesteps), "n_updates": int(getattr(model, "_n_updates", 0)),
             "wall_time_s": round(wall_time_s, 1), "config": config.model_dump(mode="json")}
    return checkpoints.write_checkpoint(out / "checkpoints", model.num_timesteps, writers, state,
                                        config.training.keep_checkpoints)


def _replay_arrays(buffer) -> dict[str, np.ndarray]:
    size = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {name: getattr(buffer, name)[:size] for name in
              ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
              if getattr(buffer, name, None) is not None}
    arrays["pos"] = np.asarray(buffer.pos)
    arrays["full"] = np.asarray(buffer.full)
    return arrays


def _restore_replay(buffer, arrays: dict[str, np.ndarray]) -> None:
    size = len(arrays["actions"])
    if size > buffer.buffer_size:
        raise FinetuneError(f"the checkpoint's replay buffer holds {size} transitions, more than buffer_size {buffer.buffer_size}")
    for name, values in arrays.items():
        if name not in ("pos", "full"):
            getattr(buffer, name)[:size] = values
    buffer.pos = int(arrays["pos"])
    buffer.full = bool(arrays["full"])


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read and checked in full (``read_checkpoint``), ready to load into a model."""

    path: Path
    state: dict
    config: FinetuneConfig
    agent: dict
    optimizers: dict
    normalizer: dict | None
    replay: dict | None


def read_checkpoint(path: Path) -> Checkpoint:
    """Read every file of the checkpoint at ``path``; ``CheckpointError`` naming the first file
    that is missing, unreadable, not finite or not what the checkpoint's config implies."""
    from pydantic import ValidationError

    state = checkpoints.read_state(path)
    try:
        config = FinetuneConfig.model_validate(state["config"])
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CheckpointError(f"{path / checkpoints.STATE_FILE}: config.{'.'.join(map(str, first['loc']))}: "
                              f"{first['msg']}") from None
    agent = checkpoints.read_tensors(path / "agent.safetensors")
    optimizers = checkpoints.load_torch_states(path / "optimizers.pt")
    normalizer = replay = None
    if config.algorithm.normalize_observations:
        normalizer = checkpoints.read_tensors(path / "normalizer.safetensors")
        if set(normalizer) != {"mean", "var", "count"}:
            raise CheckpointError(f"{path / 'normalizer.safetensors'} holds {sorted(normalizer)}: expected mean, var, count")
    if config.algorithm.name == "SAC":
        replay = checkpoints.load_arrays(path / "replay_buffer.npz")
        if not {"actions", "pos", "full"} <= set(replay):
            raise CheckpointError(f"{path / 'replay_buffer.npz'} holds {sorted(replay)}: expected actions, pos, full "
                                  "and the other buffer arrays")
    checkpoints.read_tensors(path / RESIDUAL_FILE)  # checked only: a finished run copies it out as its result
    return Checkpoint(path, state, config, agent, optimizers, normalizer, replay)


def apply_checkpoint(model, vec_env, checkpoint: Checkpoint) -> dict:
    """Load a checkpoint read by ``read_checkpoint`` into the model, the normaliser and SAC's
    replay buffer; returns its state."""
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.save_util import recursive_getattr
    from stable_baselines3.common.vec_env import VecNormalize

    tensors = checkpoint.agent
    states = dict(checkpoint.optimizers)
    states["policy"] = {k[len("policy."):]: v for k, v in tensors.items() if k.startswith("policy.")}
    try:
        model.set_parameters(states, exact_match=True, device=model.device)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise FinetuneError(f"{checkpoint.path}: its weights do not fit the model "
                            f"({checkpoints.describe_error(exc)})") from None
    for key, value in tensors.items():
        if key.startswith("variable."):
            target = recursive_getattr(model, key[len("variable."):])
            with torch.no_grad():
                target.copy_(value.reshape(target.shape).to(target.device))
    if isinstance(vec_env, VecNormalize):
        stats = checkpoint.normalizer
        vec_env.obs_rms.mean = stats["mean"].double().numpy()
        vec_env.obs_rms.var = stats["var"].double().numpy()
        vec_env.obs_rms.count = float(stats["count"][0])
    if isinstance(model, OffPolicyAlgorithm):
        _restore_replay(model.replay_buffer, checkpoint.replay)
    state = checkpoint.state
    model.num_timesteps = int(state["num_timesteps"])
    if hasattr(model, "_n_updates"):
        model._n_updates = int(state["n_updates"])
    return state


def load_checkpoint(model, vec_env, path: Path) -> dict:
    """``apply_checkpoint(model, vec_env, read_checkpoint(path))``."""
    return apply_checkpoint(model, vec_env, read_checkpoint(path))


def newest_intact_checkpoint(root: Path) -> Checkpoint | None:
    """The checkpoint a resumed run continues from: the one ``latest`` names or, when it is
    damaged, the newest intact one, with a warning (on stderr) naming each checkpoint skipped and
    why. ``None`` when there is none at all; ``FinetuneError`` when none is intact."""
    candidates, problems = checkpoints.resume_candidates(root) if root.is_dir() else ([], [])
    for path in candidates:
        try:
            found = read_checkpoint(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        for problem in problems:
            print(f"warning: {problem}; resuming from {path}", file=sys.stderr)
        return found
    if problems:
        raise FinetuneError(f"--resume: no intact checkpoint in {root} ({'; '.join(problems)}): expected one "
                            "`vla-envs finetune` wrote; run without --resume into another --out to start over")
    return None


def _provenance(config: FinetuneConfig, num_timesteps: int, wall_time_s: float) -> dict[str, Any]:
    return {"algorithm": config.algorithm.name, "steps": int(num_timesteps), "wall_time_s": round(wall_time_s, 1),
            "num_envs": config.training.num_envs, "config_name": config.name}


# -- logging ----------------------------------------------------------------------------------
class AppendingCSVOutputFormat(CSVOutputFormat):
    """SB3's CSV writer, continuing an existing file (its header and rows kept) on resume."""

    def __init__(self, filename: str):
        path = Path(filename)
        if not (path.is_file() and path.stat().st_size > 0):
            super().__init__(filename)
            return
        self.file = open(path, "r+")
        header = self.file.readline().rstrip("\n")
        self.keys = header.split(",") if header else []
        self.file.seek(0, 2)
        self.separator = ","
        self.quotechar = '"'


def make_logger(log_dir: Path) -> Logger:
    """SB3 logger writing CSV (appending to an existing progress.csv) and TensorBoard when installed."""
    log_dir.mkdir(parents=True, exist_ok=True)
    formats: list = [AppendingCSVOutputFormat(str(log_dir / "progress.csv"))]
    if importlib.util.find_spec("tensorboard") is not None:  # optional: SB3 asserts it is installed
        formats.append(TensorBoardOutputFormat(str(log_dir)))
    return Logger(str(log_dir), formats)


# -- the run ----------------------------------------------------------------------------------
def _callbacks(config: FinetuneConfig, vec_env, out: Path, clock: dict, stop: dict):
    from stable_baselines3.common.callbacks import BaseCallback

    from wrappers.sb3_callback import EmbodiedMetricsCallback

    class Checkpointing(BaseCallback):
        """Saves a checkpoint every ``checkpoint_every`` environment steps."""

        def __init__(self):
            super().__init__()
            self.next_at = 0

        def _on_training_start(self) -> None:
            every = config.training.checkpoint_every
            self.next_at = (self.model.num_timesteps // every + 1) * every

        def _on_step(self) -> bool:
            if self.model.num_timesteps >= self.next_at:
                save_checkpoint(self.model, vec_env, config, out, clock["before"] + time.perf_counter() - clock["start"])
                self.next_at += config.training.checkpoint_every
            return not stop["requested"]  # False ends learn() between two steps, the envs intact

    return [EmbodiedMetricsCallback(), Checkpointing()]


def run(config: FinetuneConfig, out: Path, resume: bool = False, progress_bar: bool = True) -> Path:
    """Train (or continue) a residual; returns the path of the final ``residual.safetensors``."""
    out = Path(out)
    with _own_folder(out):
        return _train(config, out, resume, progress_bar)


@contextmanager
def _own_folder(out: Path):
    """Hold ``out``'s lock and claim it for this command (``vla_envs.files``), so a run never
    replaces a user's config.yaml or residual, nor two runs train into one folder."""
    try:
        with lock_output_folder(out, "finetune"):
            # a run folder from before the manifest: recognised by its checkpoint pointer
            legacy = RUN_FILES if (out / "checkpoints" / checkpoints.LATEST).is_file() else ()
            claim_output_folder(out, "finetune", RUN_FILES, legacy=legacy)
            yield
    except OutputFolderError as exc:  # only the lock's and the claim's: _train raises FinetuneError
        raise FinetuneError(str(exc)) from None


def _train(config: FinetuneConfig, out: Path, resume: bool, progress_bar: bool) -> Path:
    root = out / "checkpoints"
    if not resume:
        if (root / checkpoints.LATEST).exists() or any(root.glob("step_*")) or (out / "logs" / "progress.csv").exists():
            raise FinetuneError(f"{out} already holds a fine-tuning run; pass --resume to continue it or choose another --out")
        previous = None
    else:
        previous = newest_intact_checkpoint(root)
        if previous is None:
            raise FinetuneError(f"--resume: {out}/checkpoints holds no checkpoint; run without --resume to start")
        if previous.config.resume_settings() != config.resume_settings():
            changed = _diff(previous.config.resume_settings(), config.resume_settings())
            raise FinetuneError(f"--resume: the config differs from the checkpoint's in {changed}; "
                                "only training.total_steps, checkpoint_every and keep_checkpoints may change")
        if previous.state["num_timesteps"] >= config.training.total_steps:
            print(f"{previous.path} already reached {previous.state['num_timesteps']} of {config.training.total_steps} steps")
            return _finish(config, out, previous.path)
    with atomic_path(out / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    torch.set_num_threads(config.training.torch_threads)
    vec_env = make_vec_env(config)
    model = build_model(config, vec_env)
    clock = {"before": 0.0, "start": time.perf_counter()}
    if previous is not None:
        apply_checkpoint(model, vec_env, previous)
        clock["before"] = float(previous.state["wall_time_s"])
        print(f"resumed from {previous.path} at step {model.num_timesteps}")
    model.set_logger(make_logger(out / "logs"))
    remaining = config.training.total_steps - model.num_timesteps
    # Ctrl-C (or a scheduler's SIGTERM) asks learn() to stop after the current step, so the
    # simulator is never interrupted half-way through a step or a reset; a second one stops now.
    stop = {"requested": False}

    def request_stop(signum, frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        model.learn(remaining, callback=_callbacks(config, vec_env, out, clock, stop), reset_num_timesteps=False,
                    progress_bar=progress_bar)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    interrupted = stop["requested"]
    wall = clock["before"] + time.perf_counter() - clock["start"]
    final = save_checkpoint(model, vec_env, config, out, wall)
    vec_env.close()
    if interrupted:
        print(f"interrupted at step {model.num_timesteps}: saved {final}; continue with --resume")
        raise KeyboardInterrupt
    return _finish(config, out, final)


def _finish(config: FinetuneConfig, out: Path, checkpoint: Path) -> Path:
    import shutil

    from finetuning.curves import plot_learning_curve

    target = out / RESIDUAL_FILE
    with atomic_path(target) as tmp:
        shutil.copyfile(checkpoint / RESIDUAL_FILE, tmp)
    progress = out / "logs" / "progress.csv"
    if progress.is_file() and progress.stat().st_size > 0:
        plot_learning_curve(progress, out / CURVE_FILE, title=config.name or f"{config.task} residual")
    state = checkpoints.read_state(checkpoint)
    print(f"wrote {target} ({state['num_timesteps']} steps, {state['wall_time_s']:.0f} s)")
    return target


def _diff(before: dict, after: dict, prefix: str = "") -> list[str]:
    changed = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _diff(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key} ({json.dumps(a)} -> {json.dumps(b)})")
    return changed
