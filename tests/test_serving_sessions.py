"""Policy servers with many clients: every answer is the single-client answer for that client's
own observation and instruction; malformed requests get a 4xx and the server keeps answering."""

import http.client
import socket
import threading

import numpy as np
import pytest

from policies.serving.http_client import RemoteError, RemotePolicy
from policies.serving.http_server import PolicyServer
from policies.serving.sessions import SessionError, SessionPool, TooManySessions
from policies.serving.wire import pack

INSTRUCTIONS = ("lift the red cube", "stack the red cube on the green cube",
                "pick up the can and place it in the bin", "open the door")


@pytest.fixture(scope="module")
def tinyvla():
    from policies.tinyvla import load_reference

    return load_reference()


def _obs(seed: int, size: int = 64, proprio: int = 50):
    """An observation of TinyVLA's shapes (64 px images, 50 proprio values)."""
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "wrist_image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "proprio": rng.normal(size=proprio).astype(np.float32)}


@pytest.fixture(scope="module")
def served(tinyvla):
    server = PolicyServer(tinyvla, max_sessions=32).start()
    yield server
    server.close()


def test_concurrent_clients_each_get_their_own_answers(tinyvla, served):
    """20 clients x 20 (reset with their own instruction, act) across 4 instructions, all at
    once: each answer equals the in-process answer for that observation and instruction."""
    import copy

    reference = copy.deepcopy(tinyvla)
    assert (tinyvla.model.config.image_size, tinyvla.model.config.proprio_dim) == (64, 50)
    expected = {}
    for instruction in INSTRUCTIONS:
        reference.reset(instruction)
        for seed in range(5):
            obs = _obs(seed)
            expected[(instruction, seed)] = (obs, reference.act(obs))
    mismatches, errors, answers = [], [], [0]
    start = threading.Barrier(20)

    def client(index: int) -> None:
        try:
            remote = RemotePolicy(served.url)
            start.wait()
            for request in range(20):
                instruction = INSTRUCTIONS[(index + request) % 4]
                seed = (index * 7 + request) % 5
                remote.reset(instruction)
                obs, want = expected[(instruction, seed)]
                got = remote.act(obs)
                answers[0] += 1
                if got.tobytes() != want.astype(np.float32).tobytes():
                    mismatches.append((index, request, instruction))
            remote.close()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == [] and answers[0] == 400
    assert mismatches == []
    assert len(served.sessions) == 0  # every client closed its session


def _raw(served, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection((served.host, served.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                if len(body) >= length:
                    return int(head.split()[1]), body[:length]
    raise AssertionError(f"no complete answer to {request[:60]!r}")


@pytest.mark.parametrize("length, status, message", [
    ("abc", 400, b"expected one non-negative integer"),
    ("-1", 400, b"expected one non-negative integer"),
    (str(10**12), 413, b"expected at most"),
    ("1e3", 400, b"expected one non-negative integer"),
])
def test_malformed_content_length_gets_a_4xx_and_the_server_keeps_answering(served, length, status, message):
    got_status, body = _raw(served, f"POST /act HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
    assert got_status == status and message in body
    remote = RemotePolicy(served.url)
    remote.reset("lift the red cube")
    assert remote.act(_obs(0)).shape == (remote.chunk_size, remote.action_dim)
    remote.close()


def test_missing_or_chunked_length_and_huge_bodies_are_refused_unread(tinyvla):
    server = PolicyServer(tinyvla, max_body_bytes=1000).start()
    try:
        status, body = _raw(server, b"POST /act HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 411 and b"Content-Length header is required" in body
        status, body = _raw(server, b"POST /act HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert status == 411
        status, body = _raw(server, b"POST /act HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n12345")
        assert status == 400
        connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
        connection.request("POST", "/reset", body=b"x" * 5000)  # 200 MB would be refused the same way, unread
        response = connection.getresponse()
        assert response.status == 413 and b"a body of 5000 bytes: expected at most 1000" in response.read()
        connection.close()
        remote = RemotePolicy(server.url)
        remote.reset("open the door")  # still serving
        with pytest.raises(RemoteError, match="413"):
            remote.act(_obs(0))  # two 64 px images are over 1000 bytes
        remote.close()
    finally:
        server.close()


def test_bad_fields_are_named(served):
    connection = http.client.HTTPConnection(served.host, served.port, timeout=10)
    for body, message in ((pack({"instruction": 3}), b"field 'instruction' = 3: expected a str"),
                          (pack([1, 2]), b"a list, expected a map"),
                          (pack({"session": 7, "observation": {}}), b"field 'session' = 7: expected a str")):
        path = "/reset" if b"instruction" in body else "/act"
        connection.request("POST", path, body=body)
        response = connection.getresponse()
        assert response.status == 400 and message in response.read(), message
    connection.close()




def test_session_pool_bounds_expiry_and_reuse():
    from policies import Policy

    class Counter(Policy):
        action_dim, chunk_size = 1, 1
        forks = 0

        def fork(self):
            Counter.forks += 1
            return Counter()

        def act(self, obs):
            return np.array([[len(self.instruction)]], np.float32)

    now = [0.0]
    pool = SessionPool(Counter(), max_sessions=2, idle_timeout_s=10.0, clock=lambda: now[0])
    a = pool.open("a")
    b = pool.open("bb")
    assert a.policy is not b.policy and a.policy.act(None)[0, 0] == 1 and b.policy.act(None)[0, 0] == 2
    with pytest.raises(TooManySessions, match="all 2 sessions are in use"):
        pool.open("c")
    now[0] = 5.0
    assert pool.get(a.id) is a  # a used at 5 s, b last at 0 s
    now[0] = 12.0
    c = pool.open("ccc")  # b expired (idle 12 s): its fork is reused, no new fork
    assert Counter.forks == 2 and c.policy is b.policy and c.policy.instruction == "ccc"
    with pytest.raises(SessionError, match="unknown or expired"):
        pool.get(b.id)
    assert pool.open("again", session_id=a.id) is a and a.policy.instruction == "again"
    pool.close(a.id)
    assert len(pool) == 1
    kept = pool.open("held", expires=False)
    now[0] = 1000.0
    assert pool.get(kept.id) is kept  # a connection-held session does not expire
