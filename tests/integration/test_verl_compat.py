"""The verl/transformers compatibility fixes in guardrl.integrations.verl.compat, on the tiny Qwen2.5-VL."""

from __future__ import annotations

import importlib

import pytest
import torch


def _model(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_model_dir).model


def test_text_only_micro_batch_needs_the_fix_and_works_with_it(tiny_model_dir):
    from verl.models.transformers import qwen2_vl

    import guardrl.integrations.verl.compat as compat

    model = _model(tiny_model_dir)
    ids = torch.tensor([[5, 6, 7, 8]])
    original = getattr(qwen2_vl._get_input_embeds, "__wrapped__", qwen2_vl._get_input_embeds)
    # The bug this module exists for: verl's own function fails on a text-only batch. When this stops
    # raising, verl has fixed it upstream and the work-around can go.
    with pytest.raises(AttributeError, match="mean"):
        original(model, ids)
    importlib.reload(compat)  # idempotent: applies once
    embeds, mask = qwen2_vl._get_input_embeds(model, ids, torch.ones_like(ids))
    assert embeds.shape == (1, 4, model.config.text_config.hidden_size)
    assert torch.allclose(embeds, model.get_input_embeddings()(ids))  # the dummy pass adds exactly 0
    embeds.sum().backward()
    vision_grads = [p.grad for p in model.visual.parameters() if p.grad is not None]
    assert vision_grads  # the vision tower is in the graph, as verl intends for FSDP


def test_batches_with_images_go_to_verl_unchanged(tiny_model_dir):
    from transformers import AutoProcessor
    from verl.models.transformers import qwen2_vl

    import guardrl.integrations.verl.compat  # noqa: F401
    from guardrl.tasks.guard.prompts import build_messages

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = _model(tiny_model_dir)
    from PIL import Image

    text = processor.apply_chat_template(build_messages("q", None, 1), add_generation_prompt=True, tokenize=False)
    b = processor(text=[text], images=[Image.new("RGB", (56, 56), (1, 2, 3))], return_tensors="pt")
    embeds, _ = qwen2_vl._get_input_embeds(model, b["input_ids"], b["attention_mask"], b["pixel_values"],
                                          None, b["image_grid_thw"])
    assert embeds.shape[1] == b["input_ids"].shape[1]
