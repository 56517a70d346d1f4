"""Build a server for a policy and serve it until Ctrl-C: the one path both command lines take
(``python -m policies.remote serve`` and ``python -m policies.serving.lerobot_policy serve``)."""

from __future__ import annotations

import subprocess
import sys
from typing import Literal

from policies.base import Policy

Protocol = Literal["http", "openpi"]


def make_server(policy: Policy, protocol: Protocol, host: str, port: int, max_sessions: int = 64,
                idle_timeout_s: float = 600.0, prompt_key: str = "prompt", metadata: dict | None = None,
                read_timeout_s: float = 30.0, max_connections: int = 256, traceback_to_client: bool = False,
                max_batch: int = 1, max_wait_ms: float = 5.0):
    """An ``OpenPIServer`` or a ``PolicyServer`` around ``policy`` (not started); ``read_timeout_s``
    and ``max_connections`` bound the HTTP server's slow and surplus clients (an openpi connection
    is a session: ``max_sessions`` and ``idle_timeout_s`` bound those). ``traceback_to_client``:
    the openpi server answers a failed request with its traceback, as openpi does, instead of one
    line (the traceback is logged either way). ``max_batch`` / ``max_wait_ms``: the HTTP server's
    dynamic batching (``policies.serving.batching``; 1 is unbatched)."""
    if protocol == "openpi":
        if max_batch != 1:  # refused, not ignored: a user asking for batching would not get it
            raise ValueError(f"max_batch={max_batch}: dynamic batching is served over --protocol http only")
        from policies.serving.openpi_server import OpenPIServer

        return OpenPIServer(policy, host, port, prompt_key=prompt_key, metadata=metadata, max_sessions=max_sessions,
                            idle_timeout_s=idle_timeout_s, traceback_to_client=traceback_to_client)
    if protocol == "http":
        from policies.serving.http_server import PolicyServer

        return PolicyServer(policy, host, port, max_sessions=max_sessions, idle_timeout_s=idle_timeout_s,
                            read_timeout_s=read_timeout_s, max_connections=max_connections, max_batch=max_batch,
                            max_wait_ms=max_wait_ms)
    raise ValueError(f"protocol={protocol!r}: expected 'http' or 'openpi'")


def serve(policy: Policy, protocol: Protocol, host: str, port: int, name: str | None = None, **options) -> None:
    """Print ``serving <name> at <url>`` (a launcher waits for this line) and serve until Ctrl-C."""
    server = make_server(policy, protocol, host, port, **options)
    print(f"serving {name or type(policy).__name__} at {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def start_server_process(serve_args: list[str], what: str = "the server", *, module: str = "policies.remote serve",
                         stdin_text: str | None = None, timeout_s: float | None = None,
                         new_session: bool = False) -> tuple[subprocess.Popen, str]:
    """Start ``python -m <module> <serve_args>`` in a child process and wait for ``serve``'s
    ``serving ... at <url>`` line: the process and the URL (a ``RuntimeError`` naming ``what``
    and the line it printed instead, or the time it took, when it did not start).

    ``stdin_text`` is written to the child's stdin (then closed); ``timeout_s`` bounds the wait
    for the line; ``new_session``: the child has its own process group, so a Ctrl-C at the
    terminal does not reach it and the caller decides when it stops."""
    proc = subprocess.Popen([sys.executable, "-m", *module.split(), *serve_args], stdout=subprocess.PIPE, text=True,
                            stdin=subprocess.PIPE if stdin_text is not None else None,
                            start_new_session=new_session)
    if stdin_text is not None:
        proc.stdin.write(stdin_text)
        proc.stdin.close()
    timer = None
    if timeout_s is not None:
        import threading

        timer = threading.Timer(timeout_s, proc.kill)  # an unanswered readline ends when the child dies
        timer.start()
    try:
        line = proc.stdout.readline()
    finally:
        if timer is not None:
            timer.cancel()
    if " at " not in line:
        proc.kill()
        proc.wait()
        detail = f"printed {line!r}" if line else f"exited with {proc.returncode} (see its messages above)"
        if timeout_s is not None and proc.returncode == -9 and not line:
            detail = f"did not print its address within {timeout_s:g} s"
        raise RuntimeError(f"{what} did not start: it {detail}")
    return proc, line.split(" at ")[1].strip()
