"""guardrl_dynamic_clip on verl 0.9.1: registration, config path, equality with vanilla, scheduled bounds."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("verl")

from verl.trainer.ppo.core_algos import compute_policy_loss_vanilla, get_policy_loss_fn  # noqa: E402
from verl.utils.config import omega_conf_to_dataclass  # noqa: E402

from guardrl.integrations.verl import policy_loss as pl  # noqa: E402


def actor_config(*overrides: str):
    """verl's own ActorConfig, built the way verl's worker builds it (Hydra compose + instantiate)."""
    import verl
    from hydra import compose, initialize_config_dir

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        cfg = compose(
            "ppo_trainer",
            overrides=[
                "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
                "actor_rollout_ref.actor.optim.total_training_steps=10",
                *overrides,
            ],
        )
    return omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)


GUARD = (
    "actor_rollout_ref.actor.policy_loss._target_=guardrl.integrations.verl.policy_loss.DynamicClipPolicyLossConfig",
    "actor_rollout_ref.actor.policy_loss.loss_mode=guardrl_dynamic_clip",
)


@pytest.fixture(scope="module")
def linear_cfg():
    return actor_config(*GUARD, "+actor_rollout_ref.actor.policy_loss.clip_floor=0.05")


@pytest.fixture(scope="module")
def vanilla_cfg():
    return actor_config()


@pytest.fixture(autouse=True)
def _clean_clock():
    pl.reset_clip_clock()
    yield
    pl.reset_clip_clock()


def _loss_and_grad(fn, cfg, old, new, adv, mask, agg="token-mean"):
    lp = new.clone().requires_grad_(True)
    loss, metrics = fn(
        old_log_prob=old, log_prob=lp, advantages=adv, response_mask=mask, loss_agg_mode=agg, config=cfg
    )
    loss.backward()
    return loss.detach(), lp.grad, metrics


def _ratio_batch(ratios, advs):
    """One sequence whose token t has ratio ``ratios[t]`` and advantage ``advs[t]``; shapes [1, T]."""
    old = torch.full((1, len(ratios)), -1.0, dtype=torch.float64)
    new = old + torch.log(torch.tensor([ratios], dtype=torch.float64))
    adv = torch.tensor([advs], dtype=torch.float64)
    return old, new, adv, torch.ones_like(adv, dtype=torch.bool)


def test_registered_and_selected_by_config(linear_cfg):
    assert type(linear_cfg.policy_loss).__name__ == "DynamicClipPolicyLossConfig"
    assert linear_cfg.policy_loss.clip_schedule == "linear" and linear_cfg.policy_loss.clip_floor == 0.05
    assert get_policy_loss_fn(linear_cfg.policy_loss.loss_mode) is pl.compute_policy_loss_dynamic_clip
    assert linear_cfg.optim.total_training_steps == 10


def test_unknown_schedule_in_config_is_refused():
    with pytest.raises(Exception, match="valid"):
        actor_config(*GUARD, "+actor_rollout_ref.actor.policy_loss.clip_schedule=exponential")


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_step_zero_equals_vanilla(linear_cfg, vanilla_cfg, agg):
    # eps 0.2 (verl's default clip_ratio); at s = 0 the linear bound is 0.2 * (10 - 0) / 10 = 0.2
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(4, 6, generator=g, dtype=torch.float64) * 3
    new = old + torch.randn(4, 6, generator=g, dtype=torch.float64) * 0.3  # many ratios outside [0.8, 1.2]
    adv = torch.randn(4, 1, generator=g, dtype=torch.float64).expand(4, 6).contiguous()
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[1, 4:] = False
    mask[3, 2:] = False
    pl.set_clip_step(0)
    ours = _loss_and_grad(pl.compute_policy_loss_dynamic_clip, linear_cfg, old, new, adv, mask, agg)
    ref = _loss_and_grad(compute_policy_loss_vanilla, vanilla_cfg, old, new, adv, mask, agg)
    torch.testing.assert_close(ours[0], ref[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(ours[1], ref[1], rtol=0, atol=1e-12)
    assert 0 < ref[2]["actor/pg_clipfrac"] < 1  # the comparison exercised clipping
    for key in ("actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower"):
        assert ours[2][key] == pytest.approx(ref[2][key])
    assert ours[2]["guard/clip_bound"] == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("step", "bound"),
    [
        (5, 0.1),  # 0.2 * (10 - 5) / 10
        (2, 0.16),  # 0.2 * 8 / 10
        (9, 0.05),  # 0.2 * 1 / 10 = 0.02 < floor 0.05
        (10, 0.05),  # 0 -> floor
        (40, 0.05),  # past the end: floor
    ],
)
def test_effective_bound_follows_the_schedule(linear_cfg, vanilla_cfg, step, bound):
    # A > 0: ratio just inside 1+bound moves (grad != 0), just outside is clipped (grad == 0).
    # A < 0: ratio just inside 1-bound moves, just outside is clipped.
    d = 2e-3
    ratios = [1 + bound - d, 1 + bound + d, 1 - bound + d, 1 - bound - d]
    advs = [1.0, 1.0, -1.0, -1.0]
    old, new, adv, mask = _ratio_batch(ratios, advs)
    pl.set_clip_step(step)
    _, grad, metrics = _loss_and_grad(pl.compute_policy_loss_dynamic_clip, linear_cfg, old, new, adv, mask)
    assert (grad[0] != 0).tolist() == [True, False, True, False]
    assert metrics["guard/clip_bound"] == pytest.approx(bound)
    assert metrics["guard/clip_bound_low"] == pytest.approx(bound)
    assert metrics["guard/clip_step"] == step
    # verl's vanilla (fixed 0.2) lets all four move: the schedule made the difference
    _, grad_v, _ = _loss_and_grad(compute_policy_loss_vanilla, vanilla_cfg, old, new, adv, mask)
    assert (grad_v[0] != 0).all()


@pytest.mark.parametrize(("schedule", "bound"), [("constant", 0.2), ("cosine", 0.1)])
def test_other_schedules_from_config(schedule, bound):
    # step 5 of 10: constant 0.2; cosine 0.2 * (1 + cos(pi/2)) / 2 = 0.1
    cfg = actor_config(*GUARD, f"+actor_rollout_ref.actor.policy_loss.clip_schedule={schedule}")
    old, new, adv, mask = _ratio_batch([1 + bound - 2e-3, 1 + bound + 2e-3], [1.0, 1.0])
    pl.set_clip_step(5)
    _, grad, metrics = _loss_and_grad(pl.compute_policy_loss_dynamic_clip, cfg, old, new, adv, mask)
    assert (grad[0] != 0).tolist() == [True, False]
    assert metrics["guard/clip_bound"] == pytest.approx(bound)


def test_asymmetric_clip_ratios_scale_both_sides():
    # clip_ratio_low 0.2, clip_ratio_high 0.28 at step 5 of 10: bounds 0.1 and 0.14
    cfg = actor_config(*GUARD, "actor_rollout_ref.actor.clip_ratio_high=0.28")
    pl.set_clip_step(5)
    old, new, adv, mask = _ratio_batch([1.139, 1.141, 0.901, 0.899], [1.0, 1.0, -1.0, -1.0])
    _, grad, metrics = _loss_and_grad(pl.compute_policy_loss_dynamic_clip, cfg, old, new, adv, mask)
    assert (grad[0] != 0).tolist() == [True, False, True, False]
    assert metrics["guard/clip_bound"] == pytest.approx(0.14)
    assert metrics["guard/clip_bound_low"] == pytest.approx(0.1)


def test_step_from_the_optimizer_update_count():
    # no explicit clock: s = optimizer updates // updates_per_step; 5 AdamW updates // 2 = step 2
    # -> linear bound 0.2 * (10 - 2) / 10 = 0.16
    cfg = actor_config(*GUARD, "+actor_rollout_ref.actor.policy_loss.updates_per_step=2")
    old, new, adv, mask = _ratio_batch([1.0], [1.0])
    _, _, m0 = _loss_and_grad(pl.compute_policy_loss_dynamic_clip, cfg, old, new, adv, mask)
    assert m0["guard/clip_step"] == 0 and m0["guard/clip_bound"] == pytest.approx(0.2)
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([w], lr=1e-3)
    for _ in range(5):
        opt.zero_grad()
        (w**2).sum().backward()
        opt.step()
    assert pl.current_step(cfg) == (2, 10)
    _, _, m = _loss_and_grad(pl.compute_policy_loss_dynamic_clip, cfg, old, new, adv, mask)
    assert m["guard/clip_step"] == 2 and m["guard/clip_bound"] == pytest.approx(0.16)
    # an explicit clock wins, and may carry S
    pl.set_clip_step(3, 4)
    assert pl.current_step(cfg) == (3, 4)


def test_unknown_total_steps_is_an_error():
    cfg = actor_config(*GUARD, "actor_rollout_ref.actor.optim.total_training_steps=-1")
    pl.set_clip_step(0)
    old, new, adv, mask = _ratio_batch([1.0], [1.0])
    with pytest.raises(ValueError, match="total training steps"):
        pl.compute_policy_loss_dynamic_clip(old, new, adv, mask, "token-mean", cfg)


def test_through_verls_actor_loss(linear_cfg):
    """verl's own actor loss (verl/workers/utils/losses.py: ppo_loss) picks the loss by loss_mode."""
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.losses import ppo_loss

    # 2 sequences: prompt 3 tokens, response 4 tokens, no padding -> 14 tokens flat
    old, new, adv, mask = _ratio_batch([1.05, 1.15, 0.95, 0.85, 1.0, 1.2, 0.9, 1.01], [1.0] * 4 + [-1.0] * 4)
    old, new, adv, mask = (t.view(2, 4).float() for t in (old, new, adv, mask))
    flat = torch.zeros(14)
    flat[2:6], flat[9:13] = new[0], new[1]  # verl reads response log-probs shifted left by one
    data = tu.get_tensordict(
        tensor_dict={
            "prompts": torch.ones(2, 3, dtype=torch.long),
            "responses": torch.ones(2, 4, dtype=torch.long),
            "attention_mask": torch.ones(2, 7, dtype=torch.long),
            "response_mask": mask.long(),
            "old_log_probs": old,
            "advantages": adv,
        },
        non_tensor_dict={"dp_size": 1, "batch_num_tokens": 8, "global_batch_size": 2},
    )
    assert isinstance(data, TensorDict)
    pl.set_clip_step(5)  # linear bound 0.2 * (10 - 5) / 10 = 0.1; seq 0 token 1.15 (A > 0) is clipped
    loss, metrics = ppo_loss(linear_cfg, {"log_probs": flat}, data)
    direct, _ = pl.compute_policy_loss_dynamic_clip(old, new, adv, mask, "token-mean", linear_cfg)
    assert loss.item() == pytest.approx(direct.item())
    # verl wraps policy-loss metrics in Metric(aggregation=MEAN); the trainer logs actor/guard/clip_bound
    assert metrics["guard/clip_bound"].values == [pytest.approx(0.1)]


def test_updates_per_step_from_a_trainer_config():
    # paper: train_batch_size 512, ppo_mini_batch_size 256, 1 epoch -> 2 updates per step
    import verl
    from hydra import compose, initialize_config_dir

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        cfg = compose(
            "ppo_trainer",
            overrides=["data.train_batch_size=512", "actor_rollout_ref.actor.ppo_mini_batch_size=256"],
        )
    assert pl.updates_per_step(cfg) == 2
    cfg.actor_rollout_ref.actor.ppo_epochs = 3
    assert pl.updates_per_step(cfg) == 6
    # not a multiple: 12 prompts, mini-batch 8. The two old formulas said 2 * 12 // 8 = 3 and (12 // 8) * 2 = 2;
    # verl 0.9.1 makes neither: tensordict_utils.make_iterator asserts 12 % 8 == 0 at the first update
    cfg.data.train_batch_size, cfg.actor_rollout_ref.actor.ppo_mini_batch_size = 12, 8
    cfg.actor_rollout_ref.actor.ppo_epochs = 2
    with pytest.raises(ValueError, match="train_batch_size=12 is not a multiple of actor.ppo_mini_batch_size=8"):
        pl.updates_per_step(cfg)
    from tensordict import TensorDict
    from verl.utils.tensordict_utils import make_iterator

    with pytest.raises(AssertionError, match="12 % 8 != 0"):  # what verl itself does with that batch
        next(make_iterator(TensorDict({"x": torch.zeros(12, 1)}, batch_size=[12]), mini_batch_size=8, epochs=2))
    # a multiple: 24 prompts, mini-batch 8, 2 epochs -> verl's iterator yields 2 * 24 / 8 = 6 mini-batches
    cfg.data.train_batch_size = 24
    n = sum(1 for _ in make_iterator(TensorDict({"x": torch.zeros(24, 1)}, batch_size=[24]), mini_batch_size=8,
                                     epochs=2))
    assert pl.updates_per_step(cfg) == n == 6


def test_an_unpinned_step_warns_once_and_a_pinned_one_does_not(caplog):
    """Without a trainer pinning the step (use_v1, another trainer) the bound after a resume is wrong for the
    first mini-batch: the loss says so, once per process; GuardPPOTrainer's pinned clock is silent."""
    import logging

    cfg = actor_config(*GUARD)
    old, new, adv, mask = _ratio_batch([1.0], [1.0])
    pl.set_clip_step(4)
    with caplog.at_level(logging.WARNING, logger=pl.__name__):
        pl.compute_policy_loss_dynamic_clip(old, new, adv, mask, "token-mean", cfg)
    assert not [r for r in caplog.records if "pins the clip step" in r.getMessage()]
    pl.set_clip_step(None)
    with caplog.at_level(logging.WARNING, logger=pl.__name__):
        for _ in range(3):
            pl.compute_policy_loss_dynamic_clip(old, new, adv, mask, "token-mean", cfg)
    warned = [r for r in caplog.records if "pins the clip step" in r.getMessage()]
    assert len(warned) == 1 and "after a resume the first mini-batch uses step 0" in warned[0].getMessage()
