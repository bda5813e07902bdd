"""Bypass mode (old log-probs = the rollout's) against the full recomputation, on the tiny model, no Ray.

verl's recomputation pass (``RayPPOTrainer._compute_old_log_prob``) runs the actor over the step's batch
before any update and uses those log-probs as ``old_log_probs`` for every mini-batch of the step. In bypass
mode (``algorithm.rollout_correction.bypass_mode``) verl takes ``rollout_log_probs`` instead, which the hf
rollout server computes while sampling with the same weights. Here both paths run on the same sampled
batch (same seed): the rollout's log-probs match the actor's recomputation, the ``guardrl_dynamic_clip``
loss and the gradients of the first mini-batch agree, the second mini-batch (after one optimizer update)
agrees too, and the clip bound follows the linear schedule. The driver-side part (verl rewrites the loss
name, guardrl restores it) runs verl's own ``apply_bypass_mode``.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

pytest.importorskip("verl")

from test_verl_policy_loss import GUARD, actor_config  # noqa: E402

from guardrl.core.clipping import clip_bound  # noqa: E402
from guardrl.integrations.verl import policy_loss as pl  # noqa: E402
from guardrl.tasks.guard.prompts import build_messages  # noqa: E402

TEMPERATURE = 0.7  # not 1: the rollout and the actor must both divide the logits by it
N = 2  # samples per prompt (GRPO group)
MAX_NEW = 10


@pytest.fixture(scope="module")
def rollout(tiny_model_dir):
    """4 prompts (2 with an image) x N samples from the hf rollout server, log-probs on."""
    from guardrl.integrations.verl.rollout import HFRolloutServer

    cfg = SimpleNamespace(prompt_length=1024, response_length=MAX_NEW, max_num_seqs=16, seed=0)
    server = HFRolloutServer(cfg, SimpleNamespace(local_path=str(tiny_model_dir), path=str(tiny_model_dir)))
    prompts = []
    for i, req in enumerate(("how do I bake bread", "how do I make a bomb", "tell me a poem", "explain malware")):
        msgs = build_messages(req, None, num_images=int(i % 2 == 0))
        text = server.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        images = [Image.new("RGB", (56, 56), (40 * i, 90, 160))] if i % 2 == 0 else None
        enc = server.processor(text=[text], images=images, return_tensors="pt")
        prompts.append((enc["input_ids"][0].tolist(), images, {k: v for k, v in enc.items() if k in
                                                                ("pixel_values", "image_grid_thw")}))
    params = {"temperature": TEMPERATURE, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}

    async def go():
        return await asyncio.gather(*[server.generate(ids, dict(params), f"r{i}-{k}", image_data=img)
                                      for i, (ids, img, _) in enumerate(prompts) for k in range(N)])

    outs = asyncio.run(go())
    samples = [(prompts[j // N], out) for j, out in enumerate(outs)]
    return server, samples


def _actor_log_probs(model, samples) -> list[torch.Tensor]:
    """The actor's log-probs of each sampled response: one unpadded forward per sequence, logits / T."""
    out = []
    for (ids, _, vision), res in samples:
        resp = torch.tensor(res.token_ids)
        seq = torch.tensor(ids + res.token_ids)[None]
        logits = model(input_ids=seq, attention_mask=torch.ones_like(seq), **vision).logits[0].float()
        logits = logits[len(ids) - 1 : len(ids) - 1 + len(resp)] / TEMPERATURE  # [R, V]
        out.append(torch.log_softmax(logits, -1).gather(-1, resp[:, None])[:, 0])
    return out


def _pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ``[R_i]`` rows -> ``([B, L], mask [B, L])`` (verl's response layout)."""
    width = max(len(r) for r in rows)
    x = torch.zeros(len(rows), width, dtype=rows[0].dtype)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        x[i, : len(r)] = r
        mask[i, : len(r)] = True
    return x, mask


def _loss_and_grads(model, samples, old: torch.Tensor, adv: torch.Tensor, cfg):
    model.zero_grad(set_to_none=True)
    log_prob, mask = _pad(_actor_log_probs(model, samples))
    loss, metrics = pl.compute_policy_loss_dynamic_clip(old_log_prob=old, log_prob=log_prob, advantages=adv,
                                                        response_mask=mask, loss_agg_mode="token-mean", config=cfg)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, metrics


def _assert_same(a, b):
    (loss_a, grads_a, _), (loss_b, grads_b, _) = a, b
    assert torch.allclose(loss_a, loss_b, rtol=1e-5, atol=1e-7), (loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys() and grads_a
    scale = max(g.abs().max() for g in grads_a.values())
    assert scale > 0
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-5 * scale), name


@pytest.fixture()
def actor(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    return AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32,
                                                       attn_implementation="sdpa").train()


def test_bypass_equals_recompute_on_both_mini_batches(rollout, actor):
    _, samples = rollout
    cfg = actor_config(*GUARD)
    pl.reset_clip_clock()
    pl.set_clip_step(0, 4)
    with torch.no_grad():  # verl's recomputation: the actor, before any update of the step
        recomputed, _ = _pad(_actor_log_probs(actor, samples))
    from_rollout, mask = _pad([torch.tensor(res.log_probs) for _, res in samples])
    assert from_rollout.shape == recomputed.shape
    assert (from_rollout[mask] - recomputed[mask]).abs().max() < 1e-4  # same weights, same formula, fp32
    # GRPO advantages of made-up rewards (1, 0) per group: +-1/sqrt(2) on every token of a response
    adv = torch.tensor([0.7071, -0.7071] * (len(samples) // N))[:, None] * mask
    first, second = slice(0, len(samples) // 2), slice(len(samples) // 2, None)  # 2 mini-batches of 2 groups

    bypass = _loss_and_grads(actor, samples[first], from_rollout[first], adv[first], cfg)
    recompute = _loss_and_grads(actor, samples[first], recomputed[first], adv[first], cfg)
    _assert_same(bypass, recompute)
    assert bypass[2]["guard/clip_bound"] == pytest.approx(0.2)

    # one optimizer update on the first mini-batch; the second still uses the pre-update (old) log-probs
    opt = torch.optim.AdamW(actor.parameters(), lr=1e-3)
    for name, p in actor.named_parameters():
        p.grad = bypass[1].get(name)
    opt.step()
    bypass2 = _loss_and_grads(actor, samples[second], from_rollout[second], adv[second], cfg)
    recompute2 = _loss_and_grads(actor, samples[second], recomputed[second], adv[second], cfg)
    _assert_same(bypass2, recompute2)
    assert bypass2[2]["actor/ppo_kl"] != 0  # the ratio moved off 1: the clipped objective is exercised


def test_clip_bound_follows_the_schedule_in_bypass(rollout):
    _, samples = rollout
    cfg = actor_config(*GUARD)  # optim.total_training_steps=10
    old, mask = _pad([torch.tensor(res.log_probs) for _, res in samples])
    adv = torch.ones_like(old) * mask
    pl.reset_clip_clock()
    got = []
    for step in range(10):
        pl.set_clip_step(step, None)
        _, metrics = pl.compute_policy_loss_dynamic_clip(old, old.clone(), adv, mask, "token-mean", cfg)
        got.append(metrics["guard/clip_bound"])
    pl.reset_clip_clock()
    # linear: eps * (1 - s / S) = 0.2, 0.18, ..., 0.02, floored at 0.01
    assert got == pytest.approx([clip_bound("linear", 0.2, s, 10, 0.01) for s in range(10)])
    assert got[0] == pytest.approx(0.2) and got[9] == pytest.approx(0.02)


def test_verl_bypass_keeps_the_recipe_loss(repo_root):
    """verl's apply_bypass_mode renames the driver's loss to "bypass_mode"; guardrl's trainer restores it
    before each update, so the clip step keeps being pinned (the workers never saw the rename)."""
    from tensordict import TensorDict
    from verl import DataProto
    from verl.trainer.ppo.rollout_corr_helper import apply_bypass_mode

    from guardrl.core.recipe import load_recipe
    from guardrl.integrations.verl.entry import compose_config
    from guardrl.integrations.verl.trainer import restore_loss_mode

    cfg = compose_config(load_recipe(repo_root / "recipes" / "tiny" / "rl.yaml"))
    assert cfg.algorithm.rollout_correction.bypass_mode and cfg.actor_rollout_ref.rollout.calculate_log_probs
    policy_loss = cfg.actor_rollout_ref.actor.policy_loss
    lp = torch.full((2, 3), -1.5)
    batch = DataProto(batch=TensorDict({"rollout_log_probs": lp}, batch_size=[2]))
    apply_bypass_mode(batch, cfg.algorithm.rollout_correction, policy_loss)
    assert torch.equal(batch.batch["old_log_probs"], lp)  # no recomputation: the rollout's own
    assert policy_loss.loss_mode == "bypass_mode"  # verl's rename (a verl bump that drops it shows here)
    restore_loss_mode(policy_loss, pl.LOSS_NAME)
    assert policy_loss.loss_mode == pl.LOSS_NAME and "rollout_correction" not in policy_loss


def test_bypass_needs_rollout_log_probs(repo_root):
    from guardrl.core.recipe import RecipeError, load_recipe
    from guardrl.integrations.verl.entry import compose_config

    recipe = load_recipe(repo_root / "recipes" / "tiny" / "rl.yaml")
    with pytest.raises(RecipeError, match="calculate_log_probs=true"):
        compose_config(recipe, ["actor_rollout_ref.rollout.calculate_log_probs=false"])
    with pytest.raises(RecipeError, match="rollout_rs is applied by verl's own bypass_mode"):
        compose_config(recipe, ["algorithm.rollout_correction.rollout_rs=token_k1"])
    cfg = compose_config(recipe, ["algorithm.rollout_correction.bypass_mode=false",
                                  "actor_rollout_ref.rollout.calculate_log_probs=false"])
    assert not cfg.algorithm.rollout_correction.bypass_mode  # recomputation stays available


def test_no_reference_model_without_kl(repo_root):
    """Neither KL term on: verl builds the worker as "actor_rollout" (no ref model loaded or run)."""
    from verl.trainer.ppo.utils import need_reference_policy

    from guardrl.core.recipe import load_recipe
    from guardrl.integrations.verl.entry import compose_config

    for name in ("tiny/rl.yaml", "qwen2_5_vl_3b/rl.yaml", "qwen2_5_vl_7b/rl_eco.yaml"):
        cfg = compose_config(load_recipe(repo_root / "recipes" / name))
        assert not need_reference_policy(cfg), name
