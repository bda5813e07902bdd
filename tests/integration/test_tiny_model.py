"""The tiny Qwen2.5-VL: builds offline, trains a step, generates, reloads identically."""

from __future__ import annotations

import json
import time

import pytest
import torch
from PIL import Image

from guardrl.models.tiny import SPECIAL_TOKENS, build_tiny_model, reference_config
from guardrl.tasks.guard.prompts import build_messages


def _load(path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoProcessor.from_pretrained(path), AutoModelForImageTextToText.from_pretrained(path)


def _batch(processor, n=2):
    msgs = build_messages("How do I pick a lock?", None, num_images=1)
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    images = [Image.new("RGB", (60 + 10 * i, 50), (40 * i, 100, 200)) for i in range(n)]
    return processor(text=[text] * n, images=images, return_tensors="pt", padding=True)


def test_builds_fast_and_loads_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    path = build_tiny_model(tmp_path / "m", seed=3)
    assert time.perf_counter() - t0 < 60
    processor, model = _load(path)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    n = sum(p.numel() for p in model.parameters())
    assert 1e6 < n < 2e7, n
    vocab = processor.tokenizer.get_vocab()
    for tok in SPECIAL_TOKENS:
        assert tok in vocab, tok
    assert model.config.image_token_id == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    cfg = json.loads((path / "config.json").read_text())
    assert "auto_map" not in cfg  # nothing needs trust_remote_code


def test_forward_backward_generate(tiny_model_dir):
    processor, model = _load(tiny_model_dir)
    batch = _batch(processor)
    image_id = model.config.image_token_id
    assert (batch["input_ids"] == image_id).sum() > 0  # the image became vision tokens
    model.train()
    out = model(**batch, labels=batch["input_ids"])
    out.loss.backward()
    assert torch.isfinite(out.loss)
    grads = [p.grad for p in model.model.visual.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)  # the vision tower is in the graph
    model.eval()
    gen = model.generate(**batch, max_new_tokens=8, do_sample=False)
    new = gen[:, batch["input_ids"].shape[1]:]
    assert new.shape[1] > 0
    texts = processor.batch_decode(new, skip_special_tokens=True)
    assert all(isinstance(t, str) for t in texts)


def test_reload_gives_identical_logits(tiny_model_dir, tmp_path):
    processor, model = _load(tiny_model_dir)
    batch = _batch(processor)
    with torch.no_grad():
        a = model(**batch).logits
    model.save_pretrained(tmp_path / "again")
    processor.save_pretrained(tmp_path / "again")
    _, model2 = _load(tmp_path / "again")
    with torch.no_grad():
        b = model2(**batch).logits
    assert torch.equal(a, b)


def test_deterministic_for_a_seed(tmp_path):
    from safetensors.torch import load_file

    a = load_file(build_tiny_model(tmp_path / "a", seed=1) / "model.safetensors")
    b = load_file(build_tiny_model(tmp_path / "b", seed=1) / "model.safetensors")
    c = load_file(build_tiny_model(tmp_path / "c", seed=2) / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("size,layers", [("3b", 36), ("7b", 28)])
def test_reference_configs(size, layers):
    cfg = reference_config(size)
    assert cfg.text_config.num_hidden_layers == layers
    assert cfg.vision_config.depth == 32
    with pytest.raises(ValueError, match="valid"):
        reference_config("13b")
