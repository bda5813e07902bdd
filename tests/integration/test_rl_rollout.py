"""The hf rollout server (guardrl.integrations.verl.rollout) on the tiny model, without Ray: batching of
concurrent requests, images, suppressed vision tokens, weight loading, verl registration."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from guardrl.tasks.guard.prompts import build_messages


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    from guardrl.integrations.verl.rollout import HFRolloutServer

    cfg = SimpleNamespace(prompt_length=1024, response_length=12, max_num_seqs=8, seed=0)
    return HFRolloutServer(cfg, SimpleNamespace(local_path=str(tiny_model_dir), path=str(tiny_model_dir)))


def _prompt(server, with_image: bool):
    msgs = build_messages("how do I bake bread", None, num_images=int(with_image))
    text = server.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    images = [Image.new("RGB", (56, 84), (200, 30, 30))] if with_image else None
    ids = server.processor(text=[text], images=images, return_tensors="pt")["input_ids"][0].tolist()
    return ids, images


def test_concurrent_requests_are_batched(server):
    reqs = [_prompt(server, with_image=i % 2 == 0) for i in range(4)]
    before, calls = server.stats["batches"], server.engine.stats["generate_calls"]

    async def go():
        params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}
        return await asyncio.gather(
            *[server.generate(ids, dict(params), f"r{i}", image_data=img) for i, (ids, img) in enumerate(reqs)]
        )

    outs = asyncio.run(go())
    assert server.stats["batches"] == before + 1  # one engine call for the four requests...
    assert server.engine.stats["generate_calls"] == calls + 1  # ...and one model.generate call
    vision = set(server.suppress)
    for out in outs:
        assert 1 <= len(out.token_ids) <= 12
        assert not vision & set(out.token_ids)  # no image/video placeholders in a completion
        assert len(out.log_probs) == len(out.token_ids)
        assert all(lp <= 0 for lp in out.log_probs)


def test_a_group_shares_one_image_encoding_and_unsupported_sampling_is_refused(server, monkeypatch):
    ids, images = _prompt(server, with_image=True)
    encoded = []
    real = server.engine._encode_images
    monkeypatch.setattr(server.engine, "_encode_images", lambda ims: encoded.append(len(ims or ())) or real(ims))

    async def group(params):
        copies = [[im.copy() for im in images] for _ in range(4)]  # a GRPO group: equal images, separate objects
        return await asyncio.gather(*[server.generate(ids, dict(params), f"g{i}", image_data=c)
                                      for i, c in enumerate(copies)])

    outs = asyncio.run(group({"temperature": 1.0, "top_p": 0.9}))
    assert encoded == [1] and len(outs) == 4
    assert len({tuple(o.token_ids) for o in outs}) > 1  # four samples, not one repeated
    with pytest.raises(NotImplementedError, match="top_k"):
        asyncio.run(server.generate(ids, {"temperature": 1.0, "top_k": 5}, "k"))


def test_load_weights_replaces_the_model(server):
    state = {k: torch.full_like(v, 0.01) for k, v in server.model.state_dict().items()}
    loaded = asyncio.run(server.load_weights(state, global_steps=3))
    assert loaded == len(state)
    assert all(torch.all(v == 0.01) for v in server.model.state_dict().values())
    assert server.global_steps == 3
    with pytest.raises(RuntimeError, match="matched"):
        asyncio.run(server.load_weights({"not.a.weight": torch.zeros(2)}))


def test_registered_with_verl():
    from verl.workers.rollout.base import get_rollout_class
    from verl.workers.rollout.replica import get_rollout_replica_class

    from guardrl.integrations.verl.rollout import HFReplica, HFServerAdapter

    assert get_rollout_class("hf", "async") is HFServerAdapter
    assert get_rollout_replica_class("hf") is HFReplica
