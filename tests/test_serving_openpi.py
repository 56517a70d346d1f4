"""openpi's websocket policy protocol both ways: the real ``openpi-client`` against this suite's
``OpenPIServer``, and ``OpenPIPolicy`` against a server written the way openpi writes its own
(``openpi_client.msgpack_numpy`` over ``websockets``), then a served TinyVLA evaluated end to end."""

import asyncio
import copy
import logging
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from policies.serving.openpi_client import OpenPIError, OpenPIPolicy
from policies.serving.openpi_server import OpenPIServer


@pytest.fixture(scope="module")
def tinyvla():
    from policies.tinyvla import load_reference

    return load_reference()


@pytest.fixture(scope="module")
def served(tinyvla):
    server = OpenPIServer(tinyvla).start()
    yield server
    server.close()


def _obs(seed: int):
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
            "wrist_image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
            "proprio": rng.normal(size=50).astype(np.float32)}


def _expected(tinyvla, instruction: str, seed: int) -> np.ndarray:
    local = copy.deepcopy(tinyvla)
    local.reset(instruction)
    return local.act(_obs(seed)).astype(np.float32)


def test_openpi_client_talks_to_our_server(tinyvla, served):
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    client = WebsocketClientPolicy(host=served.host, port=served.port)
    metadata = client.get_server_metadata()
    assert metadata["action_dim"] == 7 and metadata["chunk_size"] == tinyvla.chunk_size
    for instruction in ("lift the red cube", "open the door"):
        for seed in range(3):
            reply = client.infer({**_obs(seed), "prompt": instruction})
            assert reply["actions"].tobytes() == _expected(tinyvla, instruction, seed).tobytes()
            assert reply["server_timing"]["infer_ms"] > 0
    client._ws.close()


def test_concurrent_openpi_clients_get_their_own_answers(tinyvla, served):
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    instructions = ("lift the red cube", "stack the red cube on the green cube", "open the door",
                    "pick up the can and place it in the bin")
    expected = {(i, s): _expected(tinyvla, i, s).tobytes() for i in instructions for s in range(3)}
    mismatches, errors = [], []

    def client(index: int) -> None:
        try:
            policy = WebsocketClientPolicy(host=served.host, port=served.port)
            for request in range(20):
                instruction, seed = instructions[(index + request) % 4], (index + request) % 3
                actions = policy.infer({**_obs(seed), "prompt": instruction})["actions"]
                if actions.tobytes() != expected[(instruction, seed)]:
                    mismatches.append((index, request))
            policy._ws.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == [] and mismatches == []


def test_a_bad_observation_gets_openpis_error_frame_and_the_server_keeps_serving(tinyvla, served, caplog):
    """The client gets one line naming the problem (no traceback, no server file paths); the
    server's log gets the traceback."""
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    caplog.set_level(logging.ERROR, logger="policies.serving.openpi_server")
    client = WebsocketClientPolicy(host=served.host, port=served.port)
    bad = _obs(0)
    bad["proprio"] = np.zeros(3, np.float32)
    with pytest.raises(RuntimeError, match=r"Error in inference server:\nValueError: .*obs\['proprio'\] has shape \(3,\), "
                                           r"expected \(50,\)") as error:
        client.infer({**bad, "prompt": "lift"})
    frame = str(error.value).split("\n", 1)[1]
    assert "\n" not in frame and "Traceback" not in frame and ".py" not in frame
    logged = [r for r in caplog.records if r.name == "policies.serving.openpi_server"]
    assert "obs['proprio'] has shape (3,)" in logged[-1].getMessage()
    assert logged[-1].exc_info is not None and "openpi_server.py" in caplog.text  # the traceback, in the log
    again = WebsocketClientPolicy(host=served.host, port=served.port)
    assert again.infer({**_obs(1), "prompt": "lift the red cube"})["actions"].shape == (tinyvla.chunk_size, 7)
    again._ws.close()


def test_traceback_to_client_answers_openpis_traceback(tinyvla):
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    server = OpenPIServer(tinyvla, traceback_to_client=True).start()
    try:
        client = WebsocketClientPolicy(host=server.host, port=server.port)
        bad = {**_obs(0), "proprio": np.zeros(3, np.float32), "prompt": "lift"}
        with pytest.raises(RuntimeError, match=r"(?s)Error in inference server:\nTraceback .*openpi_server.py.*"
                                               r"obs\['proprio'\] has shape \(3,\), expected \(50,\)"):
            client.infer(bad)
    finally:
        server.close()
    with pytest.raises(ValueError, match=r"traceback_to_client='yes': expected True or False"):
        OpenPIServer(tinyvla, traceback_to_client="yes")


def test_healthz_answers_without_a_handshake(served):
    import http.client

    connection = http.client.HTTPConnection(served.host, served.port, timeout=10)
    connection.request("GET", "/healthz")
    response = connection.getresponse()
    assert response.status == 200 and response.read() == b"OK\n"


def _openpi_style_server(policy, port_holder: list, stop: threading.Event, received: list | None = None,
                         replies: list | None = None):
    """A server written as openpi's own ``WebsocketPolicyServer`` is: the openpi client package's
    msgpack_numpy packer, websockets' asyncio server, ``{"actions": ...}`` replies, empty metadata.
    ``received`` / ``replies``, when given, keep every observation map (prompt included) and answer."""
    from openpi_client import msgpack_numpy
    from websockets.asyncio.server import serve

    async def handler(websocket):
        packer = msgpack_numpy.Packer()
        await websocket.send(packer.pack({}))
        async for message in websocket:
            obs = msgpack_numpy.unpackb(message)
            if received is not None:
                received.append(dict(obs))
            policy.reset(obs.pop("prompt"))
            actions = policy.act(obs)
            if replies is not None:
                replies.append(actions)
            await websocket.send(packer.pack({"actions": actions}))

    async def main():
        async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
            port_holder.append(server.sockets[0].getsockname()[1])
            while not stop.is_set():
                await asyncio.sleep(0.05)

    asyncio.run(main())


def test_our_client_talks_to_an_openpi_style_server(tinyvla):
    ports, stop = [], threading.Event()
    thread = threading.Thread(target=_openpi_style_server, args=(copy.deepcopy(tinyvla), ports, stop), daemon=True)
    thread.start()
    while not ports:
        thread.join(0.05)
    try:
        with pytest.raises(ValueError, match="chunk_size: the server at .* does not say it in its metadata"):
            OpenPIPolicy(f"ws://127.0.0.1:{ports[0]}", action_dim=7)
        policy = OpenPIPolicy(f"ws://127.0.0.1:{ports[0]}", action_dim=7, chunk_size=tinyvla.chunk_size)
        policy.reset("lift the red cube")
        got = policy.act(_obs(2))
        assert got.dtype == np.float32 and got.tobytes() == _expected(tinyvla, "lift the red cube", 2).tobytes()
        policy.close()
    finally:
        stop.set()


def test_our_client_maps_keys_and_reports_server_errors(tinyvla):
    server = OpenPIServer(tinyvla, obs_keys={"observation/image": "image", "observation/wrist_image": "wrist_image",
                                             "observation/state": "proprio"}).start()
    try:
        keys = {"image": "observation/image", "wrist_image": "observation/wrist_image", "proprio": "observation/state"}
        policy = OpenPIPolicy(server.url, keys=keys)
        assert (policy.action_dim, policy.chunk_size) == (7, tinyvla.chunk_size)
        policy.reset("open the door")
        assert policy.act(_obs(0)).tobytes() == _expected(tinyvla, "open the door", 0).tobytes()
        misnamed = OpenPIPolicy(server.url, keys={**keys, "proprio": "observation/joints"})
        with pytest.raises(OpenPIError, match=r"failed:\n\w+Error: .*TinyVLA needs obs\['proprio'\]"):
            misnamed.act(_obs(0))
    finally:
        server.close()


@pytest.mark.filterwarnings("error::DeprecationWarning")
def test_our_client_uses_websockets_current_api_and_reconnects_at_reset(tinyvla, served):
    # websockets 17.1 deprecates holding connect()'s connection outside a `with` block
    policy = OpenPIPolicy(served.url)
    policy.reset("lift the red cube")
    first = policy._ws
    assert policy.act(_obs(1)).tobytes() == _expected(tinyvla, "lift the red cube", 1).tobytes()
    first.close()  # as the server does after its idle timeout
    policy.reset("open the door")
    assert policy._ws is not first
    assert policy.act(_obs(2)).tobytes() == _expected(tinyvla, "open the door", 2).tobytes()
    policy.close()
    with pytest.raises(OpenPIError, match="closed the connection"):
        policy.act(_obs(2))


SERVED_EVAL = """\
name: served tinyvla
tasks: [Lift]
seeds: [0, 1]
env: {obs_mode: rgb, image_size: 64, max_episode_steps: 30}
base:
  name: local
  policy: {factory: "policies.tinyvla:load_reference"}
variants:
  - {name: served, policy: {kind: openpi, url: "ws://127.0.0.1:PORT"}}
execution: {schedule: open_loop, execute_steps: 4}
profile: {enabled: false}
stats: {bootstrap_resamples: 200}
"""


def test_a_served_tinyvla_is_evaluated_end_to_end_and_matches_the_local_one(tmp_path):
    """`python -m policies.remote serve --protocol openpi` in its own process; `vla-envs eval`
    with `policy: {kind: openpi}`: every episode equals the in-process model's, and its teacher-
    forced distance from the local model is 0."""
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from cli.app import app

    proc = subprocess.Popen(
        [sys.executable, "-m", "policies.remote", "serve", "--protocol", "openpi", "--policy",
         "policies.tinyvla:load_reference", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "MUJOCO_GL": "egl"},
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving TinyVLAPolicy at ws://127.0.0.1:"), line + proc.stderr.read()
        port = line.rsplit(":", 1)[1].strip()
        config = tmp_path / "served.yaml"
        config.write_text(SERVED_EVAL.replace("PORT", port))
        result = CliRunner().invoke(app, ["eval", str(config), "--out", str(tmp_path / "run")])
        assert result.exit_code == 0, result.output
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    rows = pq.read_table(tmp_path / "run" / "episodes.parquet").to_pylist()
    by = {(r["variant"], r["seed"]): r for r in rows}
    for seed in (0, 1):
        local, served = by[("local", seed)], by[("served", seed)]
        for key in ("success", "n_steps", "jerk_ms", "energy_j", "action_rate", "inference_calls"):
            assert local[key] == served[key], key
        forced = {t["variant"]: t for t in local["teacher_forced"]}
        assert forced["served"]["action_distance"] == 0.0 and forced["served"]["queries"] == local["inference_calls"]
