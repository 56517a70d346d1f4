"""A real policy server process on loopback: exact round trips, bad requests, keeps serving."""

import http.client
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from policies.remote import RemoteError, RemotePolicy, pack

POLICY_MODULE = textwrap.dedent('''
    import numpy as np
    import torch
    from policies import Policy

    class TinyPolicy(Policy):
        action_dim = 7
        chunk_size = 8
        observation_shapes = {"state": (60,), "image": (32, 32, 3)}

        def __init__(self):
            torch.manual_seed(0)
            self.model = torch.nn.Linear(60 + 32 * 32 * 3, 56)
            self.instruction = ""

        def act(self, obs):
            x = np.concatenate([obs["state"].astype(np.float32), obs["image"].reshape(-1) / 255.0])
            x = x + len(self.instruction)  # the instruction matters
            with torch.no_grad():
                return self.model(torch.as_tensor(x, dtype=torch.float32)).reshape(8, 7).numpy()

    def make():
        return TinyPolicy()
''')


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("policy_module")
    (folder / "tiny_policy.py").write_text(POLICY_MODULE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), *sys.path])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "policies.remote", "serve", "--policy", "tiny_policy:make", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    line = proc.stdout.readline()
    assert line.startswith("serving TinyPolicy at http://127.0.0.1:"), line + proc.stderr.read()
    url = line.split(" at ")[1].strip()
    sys.path.insert(0, str(folder))
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    sys.path.remove(str(folder))


def _obs(seed):
    rng = np.random.default_rng(seed)
    return {"state": rng.normal(size=60).astype(np.float32), "image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)}


def test_remote_output_equals_local_exactly(server):
    from tiny_policy import make

    local, remote = make(), RemotePolicy(server)
    assert (remote.action_dim, remote.chunk_size, remote.remote_policy) == (7, 8, "TinyPolicy")
    for instruction in ("lift the cube", "stack"):
        local.reset(instruction)
        remote.reset(instruction)
        for seed in range(3):
            expected = local.act(_obs(seed))
            got = remote.act(_obs(seed))
            assert got.dtype == np.float32 and got.shape == (8, 7)
            assert got.tobytes() == expected.tobytes()
    remote.close()


def test_bad_requests_get_errors_and_the_server_keeps_serving(server):
    remote = RemotePolicy(server)
    bad = _obs(0)
    bad["state"] = np.zeros(59, np.float32)
    with pytest.raises(RemoteError, match=r"400: observation\['state'\] has shape \(59,\), expected \(60,\)"):
        remote.act(bad)
    with pytest.raises(RemoteError, match="missing 'image'"):
        remote.act({"state": np.zeros(60, np.float32)})
    host, port = server.removeprefix("http://").split(":")
    raw = http.client.HTTPConnection(host, int(port), timeout=10)
    raw.request("POST", "/act", body=b"\xc1\xc1 not msgpack", headers={"Content-Type": "application/msgpack"})
    response = raw.getresponse()
    assert response.status == 400 and b"not valid msgpack" in response.read()
    raw.request("POST", "/act", body=pack({"session": "feedbeef", "observation": _obs(0)}))
    response = raw.getresponse()
    assert response.status == 404 and b"session 'feedbeef' is unknown or expired" in response.read()
    raw.request("POST", "/teleport", body=pack({}))
    response = raw.getresponse()
    assert response.status == 404
    response.read()
    raw.close()
    assert remote.act(_obs(1)).shape == (8, 7)  # still serving
    remote.close()


def test_server_binds_loopback_by_default():
    from policies.remote import PolicyServer

    from policies import Policy

    class Zero(Policy):
        action_dim, chunk_size = 2, 1

        def act(self, obs):
            return np.zeros((1, 2), np.float32)

    server = PolicyServer(Zero()).start()
    try:
        assert server.host == "127.0.0.1"
        assert RemotePolicy(server.url).act({"x": np.ones(3)}).shape == (1, 2)
    finally:
        server.close()
