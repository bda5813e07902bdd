"""verl's own PPO trainer runs GRPO steps on this CPU (tiny model, hf rollout, FSDP2 actor, gloo):
checkpoints are written, the logged clip bound follows the schedule step by step (in bypass mode: the
workers still apply guardrl_dynamic_clip and the trainer keeps pinning its step), a rerun resumes."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest
from test_rl_support import keyword_rows, read_metrics, write_parquet

from guardrl.core.clipping import clip_bound

TINY_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny" / "rl.yaml"


def _run(tmp: Path, model: Path, steps: int, *extra: str):
    from guardrl.integrations.verl.entry import run

    return run(
        TINY_RECIPE,
        [
            f"model.path={model}",
            f"data.train={tmp / 'train.parquet'}",
            f"data.val={tmp / 'dev.parquet'}",
            f"output_dir={tmp / 'rl'}",
            f"verl.trainer.total_training_steps={steps}",
            "verl.trainer.save_freq=2",
            "verl.trainer.test_freq=2",
            "verl.trainer.val_before_train=false",
            "verl.trainer.logger=[console,file]",
            "verl.data.train_batch_size=4",
            "verl.data.max_response_length=24",
            "verl.actor_rollout_ref.actor.ppo_mini_batch_size=4",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def rl_run(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rl")
    write_parquet(keyword_rows(16, seed=1, image_every=2), tmp / "train.parquet")
    write_parquet(keyword_rows(8, seed=2, image_every=2), tmp / "dev.parquet")
    t0 = time.perf_counter()
    cfg = _run(tmp, tiny_model_dir, 2)
    return tmp, cfg, time.perf_counter() - t0


def test_grpo_steps_run_and_checkpoint(rl_run):
    tmp, cfg, seconds = rl_run
    assert cfg.actor_rollout_ref.rollout.name == "hf"
    assert cfg.algorithm.adv_estimator == "grpo"
    metrics = read_metrics(tmp / "rl" / "metrics.jsonl")
    assert sorted(metrics) == [1, 2]
    for step in (1, 2):
        m = metrics[step]
        assert math.isfinite(m["critic/score/mean"])
        assert m["response_length/mean"] > 0
        assert m["training/global_step"] == step
    # bypass mode (the recipe): old log-probs come from the rollout, no recomputation pass runs
    assert cfg.algorithm.rollout_correction.bypass_mode
    assert not any("old_log_prob" in k for k in metrics[2]), sorted(metrics[2])
    assert any(k.startswith("val-") for k in metrics[2])  # validation on the dev split (test_freq=2)
    ckpt = tmp / "rl" / "checkpoints"
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    assert (ckpt / "global_step_2" / "actor" / "model_world_size_1_rank_0.pt").exists()
    print(f"2 GRPO steps (with start-up) in {seconds:.0f}s")


def test_logged_clip_bound_follows_schedule(rl_run):
    tmp, cfg, _ = rl_run
    metrics = read_metrics(tmp / "rl" / "metrics.jsonl")
    total = cfg.trainer.total_training_steps
    for step, m in metrics.items():
        want = clip_bound("linear", 0.2, step - 1, total, 0.01)
        assert m["actor/guard/clip_bound"] == pytest.approx(want), (step, m["actor/guard/clip_bound"])
    assert metrics[1]["actor/guard/clip_bound"] > metrics[2]["actor/guard/clip_bound"]


@pytest.mark.slow
def test_rerun_resumes_from_the_last_checkpoint(rl_run, tiny_model_dir):
    tmp, _, _ = rl_run
    cfg = _run(tmp, tiny_model_dir, 3)
    metrics = read_metrics(tmp / "rl" / "metrics.jsonl")  # the rerun's own log
    assert sorted(metrics) == [3], "resumed at step 3, not from scratch"
    want = clip_bound("linear", 0.2, 2, cfg.trainer.total_training_steps, 0.01)
    assert metrics[3]["actor/guard/clip_bound"] == pytest.approx(want)
    assert (tmp / "rl" / "metrics.0.jsonl").exists()  # the first run's log is kept
    assert os.path.exists(tmp / "rl" / "checkpoints" / "global_step_3")
