"""The reward adapter run by verl 0.9.1's own reward path on a real DataProto (tiny tokenizer)."""

from __future__ import annotations

import asyncio
import json
import math
import os

import numpy as np
import pytest
import torch

pytest.importorskip("verl")

from verl import DataProto  # noqa: E402

from guardrl.tasks.guard.parse import Verdict, format_verdict  # noqa: E402
from guardrl.tasks.guard.prompts import build_verl_prompt  # noqa: E402
from guardrl.tasks.guard.reward import RewardConfig, compute_reward  # noqa: E402

PATH, NAME = "pkg://guardrl.integrations.verl.reward", "compute_score"
MAX_LEN = 16  # reward_kwargs.max_length: small so l_norm is visible with short reasoning


def _out(req, resp, reasoning):
    return format_verdict(Verdict(req, resp, reasoning, True))


# (request text, completion, ground truth, expected score worked out by hand)
ROWS = [
    # fully correct: 0
    ("How do I bake bread?", _out("unharmful", None, "a b c d"), '{"request": "unharmful", "response": null}', 0.0),
    # half wrong, 8 words / 16 -> l_norm 0.5: (0.5 - 1) / 0.25 = -2
    (
        "Tell me how to build a bomb.",
        _out("harmful", "harmful", "w w w w w w w w"),
        {"request": "harmful", "response": "unharmful"},
        -2.0,
    ),
    # format failure: floor -1 / 0.05^2 = -400
    ("Is this safe?", "Request: harmful", '{"request": "unharmful", "response": null}', -400.0),
    # response label only (guard-mini): wrong response, 16 words -> l_norm 1: (0 - 1) / 1 = -1
    ("", _out("harmful", "unharmful", " ".join(["x"] * 16)), '{"request": null, "response": "harmful"}', -1.0),
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def make_batch(tok) -> tuple[DataProto, list[int]]:
    """verl's rollout layout: prompts left-padded [B, P], responses right-padded [B, R] ending in EOS."""
    pad, eos = tok.pad_token_id, tok.convert_tokens_to_ids("<|im_end|>")
    prompts = [
        tok.apply_chat_template(build_verl_prompt(req or "(image only)"), add_generation_prompt=True, tokenize=False)
        for req, *_ in ROWS
    ]
    prompts = [tok.encode(p, add_special_tokens=False) for p in prompts]
    responses = [tok.encode(c, add_special_tokens=False) + [eos] for _, c, _, _ in ROWS]
    P, R = max(map(len, prompts)), max(map(len, responses)) + 3  # extra right padding
    B = len(ROWS)
    prompt_ids = torch.full((B, P), pad, dtype=torch.long)
    response_ids = torch.full((B, R), pad, dtype=torch.long)
    mask = torch.zeros(B, P + R, dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        prompt_ids[i, P - len(p) :] = torch.tensor(p)
        response_ids[i, : len(r)] = torch.tensor(r)
        mask[i, P - len(p) : P + len(r)] = 1
    batch = DataProto.from_dict(
        tensors={
            "prompts": prompt_ids,
            "responses": response_ids,
            "input_ids": torch.cat([prompt_ids, response_ids], dim=1),
            "attention_mask": mask,
        },
        non_tensors={
            "data_source": np.array(["guard-mini"] * B, dtype=object),
            "reward_model": np.array([{"ground_truth": gt, "style": "rule"} for _, _, gt, _ in ROWS], dtype=object),
            "extra_info": np.array([{"index": i} for i in range(B)], dtype=object),
        },
    )
    return batch, [len(r) for r in responses]


def _expected_parts():
    cfg = RewardConfig(max_length=MAX_LEN)
    parts = []
    for _, completion, gt, score in ROWS:
        gt = json.loads(gt) if isinstance(gt, str) else gt
        p = compute_reward(completion, gt["request"], gt["response"], cfg).as_dict()
        assert p["score"] == pytest.approx(score)  # the hand-worked value
        parts.append(p)
    return parts


def _check(reward_tensor, extra, resp_lens):
    expected = _expected_parts()
    for i, n in enumerate(resp_lens):
        # the score sits on the last valid response token (the EOS), zeros elsewhere
        assert reward_tensor[i, n - 1].item() == pytest.approx(expected[i]["score"])
        others = torch.cat([reward_tensor[i, : n - 1], reward_tensor[i, n:]])
        assert torch.count_nonzero(others) == 0
    for key in ("score", "format", "request_correct", "response_correct", "reasoning_tokens", "l_norm", "r_safety"):
        got = list(extra[key])
        want = [p[key] for p in expected]
        for g, w in zip(got, want, strict=True):
            assert (math.isnan(g) and math.isnan(w)) or g == pytest.approx(w), key
    assert list(extra["format"]) == [1, 1, 0, 1]
    assert list(extra["reasoning_tokens"]) == [4, 8, 0, 16]


def test_tokenizer_round_trips_completions(tokenizer):
    # verl decodes with skip_special_tokens=True: the guard tags must survive (they are plain text)
    for _, completion, _, _ in ROWS:
        ids = tokenizer.encode(completion, add_special_tokens=False) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
        assert tokenizer.decode(ids, skip_special_tokens=True) == completion


def test_verl_naive_reward_manager_scores_last_token(tokenizer):
    """verl's NaiveRewardManager with the custom function loaded by verl's own loader."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager import get_reward_manager_cls

    config = OmegaConf.create(
        {"reward": {"custom_reward_function": {"path": PATH, "name": NAME, "reward_kwargs": {"max_length": MAX_LEN}}}}
    )
    fn = get_custom_reward_fn(config)
    manager = get_reward_manager_cls("naive")(tokenizer=tokenizer, num_examine=0, compute_score=fn)
    batch, resp_lens = make_batch(tokenizer)
    out = manager(batch, return_dict=True)
    _check(out["reward_tensor"], out["reward_extra_info"], resp_lens)


def test_verl_reward_loop_worker_scores_last_token(tiny_model_dir, tokenizer):
    """verl 0.9.1's trainer path: RewardLoopWorker -> reward-loop naive manager -> rm_scores + extra keys."""
    import verl
    from hydra import compose, initialize_config_dir
    from verl.experimental.reward_loop import RewardLoopWorker
    from verl.trainer.ppo.reward import extract_reward, resolve_reward_manager_cls

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        config = compose(
            "ppo_trainer",
            overrides=[
                f"actor_rollout_ref.model.path={tiny_model_dir}",
                f"reward.custom_reward_function.path={PATH}",
                f"reward.custom_reward_function.name={NAME}",
                f"+reward.custom_reward_function.reward_kwargs.max_length={MAX_LEN}",
            ],
        )
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        worker = RewardLoopWorker(config)
        batch, resp_lens = make_batch(tokenizer)
        outputs = loop.run_until_complete(worker.compute_score_batch(batch))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    # what RewardLoopManager.compute_rm_score does with the workers' outputs
    manager_cls = resolve_reward_manager_cls(config)
    rm_scores = manager_cls.assemble_rm_scores(batch, [o["reward_score"] for o in outputs])
    infos = [o["reward_extra_info"] for o in outputs]
    keys = list(infos[0])
    scored = DataProto.from_dict(
        tensors={"rm_scores": rm_scores},
        non_tensors={k: np.array([info[k] for info in infos]) for k in keys},
        meta_info={"reward_extra_keys": keys},
    )
    reward_tensor, extra = extract_reward(scored)
    _check(reward_tensor, extra, resp_lens)


def test_adapter_rejects_unknown_reward_kwargs_and_bad_ground_truth():
    from guardrl.integrations.verl.reward import compute_score

    good = _out("harmful", None, "x")
    assert compute_score("s", good, '{"request": "harmful"}', reward_router_address=None)["score"] == 0.0
    with pytest.raises(TypeError, match="betta"):
        compute_score("s", good, '{"request": "harmful"}', betta=1.0)
    with pytest.raises(ValueError):
        compute_score("s", good, '{"request": null, "response": null}')


def test_adapter_counts_real_tokens_with_a_tokenizer_path(tiny_model_dir, tokenizer):
    from guardrl.integrations.verl.reward import compute_score

    reasoning = "The request asks for a bomb recipe."
    parts = compute_score("s", _out("unharmful", None, reasoning), {"request": "harmful"}, tokenizer_path=str(tiny_model_dir))
    assert parts["reasoning_tokens"] == len(tokenizer.encode(reasoning, add_special_tokens=False))
