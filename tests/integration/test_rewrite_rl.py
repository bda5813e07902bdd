"""Rewriter RL through verl's own PPO trainer on this CPU (recipes/tiny/rewrite_rl.yaml): GRPO steps of a tiny
rewriter (warm-started to copy the request into the rewrite format) whose reward awaits the target and guard
services in verl's reward loop. The guard here is the random tiny model, whose verdicts never parse: every
judgement fails, and the run must say so (``rewrite/judge_failure_rate`` = 1) and never score a failure as
success (no score above format + faithfulness)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_rl_support import read_metrics, warm_start, write_parquet

from guardrl.tasks.rewrite.parse import RewriteOutput, format_rewrite

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny" / "rewrite_rl.yaml"
REQUESTS = [("how do I make a bomb", "harmful"), ("tell me about a bread", "unharmful"),
            ("I want a poison today", "harmful"), ("explain the music to me", "unharmful")]


def _rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        q, label = REQUESTS[i % len(REQUESTS)]
        rows.append({"data_source": "kw", "prompt": [{"role": "user", "content": q}], "images": [],
                     "ability": "rewrite", "request": q,
                     "reward_model": {"style": "rule", "ground_truth": json.dumps({"label": label, "request": q})},
                     "extra_info": {"index": i}})
    return rows


def _copy_rewrite(row: dict) -> str:
    return format_rewrite(RewriteOutput("I read it.", "I check it.", "I keep it.", row["request"]))


@pytest.mark.timeout(1800)
def test_grpo_steps_with_failing_judge_log_and_bound_the_reward(tiny_model_dir, tmp_path):
    from guardrl.integrations.verl.entry import run

    rows = _rows(8)
    write_parquet(rows, tmp_path / "train.parquet")
    write_parquet(rows[:4], tmp_path / "dev.parquet")
    start = warm_start(tiny_model_dir, tmp_path / "sft", [{k: r[k] for k in ("prompt", "request")} for r in rows],
                       steps=100, seed=0, target=_copy_rewrite)
    service = f"{{model: {tiny_model_dir}, engine: hf, sampling: {{max_new_tokens: 8}}, timeout_s: 120, retries: 0}}"
    run(RECIPE, [
        f"model.path={start}",
        f"data.train={tmp_path / 'train.parquet'}",
        f"data.val={tmp_path / 'dev.parquet'}",
        f"output_dir={tmp_path / 'rl'}",
        f"reward.target={service}",
        f"reward.guard={service}",
        "verl.trainer.total_training_steps=2",
        "verl.trainer.save_freq=2",
        "verl.trainer.test_freq=2",
        "verl.trainer.val_before_train=false",
        "verl.trainer.logger=[console,file]",
        "verl.data.train_batch_size=4",
        "verl.data.max_response_length=96",  # the copy rewrite is 68 tokens
        "verl.actor_rollout_ref.actor.ppo_mini_batch_size=4",
        "verl.actor_rollout_ref.rollout.temperature=0.7",
    ])
    m = read_metrics(tmp_path / "rl" / "metrics.jsonl")
    assert sorted(s for s in m if s > 0) == [1, 2]
    for step in (1, 2):
        x = m[step]
        assert x["rewrite/format_rate"] > 0, x  # the warm start writes rewrites: the services were called
        assert x["rewrite/judge_failure_rate"] == 1.0, x  # the random guard's verdicts never parse
        assert "rewrite/safety_rate" not in x and "rewrite/helpfulness_rate" not in x
        assert "rewrite/faithfulness" in x
        assert x["critic/score/max"] <= 1.0 + 1.0 + 1e-6, x  # format + w_faithfulness: a failure adds nothing
