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


@pytest.fixture(scope="session")
def vllm_upstream(tiny_model_dir, tmp_path_factory):
    """A real ``vllm serve`` of the tiny Qwen2.5-VL on 127.0.0.1 (the OpenAI-compatible upstream users put
    behind guardrl); yields ``(base_url, served_model_name)``. Any test may use it (the gateway's tests serve
    their scripted VLM the same way, ``server_support.vllm_server``); skipped, with the reason, where vLLM is
    not installed."""
    from server_support import VLLM_MISSING, vllm_server

    pytest.importorskip("vllm", reason=VLLM_MISSING)
    name = "tiny-vlm"
    try:
        with vllm_server(tiny_model_dir, tmp_path_factory.mktemp("vllm-serve") / "server.log", name) as url:
            yield url, name
    except RuntimeError as exc:  # exited or never healthy: the log's tail is in the message
        pytest.fail(f"vllm serve: {exc}")
