"""Any LeRobot policy behind this suite's ``Policy`` interface, to serve from LeRobot's environment.

LeRobot (Python >= 3.12, numpy >= 2, its own torch) cannot share an environment with robosuite,
so a LeRobot policy runs in LeRobot's environment behind a server and the suite talks to it
(docs/integrations.md has the two-environment setup)::

    .venv-lerobot/bin/python -m policies.serving.lerobot_policy serve --path PRETRAINED_DIR --port 8000

serves it over openpi's websocket protocol (``OpenPIServer``; ``--protocol http`` for this
suite's), and an evaluation config reaches it with ``policy: {kind: openpi, url:
ws://127.0.0.1:8000}``. ``PRETRAINED_DIR`` is what ``save_pretrained`` wrote (``config.json``,
``model.safetensors``) with the policy's pre- and post-processors (``policy_preprocessor.json``,
``policy_postprocessor.json`` and their state files): ACT, Diffusion, SmolVLA, pi0, ... Nothing
is downloaded: a pretrained backbone must already be in the folder or the local cache.

Each query: this suite's observation entries become LeRobot features (``keys``; by default
``image`` -> ``observation.images.image``, ``wrist_image`` -> ``observation.images.wrist_image``,
``proprio`` -> ``observation.state``; entries already named as the policy's features, as a client
with the ``lerobot_libero`` convention sends them, are taken as they are; entries the policy does
not declare are dropped), images
go from uint8 H x W x 3 to float C x H x W in [0, 1] (LeRobot's convention), the instruction is
the ``task``; then the preprocessor (normalisation, tokenisation, device), the policy's
``predict_action_chunk`` and the postprocessor (unnormalisation) give an (H, action_dim) chunk.
"""

from __future__ import annotations

import argparse

import numpy as np

from policies.base import Policy

DEFAULT_KEYS = {"image": "observation.images.image", "wrist_image": "observation.images.wrist_image",
                "proprio": "observation.state"}


class LeRobotPolicy(Policy):
    """A LeRobot ``PreTrainedPolicy`` with its processors, from a ``save_pretrained`` folder."""

    def __init__(self, path: str, device: str = "cpu", keys: dict[str, str] | None = None):
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.configs.types import FeatureType
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        config = PreTrainedConfig.from_pretrained(path)
        config.device = device
        self.path = path
        self.model = get_policy_class(config.type).from_pretrained(path, config=config).eval()
        self.preprocessor, self.postprocessor = make_pre_post_processors(
            self.model.config, pretrained_path=path,
            preprocessor_overrides={"device_processor": {"device": device}},
        )
        features = self.model.config.input_features
        self.features = frozenset(features)
        self.keys = {ours: theirs for ours, theirs in (keys or DEFAULT_KEYS).items() if theirs in features}
        self.visual = {name for name, feature in features.items() if feature.type is FeatureType.VISUAL}
        action = self.model.config.output_features["action"]
        self.action_dim = int(action.shape[0])
        # how many actions one query plans (ACT, SmolVLA, pi0: chunk_size; Diffusion: horizon)
        self.chunk_size = int(next(getattr(self.model.config, name) for name in ("chunk_size", "horizon", "n_action_steps")
                                   if getattr(self.model.config, name, None)))
        self.policy_type = config.type

    def torch_module(self):
        return self.model

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        self.model.reset()

    def act(self, obs) -> np.ndarray:
        import torch

        batch = lerobot_inputs(obs, self.keys, self.features, self.visual)
        batch["task"] = self.instruction
        with torch.inference_mode():
            chunk = self.model.predict_action_chunk(self.preprocessor(batch))
            chunk = self.postprocessor(chunk)
        return chunk[0].detach().cpu().numpy().astype(np.float32)


def lerobot_inputs(obs: dict, keys: dict[str, str], features: frozenset[str], visual: set[str]) -> dict:
    """The policy's input features from this suite's observation entries: renamed by ``keys``
    (entries already named as a feature, as a client with the ``lerobot_libero`` convention sends
    them, are taken as they are), images from uint8 H x W x C to float C x H x W in [0, 1] as
    LeRobot's ``preprocess_observation`` makes them, everything float32."""
    import torch

    batch = {}
    named = {key: key for key in obs if key in features}
    renamed = {ours: theirs for ours, theirs in keys.items() if theirs not in named}
    for ours, theirs in {**renamed, **named}.items():
        if ours not in obs:
            raise KeyError(f"the LeRobot policy reads {theirs!r} from obs[{ours!r}], which is missing; got {sorted(obs)}")
        value = torch.from_numpy(np.array(obs[ours]))
        if theirs in visual:  # uint8 H x W x C -> float C x H x W in [0, 1]
            value = value.permute(2, 0, 1).float() / 255.0
        batch[theirs] = value.float()
    return batch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a LeRobot policy (run this in LeRobot's environment).")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--path", required=True, help="a save_pretrained folder with the policy's processors")
    serve.add_argument("--device", default="cpu")
    serve.add_argument("--protocol", choices=("openpi", "http"), default="openpi")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    serve.add_argument("--max-sessions", type=int, default=64)
    serve.add_argument("--traceback-to-client", action="store_true",
                       help="openpi: answer a failed request with the server's traceback, as openpi does (default: "
                            "one line; the traceback goes to the server's log either way)")
    args = parser.parse_args(argv)
    from policies.serving.launch import serve

    policy = LeRobotPolicy(args.path, args.device)
    serve(policy, args.protocol, args.host, args.port, name=f"{policy.policy_type} ({type(policy).__name__})",
          max_sessions=args.max_sessions, metadata={"lerobot_policy": policy.policy_type},
          traceback_to_client=args.traceback_to_client)


if __name__ == "__main__":
    main()
