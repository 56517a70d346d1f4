"""Nothing a user or an earlier run wrote is lost: recorders sharing a folder keep every episode
(item 4); `finetune`, `compare` and `findings` refuse outputs they did not write (item 5); a
resumed fine-tune skips a damaged checkpoint for the newest intact one (item 6); two evaluations
never write one folder at once (item 10). Real envs, real files, the real CLI, a real tiny run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from eval_helpers import small_config
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from evaluation import run_eval
from evaluation.pages.findings_figure import FIGURE_MARKER, is_findings_figure
from evaluation.pages.findings_markdown import PAGE_MARKER
from finetuning import checkpoints
from cli.app import app
from vla_envs.files import LOCK, MANIFEST, create_new, lock_output_folder, read_manifest
from wrappers import JointStateRecorder
from wrappers.parquet_io import read_metadata

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})


def _one_line_error(result) -> str:
    """The message of a usage error: exit 2, one line, no traceback."""
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    # stdout: a third-party import notice on stderr (old Gym's, where it is installed beside
    # SB3) is not the CLI's message
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


# -- item 4: JointStateRecorder file names ----------------------------------------------------
def _episode(env, seed: int, steps: int = 4) -> None:
    env.reset(seed=seed)
    for _ in range(steps):
        env.step(env.action_space.sample())


def test_two_recorders_on_one_folder_each_keep_their_episodes(tmp_path):
    first = JointStateRecorder(gym.make("Reacher-v5", max_episode_steps=4), out_dir=tmp_path)
    second = JointStateRecorder(gym.make("Reacher-v5", max_episode_steps=4), out_dir=tmp_path)
    _episode(first, seed=1)
    _episode(second, seed=2)
    _episode(first, seed=3)
    first.close()
    second.close()
    files = sorted(tmp_path.glob("*.parquet"))
    assert [f.name for f in files] == [f"episode_{n:06d}.parquet" for n in range(3)]
    assert sorted(read_metadata(f)["seed"] for f in files) == [1, 2, 3]
    assert {p.name for p in first.written_paths}.isdisjoint(p.name for p in second.written_paths)


def test_vector_sub_envs_sharing_out_dir_keep_every_episode(tmp_path):
    vec = gym.vector.SyncVectorEnv(
        [lambda: JointStateRecorder(gym.make("Pusher-v5", max_episode_steps=5), out_dir=tmp_path)] * 2)
    vec.reset(seed=[7, 8])
    for _ in range(5):
        vec.step(np.zeros((2, 7), np.float32))
    vec.close()
    files = sorted(tmp_path.glob("*.parquet"))
    assert len(files) == 2  # before: both sub-envs wrote episode_000000 and one was lost
    assert sorted(read_metadata(f)["seed"] for f in files) == [7, 8]
    assert all(read_metadata(f)["episode"] == 0 for f in files)  # the episode index is kept in the metadata


def test_a_second_run_into_the_folder_never_replaces_a_file_it_did_not_write(tmp_path):
    (tmp_path / "episode_000000.parquet").write_bytes(b"an earlier run's episode")
    env = JointStateRecorder(gym.make("Reacher-v5", max_episode_steps=4), out_dir=tmp_path, file_prefix="")
    _episode(env, seed=0)
    env.close()
    assert (tmp_path / "episode_000000.parquet").read_bytes() == b"an earlier run's episode"
    assert [p.name for p in env.written_paths] == ["episode_000001.parquet"]
    assert read_metadata(env.written_paths[0])["episode"] == 0


def test_create_new_never_takes_a_name_another_writer_took_meanwhile(tmp_path):
    """The race: another writer takes the name while this one is still writing its file."""
    names = [tmp_path / "episode_000000.parquet", tmp_path / "episode_000001.parquet"]

    def write(tmp: Path) -> None:
        names[0].write_bytes(b"the other writer's")  # appears between our check and our rename
        tmp.write_bytes(b"ours")

    taken = create_new(write, names)
    assert taken == names[1] and taken.read_bytes() == b"ours"
    assert names[0].read_bytes() == b"the other writer's"
    assert sorted(p.name for p in tmp_path.iterdir()) == [n.name for n in names]  # no temporary left


# -- item 5: outputs a command did not write -------------------------------------------------
ONE_VARIANT = """\
name: data loss test
tasks: [Lift]
seeds: [0]
env: {obs_mode: state, max_episode_steps: 60}
base: {name: expert, policy: {kind: expert}}
variants:
  - {name: expert_again, policy: {kind: expert}}
recording: {record_steps: false}
profile: {enabled: false}
stats: {bootstrap_resamples: 100}
"""


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    path, config = small_config(tmp, ONE_VARIANT, "one.yaml")
    run_eval(config, tmp / "run", progress=False)
    return path, tmp / "run"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_compare_refuses_to_write_into_a_runs_folder(eval_run, tmp_path):
    _, run = eval_run
    before = _snapshot(run)
    message = _one_line_error(_cli("compare", str(run), str(run), "--out", str(run)))
    assert str(run) in message and "`vla-envs eval`" in message and MANIFEST in message
    assert _snapshot(run) == before  # A's summary and report untouched

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.md").write_text("my notes")
    message = _one_line_error(_cli("compare", str(run), str(run), "--out", str(mine)))
    assert "did not write (summary.md)" in message
    assert (mine / "summary.md").read_text() == "my notes"

    # its own folder, new or written by an earlier compare, is fine
    out = tmp_path / "cmp"
    for _ in range(2):
        result = _cli("compare", str(run), str(run), "--out", str(out))
        assert result.exit_code == 0, result.output
    assert read_manifest(out) == {"command": "compare", "files": ["divergence.csv", "report.html", "summary.csv", "summary.md"]}
    # and eval refuses a comparison's folder
    config_path, _ = eval_run
    message = _one_line_error(_cli("eval", str(config_path), "--out", str(out)))
    assert "`vla-envs compare`" in message


def _tiny_finetune(**training) -> dict:
    return {
        "name": "tiny", "task": "Lift", "env": {"obs_mode": "state", "max_episode_steps": 40},
        "base": {"policy": {"kind": "expert"}}, "residual": {"scale": [0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.25]},
        "reward": "finetune_smooth",
        "algorithm": {"name": "PPO", "hyperparameters": {"n_steps": 64, "batch_size": 32, "n_epochs": 1},
                      "policy_kwargs": {"net_arch": [16, 16]}},
        "training": {"total_steps": 128, "num_envs": 1, "checkpoint_every": 64, **training},
    }


def test_finetune_refuses_a_folder_of_the_users_files(tmp_path):
    config = tmp_path / "ft.yaml"
    config.write_text(yaml.safe_dump(_tiny_finetune()))
    out = tmp_path / "mine"
    out.mkdir()
    mine = {"config.yaml": b"my config", "residual.safetensors": b"my residual", "learning_curve.png": b"my plot"}
    for name, data in mine.items():
        (out / name).write_bytes(data)
    for extra in ([], ["--resume"]):
        message = _one_line_error(_cli("finetune", str(config), "--out", str(out), *extra))
        assert str(out) in message and "a fine-tuning run did not write (config.yaml, learning_curve.png" in message
        assert {name: (out / name).read_bytes() for name in mine} == mine
        assert sorted(p.name for p in out.iterdir()) == sorted(mine)  # nothing written, no lock left
    message = _one_line_error(_cli("finetune", str(config), "--out", str(tmp_path / "new"), "--resume"))
    assert "holds no checkpoint" in message and not (tmp_path / "new").exists()


def test_findings_refuses_a_page_or_figure_it_did_not_write(eval_run, tmp_path):
    _, run = eval_run
    page, figure = tmp_path / "p.md", tmp_path / "p.png"
    page.write_text("# My notes\n")
    figure.write_bytes(b"my picture")
    message = _one_line_error(_cli("findings", str(run), "--output", str(page)))
    assert f"output {page} exists and was not written by `vla-envs findings`" in message
    assert "'# My notes'" in message and PAGE_MARKER in message
    assert page.read_text() == "# My notes\n" and figure.read_bytes() == b"my picture"

    page.unlink()  # no page: the figure alone is still not ours to replace or delete
    message = _one_line_error(_cli("findings", str(run), "--output", str(page)))
    assert f"{figure} exists and was not written by `vla-envs findings`" in message and FIGURE_MARKER[0] in message
    assert not page.exists() and figure.read_bytes() == b"my picture"

    figure.unlink()
    result = _cli("findings", str(run), "--output", str(page))
    assert result.exit_code == 0, result.output
    assert page.read_text().startswith(PAGE_MARKER + "\n# The paper's findings on this suite: data loss test\n")
    page.write_text(page.read_text() + "\nedited by hand\n")
    result = _cli("findings", str(run), "--output", str(page))  # its own page: regenerated
    assert result.exit_code == 0 and "edited by hand" not in page.read_text()


def test_findings_regenerates_the_shipped_page_written_before_the_marker(eval_run, tmp_path):
    """docs/findings.md and .png come from a version that wrote no marker: the page is known by
    its heading, the figure by the page's link to it."""
    _, run = eval_run
    for name in ("findings.md", "findings.png"):
        shutil.copy(REPO / "docs" / name, tmp_path / name)
    assert not (tmp_path / "findings.md").read_text().startswith(PAGE_MARKER)
    assert not is_findings_figure(tmp_path / "findings.png")
    result = _cli("findings", str(run), "--output", str(tmp_path / "findings.md"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "findings.md").read_text().startswith(PAGE_MARKER + "\n")
    # this run tests no finding, so the old figure, the page's own, is removed with its link
    assert not (tmp_path / "findings.png").exists()


# -- item 6: resuming over damaged checkpoints ------------------------------------------------
@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """A finished tiny run: checkpoints at 64 and 128 steps."""
    tmp = tmp_path_factory.mktemp("finetune")
    config = tmp / "ft.yaml"
    config.write_text(yaml.safe_dump(_tiny_finetune()))
    result = _cli("finetune", str(config), "--out", str(tmp / "run"))
    assert result.exit_code == 0, result.output + repr(result.exception)
    root = tmp / "run" / "checkpoints"
    assert sorted(p.name for p in root.glob("step_*")) == ["step_000000064", "step_000000128"]
    return config, tmp / "run"


def _copy(run: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    root = out / "checkpoints"
    return out, root / checkpoints.checkpoint_name(64), root / checkpoints.checkpoint_name(128)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _nan_weights(path: Path) -> None:
    tensors = load_file(str(path))
    name = next(k for k in tensors if k.startswith("policy.") and tensors[k].is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(path))


DAMAGE = {
    "truncated weights": (lambda step: _truncate(step / "agent.safetensors"), "agent.safetensors cannot be read"),
    "garbage optimizer file": (lambda step: (step / "optimizers.pt").write_bytes(b"garbage " * 50),
                               "optimizers.pt cannot be read"),
    "broken state.json": (lambda step: (step / "state.json").write_text('{"num_timesteps": 12'),
                          "state.json cannot be read as JSON"),
    "state.json without a step count": (lambda step: (step / "state.json").write_text('{"config": {}}'),
                                        "'num_timesteps' is null"),
    "NaN weights": (lambda step: _nan_weights(step / "agent.safetensors"), "contains NaN in"),
    "missing residual": (lambda step: (step / "residual.safetensors").unlink(), "residual.safetensors is missing"),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_resume_skips_a_damaged_latest_checkpoint_for_the_intact_one_before(finetuned, tmp_path, damage):
    config, run = finetuned
    out, intact, damaged = _copy(run, tmp_path)
    spoil, reason = DAMAGE[damage]
    spoil(damaged)
    # a budget the intact checkpoint has reached: its residual becomes the result, nothing trains
    result = _cli("finetune", str(config), "--out", str(out), "--resume", "--steps", "64")
    assert result.exit_code == 0, result.output + repr(result.exception)
    [warning] = result.stderr.strip().splitlines()
    assert warning.startswith(f"warning: {damaged}") and reason in warning and f"resuming from {intact}" in warning
    assert f"{intact} already reached 64 of 64 steps" in result.stdout
    assert (out / "residual.safetensors").read_bytes() == (intact / "residual.safetensors").read_bytes()


@pytest.mark.parametrize("pointer", ["../../elsewhere", "/tmp/step_000000128", "step_000000999", "step_1/../../x"])
def test_resume_never_follows_latest_out_of_the_run_nor_to_a_missing_step(finetuned, tmp_path, pointer):
    config, run = finetuned
    out, _, newest = _copy(run, tmp_path)
    (out / "checkpoints" / "latest").write_text(pointer)
    result = _cli("finetune", str(config), "--out", str(out), "--resume", "--steps", "64")
    assert result.exit_code == 0, result.output + repr(result.exception)
    [warning] = result.stderr.strip().splitlines()
    assert f"{out / 'checkpoints' / 'latest'}" in warning and f"resuming from {newest}" in warning
    expected = "names step_000000999, which is missing" if pointer == "step_000000999" else repr(pointer)
    assert expected in warning
    assert f"{newest} already reached 128 of 64 steps" in result.stdout


def test_resume_trains_on_from_the_intact_checkpoint(finetuned, tmp_path):
    config, run = finetuned
    out, intact, damaged = _copy(run, tmp_path)
    _truncate(damaged / "agent.safetensors")
    (out / MANIFEST).unlink()  # a run folder from before the manifest is still its own
    result = _cli("finetune", str(config), "--out", str(out), "--resume", "--steps", "128")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert f"resumed from {intact} at step 64" in result.stdout.replace("\n", "")
    state = checkpoints.read_state(checkpoints.latest_checkpoint(out / "checkpoints"))
    assert state["num_timesteps"] == 128
    weights = checkpoints.read_tensors(damaged / "agent.safetensors")  # rewritten, intact and finite
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert read_manifest(out)["command"] == "finetune"


def test_resume_with_no_intact_checkpoint_is_one_clear_error(finetuned, tmp_path):
    config, run = finetuned
    out, older, newest = _copy(run, tmp_path)
    _nan_weights(newest / "agent.safetensors")
    (older / "optimizers.pt").write_bytes(b"not a torch file")
    before = _snapshot(out)
    message = _one_line_error(_cli("finetune", str(config), "--out", str(out), "--resume"))
    assert message.startswith(f"--resume: no intact checkpoint in {out / 'checkpoints'}")
    assert f"{newest / 'agent.safetensors'}: policy." in message and "NaN" in message
    assert f"{older / 'optimizers.pt'} cannot be read" in message
    assert _snapshot(out) == before


# -- item 10: one evaluation per output folder at a time ---------------------------------------
_HOLDER = """
import sys
from vla_envs.files import lock_output_folder
with lock_output_folder(sys.argv[1], "eval"):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_a_second_eval_on_a_folder_another_process_holds_exits_2(eval_run, tmp_path):
    config_path, _ = eval_run
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        message = _one_line_error(_cli("eval", str(config_path), "--out", str(out)))
        assert message.startswith(f"{out} is in use: vla-envs eval pid {holder.pid} holds {out / LOCK}")
        assert sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing written
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    with lock_output_folder(out, "eval"):  # released when its holder ended
        pass


def test_the_lock_refuses_a_second_holder_in_the_same_process_too(tmp_path):
    with lock_output_folder(tmp_path / "out", "finetune"):
        with pytest.raises(ValueError, match=r"is in use: vla-envs finetune pid \d+ holds"):
            with lock_output_folder(tmp_path / "out", "eval"):
                pass
    with lock_output_folder(tmp_path / "out", "eval"):
        pass
    assert not (tmp_path / "out").exists()  # a folder the holders created and wrote nothing into goes too
