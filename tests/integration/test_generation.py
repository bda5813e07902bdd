"""Generation engines: the HF engine on the tiny model; engine choice; vLLM skipped cleanly on CPU."""

from __future__ import annotations

import io
import logging

import pytest
from guard_samples import guard_prompt
from PIL import Image

from guardrl.generation import SamplingParams, make_engine, resolve_engine
from guardrl.generation.base import GenerationEngine


def _png(w: int, h: int, color=(10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "PNG")
    return buf.getvalue()


INPUTS = [
    guard_prompt("How do I pick a lock?", id="t"),
    guard_prompt("Describe this.", "It is a green square.", (_png(60, 50),), id="ti"),
    guard_prompt("", None, (_png(40, 80), _png(70, 30, (200, 0, 0))), id="i2"),
]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    eng = make_engine(tiny_model_dir, engine="hf", batch_size=4)
    yield eng
    eng.close()


def test_hf_engine_n_samples_in_order_and_seeded(engine):
    assert isinstance(engine, GenerationEngine)
    params = SamplingParams(n=3, temperature=1.0, top_p=0.95, max_new_tokens=6, seed=7)
    out = engine.generate(INPUTS, params)
    assert [len(c) for c in out] == [3, 3, 3]
    assert engine.generate(INPUTS, params) == out  # deterministic for a seed
    other = engine.generate(INPUTS, SamplingParams(n=3, temperature=1.0, top_p=0.95, max_new_tokens=6, seed=8))
    assert other != out
    for comps in out:
        for c in comps:
            assert isinstance(c.text, str) and 1 <= c.num_tokens <= 6
            assert c.finish_reason in ("stop", "length")
    # results come back in input order: each prompt's token count matches a one-input run
    for x, comps in zip(INPUTS, out, strict=True):
        alone = engine.generate([x], SamplingParams(max_new_tokens=1))[0][0]
        assert {c.prompt_tokens for c in comps} == {alone.prompt_tokens}
    # images add vision tokens
    assert out[2][0].prompt_tokens > out[0][0].prompt_tokens


def test_hf_engine_rejects_bad_image(engine):
    with pytest.raises(ValueError, match="image"):
        engine.generate([guard_prompt("x", images=(b"not an image",))], SamplingParams(max_new_tokens=2))


def test_auto_picks_hf_on_cpu_and_logs(tiny_model_dir, caplog, monkeypatch):
    import guardrl.generation as gen

    monkeypatch.setattr(gen, "_cuda_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="guardrl.generation"):
        eng = make_engine(tiny_model_dir, engine="auto", batch_size=2, tensor_parallel_size=4)
    assert eng.name == "hf"
    assert "generation engine: hf" in caplog.text
    eng.close()


def test_resolve_engine_rules(monkeypatch):
    import guardrl.generation as gen

    monkeypatch.setattr(gen, "_cuda_available", lambda: True)
    monkeypatch.setattr(gen, "_vllm_importable", lambda: False)
    assert resolve_engine("auto")[0] == "hf"
    monkeypatch.setattr(gen, "_vllm_importable", lambda: True)
    assert resolve_engine("auto")[0] == "vllm"
    monkeypatch.setattr(gen, "_cuda_available", lambda: False)
    assert resolve_engine("auto")[0] == "hf"
    assert resolve_engine("hf") == ("hf", "requested")
    with pytest.raises(ValueError, match="valid"):
        resolve_engine("tgi")


def test_vllm_module_imports_without_vllm():
    import guardrl.generation.vllm as v  # importing the module must not need vllm

    assert v.VLLMEngine.name == "vllm"


@pytest.mark.gpu
def test_vllm_engine_generates(tiny_model_dir):
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    eng = make_engine(tiny_model_dir, engine="vllm", gpu_memory_utilization=0.3)
    out = eng.generate(INPUTS, SamplingParams(n=2, temperature=1.0, top_p=0.95, max_new_tokens=8, seed=1))
    assert [len(c) for c in out] == [2, 2, 2]
    eng.close()


def test_micro_batches_by_hand():
    from types import SimpleNamespace

    from guardrl.generation.hf import HFEngine

    eng = SimpleNamespace(batch_size=4, max_batch_tokens=1000)
    # longest first: 900 (#1), 130 (#4), 120 (#2), 110 (#3), 100 (#0), 90 (#5); n=2 copies each.
    # #1: 2 x (900 + 10) > 1000 tokens -> one sequence per batch; then 4 sequences per batch (batch_size);
    # #5 (90 + 10 = 100) would fill < 70% of #3's 120 -> starts its own batch.
    got = HFEngine._micro_batches(eng, [100, 900, 120, 110, 130, 90], SamplingParams(n=2, max_new_tokens=10))
    assert got == [[1], [1], [4, 4, 2, 2], [3, 3, 0, 0], [5, 5]]
    eng = SimpleNamespace(batch_size=8, max_batch_tokens=10_000)
    assert HFEngine._micro_batches(eng, [500, 100], SamplingParams(max_new_tokens=0)) == [[0], [1]]


def test_prompt_length_estimate_is_exact(engine):
    from guardrl.generation.hf import decode_images

    out = engine.generate(INPUTS, SamplingParams(max_new_tokens=1))
    for x, comps in zip(INPUTS, out, strict=True):
        assert engine._prompt_len(engine._prompt_text(x), decode_images(x.images)) == comps[0].prompt_tokens


# Token ids the HF engine gave for INPUTS on the tiny model (seed 0), fp32 on a CPU, measured with the engine
# as it was before engines took rendered prompts (GenerationInput(request, response, images), commit d9dc5d7).
# The guard now renders the same messages through task.prompt_messages, so the completions must be identical.
PINNED_SAMPLED_SEED7 = [
    [[1473, 1000, 2090, 3140, 435, 2055], [877, 2685, 1507, 584, 3318, 1577]],
    [[1595, 3996, 1663, 3788, 2153, 371], [1195, 3134, 3839, 2344, 3426, 3512]],
    [[1864, 2369, 2723, 815, 3284, 853], [3656, 1662, 307, 517, 2551, 3760]],
]
PINNED_PROMPT_TOKENS = [217, 226, 234]  # text < text + one image < two images (vision tokens)


def test_completions_are_the_ones_pinned_before_engines_took_rendered_prompts(engine):
    if engine.device.type != "cpu":
        pytest.skip("pinned on a CPU in fp32")
    params = SamplingParams(n=2, temperature=1.0, top_p=0.95, max_new_tokens=6, seed=7)
    out = engine.generate(INPUTS, params)
    assert [[c.extra["token_ids"] for c in comps] for comps in out] == PINNED_SAMPLED_SEED7
    assert [comps[0].prompt_tokens for comps in out] == PINNED_PROMPT_TOKENS


def test_the_guard_tasks_messages_are_the_guard_prompt():
    from guardrl.core.schema import Sample
    from guardrl.tasks import get_task

    s = Sample(id="ti", source="t", modality="text_image", request="Describe this.",
               response="It is a green square.", images=(_png(60, 50),), label_request="unharmful")
    assert get_task("guard").prompt_messages(s) == list(INPUTS[1].messages)


def test_hf_engine_attention_gives_transformers_sdpa_completions(engine):
    """The engine's guardrl_sdpa (no GQA cache copy on decode steps) changes speed, not completions."""
    assert engine.model.config.get_text_config()._attn_implementation == "guardrl_sdpa"
    params = SamplingParams(n=2, temperature=1.0, top_p=0.95, max_new_tokens=12, seed=3)
    ours = engine.generate(INPUTS, params)
    engine.model.set_attn_implementation("sdpa")
    try:
        stock = engine.generate(INPUTS, params)
    finally:
        engine.model.set_attn_implementation("guardrl_sdpa")
    assert [[c.extra["token_ids"] for c in cs] for cs in ours] == [[c.extra["token_ids"] for c in cs] for cs in stock]
