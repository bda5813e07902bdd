"""GRPO through verl's trainer learns on this CPU: 30 steps raise mean reward and dev accuracy.

Task: the request's label is decided by one keyword ("bomb" -> harmful, "bread" -> unharmful).
Warm start: a short plain-transformers SFT of the tiny model on the guard output format with
*random* labels, so RL starts well-formed at chance accuracy. Then 30 GRPO steps of the tiny
recipe (verl's Ray PPO trainer, hf rollout, FSDP2 actor, the length-aware reward, the dynamic clip
loss), fixed seeds. The system instruction is left out of these prompts (the guard input turn
stays) to keep a 2-core run affordable.

Measured here (2 shared cores), two runs: dev accuracy (greedy) 0.5625 -> 0.875 both times; mean
training reward (steps 1-5 -> 26-30) -81.3 -> -25.0 and -71.4 -> -32.7; 2-6 s per GRPO step
(32 completions); the warm start takes most of the test's time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_rl_support import keyword_rows, mean_over_steps, read_metrics, warm_start, write_parquet

TINY_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny" / "rl.yaml"
STEPS = 30


@pytest.mark.slow
@pytest.mark.timeout(3600)  # warm start + verl start-up + 30 steps; 10-18 min on 2 busy cores
def test_grpo_raises_reward_and_dev_accuracy(tiny_model_dir, tmp_path):
    from guardrl.integrations.verl.entry import run

    train, dev = keyword_rows(64, seed=1, instruction=False), keyword_rows(32, seed=2, instruction=False)
    write_parquet(train, tmp_path / "train.parquet")
    write_parquet(dev, tmp_path / "dev.parquet")
    sft = warm_start(tiny_model_dir, tmp_path / "sft", train, steps=150, seed=0)
    run(
        TINY_RECIPE,
        [
            f"model.path={sft}",
            f"data.train={tmp_path / 'train.parquet'}",
            f"data.val={tmp_path / 'dev.parquet'}",
            f"output_dir={tmp_path / 'rl'}",
            f"verl.trainer.total_training_steps={STEPS}",
            f"verl.trainer.save_freq={STEPS}",
            "verl.trainer.test_freq=10",
            "verl.trainer.val_before_train=true",
            "verl.trainer.logger=[console,file]",
            "verl.data.train_batch_size=8",
            "verl.data.max_response_length=48",
            "verl.data.seed=0",
            "verl.actor_rollout_ref.actor.ppo_mini_batch_size=4",
            "verl.actor_rollout_ref.actor.optim.lr=2e-4",
            "verl.actor_rollout_ref.rollout.n=4",
            "verl.actor_rollout_ref.rollout.temperature=0.7",
        ],
    )
    m = read_metrics(tmp_path / "rl" / "metrics.jsonl")
    acc_key = "val-aux/kw/request_correct/mean@1"
    dev_before, dev_after = m[0][acc_key], m[STEPS][acc_key]
    reward_before = mean_over_steps(m, "critic/score/mean", range(1, 6))
    reward_after = mean_over_steps(m, "critic/score/mean", range(STEPS - 4, STEPS + 1))
    print(
        f"dev accuracy {dev_before:.3f} -> {dev_after:.3f}; "
        f"mean reward (steps 1-5 -> {STEPS - 4}-{STEPS}) {reward_before:.1f} -> {reward_after:.1f}"
    )
    assert dev_after >= dev_before + 0.2, (dev_before, dev_after)
    assert reward_after > reward_before + 0.25 * abs(reward_before), (reward_before, reward_after)
    assert (tmp_path / "rl" / "checkpoints" / f"global_step_{STEPS}").is_dir()
