"""Policy servers against hostile and careless clients: a few bytes cannot make them allocate
much, errors never echo what was sent, slow or silent clients are cut off, and what clients can
hold (connections, bodies being received, sessions) is bounded. Real servers on loopback, real
clients (raw sockets, http.client, websockets, openpi-client)."""

import gc
import http.client
import logging
import socket
import struct
import threading
import time
import tracemalloc

import msgpack
import numpy as np
import pytest

from policies import Policy
from policies.serving import wire
from policies.serving.http_client import RemotePolicy
from policies.serving.http_server import PolicyServer
from policies.serving.openpi_client import OpenPIPolicy
from policies.serving.openpi_server import MAX_TRACEBACK_CHARS, OpenPIServer

TIMEOUT_S = 0.5  # the servers' read / idle timeout in these tests
SMALL_REPLY = 1000  # bytes: every error reply here is a sentence


class Echo(Policy):
    """Answers the length of its instruction; ``obs["boom"]`` makes it fail with a long message
    (a policy error that quotes its input), ``obs["gate"]`` makes it wait for ``GATE``."""

    action_dim, chunk_size = 2, 1
    entered, gate = threading.Event(), threading.Event()

    def act(self, obs):
        if "boom" in obs:
            raise ValueError("bad input " + "x" * 100_000)
        if "gate" in obs:
            Echo.entered.set()
            Echo.gate.wait(10)
        return np.full((1, 2), len(self.instruction), np.float32)


def _wait(predicate, what: str, limit_s: float = 10.0) -> None:
    end = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"still waiting for {what} after {limit_s} s")
        time.sleep(0.01)


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of one HTTP answer read from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before an answer ({data[:80]!r})"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(head.split()[1]), body[:length]


def _closed_by_server(sock: socket.socket) -> bool:
    """True when the server closed ``sock`` (after any answer it sent)."""
    sock.settimeout(10)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


@pytest.fixture
def server():
    served = PolicyServer(Echo(), read_timeout_s=TIMEOUT_S, max_body_bytes=2**20, max_connections=16).start()
    yield served
    served.close()


def _npgeneric(data, dtype, keys=bytes):
    return {keys(b"__npgeneric__"): True, keys(b"data"): data, keys(b"dtype"): dtype}


def _ndarray(data, dtype, shape):
    return {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}


# name -> a message that used to allocate far more than its size, or build a value of a dtype the
# protocol does not carry
HOSTILE = {
    "the issue's 52-byte void scalar": {"instruction": _npgeneric(200_000_000, "|V1")},
    "a void scalar of 2**31-1 bytes": {"instruction": _npgeneric(2**31 - 1, "|V1")},
    "the same with str keys": {"instruction": _npgeneric(2**31 - 1, "|V1", keys=bytes.decode)},
    "a bytes scalar from an int": {"instruction": _npgeneric(2**31 - 1, "|S1")},
    "a unicode scalar from an int": {"instruction": _npgeneric(2**31 - 1, "<U1")},
    "a float scalar from bytes": {"x": _npgeneric(b"1" * 1000, "<f8")},
    "a uint8 scalar of 300": {"x": _npgeneric(300, "|u1")},
    "an object scalar": {"x": _npgeneric(1, "|O")},
    "a dtype that is a list (structured)": {"x": _ndarray(b"\0" * 8, [["a", "<f8"]], [1])},
    "a subarray dtype": {"x": _ndarray(b"", "(1000000000,)f8", [0])},
    "a dtype string of 1000 characters": {"x": _ndarray(b"", "<" + "f" * 999, [0])},
    "an array far bigger than its data": {"x": _ndarray(b"", "<f8", [2**31 - 1, 2**31 - 1])},
    "a shape whose int64 product wraps to 0": {"x": _ndarray(b"", "<f4", [2**32, 2**32])},
    "a negative shape": {"x": _ndarray(b"\0" * 4, "<f4", [-1])},
    "65 dimensions": {"x": _ndarray(b"\0" * 4, "<f4", [1] * 65)},
    "a shape of floats": {"x": _ndarray(b"\0" * 4, "<f4", [1.0])},
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_numpy_maps_are_refused_before_allocating(name):
    payload = msgpack.packb(HOSTILE[name], use_bin_type=True)
    tracemalloc.start()
    try:
        with pytest.raises(wire.WireError) as refused:
            wire.unpack(payload)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, f"{name}: {peak} bytes allocated to refuse a {len(payload)}-byte message"
    assert len(str(refused.value)) <= wire.MAX_ERROR_CHARS and "1111" not in str(refused.value)


def test_a_message_of_millions_of_empty_maps_is_refused_within_its_item_budget():
    """An empty map is 1 byte on the wire and ~70 in Python: 3 MB of them were 216 MB."""
    payload = msgpack.packb([[{}] * 1_000_000] * 3)
    tracemalloc.start()
    try:
        with pytest.raises(wire.WireError, match="maps, lists and entries"):
            wire.unpack(payload)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < wire.MAX_ITEMS * 100
    with pytest.raises(wire.WireError, match="exceeds max_array_len"):  # refused from its header alone
        wire.unpack(b"\xdd" + struct.pack(">I", 2**32 - 1) + b"\x80" * 16)


def test_what_clients_legitimately_send_still_round_trips():
    from openpi_client import msgpack_numpy

    message = {"image": np.arange(12, dtype=np.uint8).reshape(2, 2, 3), "state": np.linspace(0, 1, 5),
               "mask": np.array([True, False]), "half": np.float16(1.5), "count": np.int64(-3), "big": np.uint64(2**63),
               "flag": np.bool_(True), "names": np.array(["lift", "door"]), "empty": np.zeros((0, 3), np.float32),
               "prompt": np.str_("lift the red cube")}
    for payload in (wire.pack(message), msgpack_numpy.packb(message)):
        got = wire.unpack(payload)
        for key, value in message.items():
            assert np.asarray(got[key]).dtype == np.asarray(value).dtype, key
            assert np.array_equal(got[key], value), key


def _post(served, path: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(served.host, served.port, timeout=10)
    try:
        connection.request("POST", path, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_the_void_probe_gets_a_small_400_and_the_server_keeps_serving(server):
    probe = msgpack.packb(HOSTILE["the issue's 52-byte void scalar"], use_bin_type=True)
    assert len(probe) == 52
    status, body = _post(server, "/reset", probe)
    assert status == 400 and len(body) < SMALL_REPLY and b"dtype '|V1'" in body
    assert len(server.sessions) == 0
    remote = RemotePolicy(server.url)
    remote.reset("open")
    assert remote.act({}).tolist() == [[4.0, 4.0]]
    remote.close()


@pytest.mark.parametrize("path, body, message", [
    ("/reset", wire.pack({"instruction": [0] * 100_000}), b"field 'instruction' = a list of 100000 items: expected a str"),
    ("/reset", wire.pack({"instruction": np.zeros(10**6, np.uint8)}), b"= an array of shape (1000000,) and dtype uint8"),
    ("/act", wire.pack({"session": "x" * 10**6, "observation": {}}), b"session a str of 1000000 characters is unknown"),
    ("/" + "p" * 60_000, wire.pack({}), b"unknown path '/ppppp"),
])
def test_error_answers_name_the_field_and_kind_never_the_data(server, path, body, message):
    status, reply = _post(server, path, body)
    assert status in (400, 404) and message in reply and len(reply) < SMALL_REPLY


def test_a_bad_content_length_is_not_echoed(server):
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"POST /act HTTP/1.1\r\nContent-Length: " + b"9" * 30 + b"x" * 60_000 + b"\r\n\r\n")
        status, body = _answer(sock)
    assert status == 400 and b"expected one non-negative integer" in body and len(body) < SMALL_REPLY


@pytest.mark.parametrize("request_line", [b"GARBAGE" + b"x" * 60_000, b"PUT /" + b"p" * 60_000 + b" HTTP/1.1"])
def test_http_servers_own_refusals_are_bounded(server, request_line):
    """http.server's refusals of a malformed request line quote it: cut, as msgpack."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(request_line + b"\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert b"error" in data and len(data) < SMALL_REPLY


def test_header_only_connections_are_closed_after_the_read_timeout(server):
    """50 header-only connections were held forever; now each is closed once it has been silent
    for read_timeout_s, and its thread ends."""
    socks = [socket.create_connection((server.host, server.port), timeout=10) for _ in range(12)]
    for sock in socks:
        sock.sendall(b"POST /act HTTP/1.1\r\nHost: x\r\nContent-Le")
    assert all(_closed_by_server(sock) for sock in socks)
    _wait(lambda: server.connections == 0, "every connection closed")
    for sock in socks:
        sock.close()
    remote = RemotePolicy(server.url)
    assert remote.act({}).shape == (1, 2)
    remote.close()


def test_partial_bodies_hold_at_most_max_pending_bytes():
    """20 partial 60 MB bodies held 1.2 GB: the Content-Length of the bodies being received is
    now reserved first, and a body that does not fit is answered 503 unread (and unallocated)."""
    served = PolicyServer(Echo(), read_timeout_s=TIMEOUT_S, max_body_bytes=2**20, max_pending_bytes=2**21).start()
    try:
        head = b"POST /act HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % 2**20
        slow = [socket.create_connection((served.host, served.port), timeout=10) for _ in range(2)]
        for sock in slow:
            sock.sendall(head)
        done = threading.Event()

        def trickle():  # a byte well within each read timeout, until the third request is answered
            while not done.wait(TIMEOUT_S / 10):
                for sock in slow:
                    sock.sendall(b"\x81")

        trickler = threading.Thread(target=trickle)
        trickler.start()
        _wait(lambda: served.pending_bytes == 2**21, "two reserved bodies")
        tracemalloc.start()
        try:
            with socket.create_connection((served.host, served.port), timeout=10) as third:
                third.sendall(head)
                status, body = _answer(third)
                assert _closed_by_server(third)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert served.pending_bytes == 2**21
        done.set()
        trickler.join()
        assert status == 503 and b"does not fit among the bodies being received" in body
        assert peak < 2**19, f"{peak} bytes allocated to refuse a body of {2**20}"  # the answer's packer takes 256 kB
        for sock in slow:  # the body stopped arriving: 408, closed, reservation returned
            assert _answer(sock)[0] == 408 and _closed_by_server(sock)
            sock.close()
        _wait(lambda: served.pending_bytes == 0 and served.connections == 0, "the reservations returned")
        remote = RemotePolicy(served.url)
        assert remote.act({"state": np.zeros(2**17, np.float32)}).shape == (1, 2)  # a 512 KB body fits
        remote.close()
    finally:
        served.close()


def test_connections_beyond_max_connections_are_answered_503_and_closed():
    served = PolicyServer(Echo(), read_timeout_s=30.0, max_connections=3).start()  # held until closed here
    try:
        held = [socket.create_connection((served.host, served.port), timeout=10) for _ in range(3)]
        _wait(lambda: served.connections == 3, "3 open connections")
        with socket.create_connection((served.host, served.port), timeout=10) as extra:
            status, body = _answer(extra)
            assert status == 503 and b"every connection slot is in use" in body and _closed_by_server(extra)
        assert served.connections == 3
        for sock in held:
            sock.close()
        _wait(lambda: served.connections == 0, "the held connections closed")
        remote = RemotePolicy(served.url)
        assert remote.act({}).shape == (1, 2)
        remote.close()
    finally:
        served.close()


def test_a_dropped_remote_policy_closes_its_session(server):
    """A RemotePolicy dropped without close() held its session for idle_timeout_s (600 s)."""
    remote = RemotePolicy(server.url)
    remote.reset("lift")
    fork = remote.fork()
    fork.reset("door")
    assert len(server.sessions) == 2
    del remote
    gc.collect()
    assert len(server.sessions) == 1
    fork.close()
    assert len(server.sessions) == 0
    del fork
    gc.collect()
    again = RemotePolicy(server.url)  # used again after close(): still released when dropped
    again.reset("a")
    again.close()
    again.reset("b")
    assert len(server.sessions) == 1
    del again
    gc.collect()
    assert len(server.sessions) == 0


def test_remote_policy_reconnects_when_the_server_closed_its_idle_connection(server):
    remote = RemotePolicy(server.url)
    remote.reset("lift")
    session = remote.session
    _wait(lambda: server.connections == 0, "the idle connection closed by the server")
    assert remote.act({}).tolist() == [[4.0, 4.0]]  # same session, on a new connection
    assert remote.session == session and len(server.sessions) == 1
    remote.close()


def test_a_client_hanging_up_mid_request_is_one_log_line_and_real_bugs_keep_their_traceback(capfd, caplog):
    caplog.set_level(logging.INFO, logger="policies.serving.http_server")

    class Unpackable(Echo):
        chunk_size = {1}  # a bug of the policy's: /info cannot be encoded

    for event in (Echo.entered, Echo.gate):
        event.clear()
    served = PolicyServer(Unpackable(), read_timeout_s=5.0).start()
    try:
        status, body = _post(served, "/reset", wire.pack({"instruction": "x"}))  # RemotePolicy's /info would fail
        session = wire.unpack(body)["session"]
        sock = socket.create_connection((served.host, served.port), timeout=10)
        request = wire.pack({"session": session, "observation": {"gate": 1}})
        sock.sendall(b"POST /act HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(request) + request)
        assert Echo.entered.wait(10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset: the answer has nowhere to go
        Echo.gate.set()
        _wait(lambda: served.connections == 0, "the hung-up connection closed")
        assert "Traceback" not in capfd.readouterr().err
        assert any("hung up mid-request" in record.getMessage() for record in caplog.records)
        connection = http.client.HTTPConnection(served.host, served.port, timeout=10)
        connection.request("GET", "/info")
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            connection.getresponse()
        connection.close()
        _wait(lambda: served.connections == 0, "the failed connection closed")
        bugs = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
        assert len(bugs) == 1 and "error serving client" in bugs[0].getMessage()  # a real bug is logged in full
        assert "Traceback" not in capfd.readouterr().err
    finally:
        served.close()


def test_healthz_info_and_one_log_line_per_request_with_tracebacks_only_in_the_log(server, caplog):
    caplog.set_level(logging.DEBUG, logger="policies.serving.http_server")
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    connection.request("GET", "/healthz")  # openpi's health check path
    response = connection.getresponse()
    assert (response.status, response.read(), response.getheader("Content-Type")) == (
        200, b"OK\n", "text/plain; charset=utf-8")
    connection.request("GET", "/info")  # kept: RemotePolicy reads its sizes there
    response = connection.getresponse()
    assert response.status == 200 and wire.unpack(response.read())["protocol"] == "vla-envs-http/2"
    connection.request("GET", "/health")
    response = connection.getresponse()
    assert response.status == 404 and b"expected /healthz or /info" in response.read()
    connection.close()
    status, body = _post(server, "/reset", wire.pack({"instruction": "go"}))
    session = wire.unpack(body)["session"]
    status, body = _post(server, "/act", wire.pack({"session": session, "observation": {"boom": 1}}))
    assert status == 400 and b"ValueError: bad input xxx" in body and len(body) < SMALL_REPLY
    assert b"Traceback" not in body and b".py" not in body  # the client gets one line, never the server's code
    status, _ = _post(server, "/act", wire.pack({"session": "feedbeef", "observation": {}}))
    assert status == 404

    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert [line.split(" ", 1)[1].rsplit(" ", 2)[0] for line in lines] == [
        "GET /healthz 200", "GET /info 200", "GET /health 404", "POST /reset 200", "POST /act 400", "POST /act 404"]
    assert all(line.endswith(" ms") for line in lines)
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failed) == 1 and "POST /act -> 400: the policy failed" in failed[0].getMessage()
    assert failed[0].exc_info[0] is ValueError  # the traceback is in the log
    refused = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(refused) == 2 and "GET /health -> 404: unknown path '/health'" in refused[0]
    assert "POST /act -> 404: session 'feedbeef' is unknown or expired" in refused[1]


# -- openpi's websocket protocol -------------------------------------------------------------
@pytest.fixture
def openpi_server():
    served = OpenPIServer(Echo(), idle_timeout_s=TIMEOUT_S).start()
    yield served
    served.close()


def _websocket(served):
    from websockets.sync.client import connect

    # entered as a `with` would (websockets 17.1 deprecates a bare connect()); the tests close it
    ws = connect(served.url, compression=None, max_size=None, open_timeout=10).__enter__()
    wire.unpack(ws.recv(timeout=10))  # the metadata
    return ws


def test_the_void_prompt_gets_a_bounded_error_frame_without_the_data(openpi_server):
    """A 20 MB void prompt was echoed into an 80 MB traceback frame."""
    from websockets.exceptions import ConnectionClosedError

    ws = _websocket(openpi_server)
    ws.send(msgpack.packb({"prompt": _npgeneric(20_000_000, "|V1")}, use_bin_type=True))
    frame = ws.recv(timeout=10)
    assert isinstance(frame, str) and len(frame) <= MAX_TRACEBACK_CHARS and "dtype '|V1'" in frame
    with pytest.raises(ConnectionClosedError) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1011
    ws = _websocket(openpi_server)
    ws.send(wire.pack({"boom": 1}))  # a policy error quoting 100 kB of input: one line, cut
    frame = ws.recv(timeout=10)
    assert len(frame) <= wire.MAX_ERROR_CHARS and frame.startswith("ValueError: bad input xxx") and "\n" not in frame
    ws.close()
    openpi_style = OpenPIServer(Echo(), traceback_to_client=True).start()  # openpi's traceback: cut, its end kept
    try:
        ws = _websocket(openpi_style)
        ws.send(wire.pack({"boom": 1}))
        frame = ws.recv(timeout=10)
        assert len(frame) <= MAX_TRACEBACK_CHARS and frame.startswith("Traceback") and frame.endswith("xxx\n")
        ws.close()
    finally:
        openpi_style.close()


def test_openpi_clients_prompts_and_unicode_arrays_are_accepted(openpi_server):
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    client = WebsocketClientPolicy(host=openpi_server.host, port=openpi_server.port)
    for prompt in (np.str_("lift"), np.asarray("lift"), "lift"):
        reply = client.infer({"names": np.array(["a", "bc"]), "prompt": prompt})
        assert reply["actions"].tolist() == [[4.0, 4.0]]
    ws = _websocket(openpi_server)
    for instruction in ("a", "bb", "ccc", "dddd", "eeeee"):  # sent back to back: answered in order
        ws.send(wire.pack({"prompt": instruction}))
    assert [wire.unpack(ws.recv(timeout=10))["actions"][0, 0] for _ in range(5)] == [1, 2, 3, 4, 5]
    ws.close()
    client._ws.close()


def test_idle_openpi_connections_are_closed_and_free_their_session(openpi_server):
    from openpi_client.websocket_client_policy import WebsocketClientPolicy
    from websockets.exceptions import ConnectionClosedOK

    client = WebsocketClientPolicy(host=openpi_server.host, port=openpi_server.port)
    assert client.infer({"prompt": "lift"})["actions"].shape == (1, 2)
    with pytest.raises(ConnectionClosedOK) as closed:
        client._ws.recv(timeout=10)  # the server closes it once it has been silent for idle_timeout_s
    assert closed.value.rcvd.code == 1000 and "idle" in closed.value.rcvd.reason
    _wait(lambda: len(openpi_server.sessions) == 0, "the idle connection's session freed")
    policy = OpenPIPolicy(openpi_server.url)  # our client starts its next episode on a new connection
    _wait(lambda: policy._ws.state.name == "CLOSED", "the idle connection closed")
    policy.reset("door")
    assert policy.act({}).tolist() == [[4.0, 4.0]]
    policy.close()
