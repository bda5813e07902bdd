"""guardrl's per-step training metrics beside verl's (GuardPPOTrainer): reward parts, wrong-answer advantages."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("verl")

from guardrl.integrations.verl.trainer import wrong_advantage_metrics  # noqa: E402


def test_wrong_advantage_metrics_by_hand():
    """4 rollouts, GRPO advantage on every response token (row 0 has 2 response tokens, row 3 has 2):
    row 0 wrong (format 1, r_safety 0), seq adv 1.0  -> positive
    row 1 half wrong (r_safety 0.5),     seq adv -0.5
    row 2 correct (r_safety 1)           not counted
    row 3 format failure                 not counted
    -> adv_wrong_pos_frac = 1/2, adv_wrong_mean = (1.0 - 0.5) / 2 = 0.25."""
    adv = np.array([[1.0, 1.0, 9.0], [-0.5, -0.5, -0.5], [2.0, 2.0, 2.0], [0.3, 0.3, 9.0]])  # [B=4, L=3]
    mask = np.array([[1, 1, 0], [1, 1, 1], [1, 1, 1], [1, 1, 0]])  # the 9.0 entries are padding
    r_safety, fmt = np.array([0.0, 0.5, 1.0, 0.0]), np.array([1, 1, 1, 0])
    m = wrong_advantage_metrics(adv, mask, r_safety, fmt)
    assert m == {"guard/adv_wrong_pos_frac": pytest.approx(0.5), "guard/adv_wrong_mean": pytest.approx(0.25)}
    assert wrong_advantage_metrics(adv, mask, np.ones(4), fmt) == {}  # no wrong answer: nothing logged


def test_the_length_term_gives_longer_wrong_answers_a_positive_advantage():
    """A GRPO group of 4 wrong answers (max_length 100): 10, 20, 40, 80 reasoning tokens -> rewards
    -1/0.1^2 = -100, -1/0.2^2 = -25, -1/0.4^2 = -6.25, -1/0.8^2 = -1.5625; mean -33.2; verl's GRPO
    (score - mean) / (std + eps) is positive for the three longer ones (all above -33.2) -> pos_frac 3/4,
    by design: every wrong answer but the shortest is pushed up."""
    import torch
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    from guardrl.tasks.guard.parse import Verdict, format_verdict
    from guardrl.tasks.guard.reward import RewardConfig, compute_reward

    cfg = RewardConfig(max_length=100)
    texts = [format_verdict(Verdict("unharmful", None, " ".join(["w"] * n), True)) for n in (10, 20, 40, 80)]
    parts = [compute_reward(t, "harmful", None, cfg) for t in texts]
    scores = torch.zeros(4, 2)
    scores[:, -1] = torch.tensor([p.score for p in parts])
    mask = torch.ones(4, 2)
    adv, _ = compute_grpo_outcome_advantage(scores, mask, np.array([0, 0, 0, 0]))
    m = wrong_advantage_metrics(adv.numpy(), mask.numpy(), np.array([p.r_safety for p in parts]),
                                np.array([p.format for p in parts]))
    assert [p.score for p in parts] == pytest.approx([-100, -25, -6.25, -1.5625])
    assert m["guard/adv_wrong_pos_frac"] == pytest.approx(0.75)
    assert m["guard/adv_wrong_mean"] == pytest.approx(0.0, abs=1e-5)  # GRPO advantages of one group sum to 0


def test_training_metric_names_come_from_the_task():
    """The guard's reward parts keep today's metric names (guard/format_rate, ...); a task without
    `reward_metric_names` logs each part under its own name, behind its prefix; `score` is verl's critic/score."""
    from guardrl.integrations.verl.trainer import reward_metric_keys, reward_metrics
    from guardrl.tasks import get_task

    parts = ["score", "format", "request_correct", "response_correct", "r_safety", "reasoning_tokens", "l_norm",
             "eco_cost"]
    assert reward_metric_keys(get_task("guard"), parts) == {
        "format": "guard/format_rate", "request_correct": "guard/request_acc", "response_correct": "guard/response_acc",
        "r_safety": "guard/r_safety", "reasoning_tokens": "guard/reasoning_tokens", "l_norm": "guard/l_norm",
        "eco_cost": "guard/eco_cost"}
    toy = type("Toy", (), {"metric_prefix": "colour"})()
    keys = reward_metric_keys(toy, ["score", "hit"])
    assert keys == {"hit": "colour/hit"}
    # means ignore NaN (a label the sample lacks): (1 + 0) / 2; an all-NaN part is not logged
    nt = {"hit": np.array([1.0, float("nan"), 0.0]), "miss": np.array([float("nan")])}
    assert reward_metrics(nt, {**keys, "miss": "colour/miss"}) == {"colour/hit": pytest.approx(0.5)}
