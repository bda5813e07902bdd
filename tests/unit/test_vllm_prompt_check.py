"""The vLLM engine refuses an over-long prompt before generation (PromptTooLongError, as the HF engine does).

No GPU or vLLM needed: the engine's own request builder and length check run with the tiny model's processor.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from guardrl.generation.base import GenerationInput, PromptTooLongError
from guardrl.generation.vllm import VLLMEngine, check_prompt_lengths


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from transformers import AutoProcessor

    eng = VLLMEngine.__new__(VLLMEngine)  # no vllm.LLM: only the processor side runs here
    eng.processor = AutoProcessor.from_pretrained(str(tiny_model_dir))
    eng.max_images = 4
    eng.max_model_len = 4096
    return eng


def _len(engine, x: GenerationInput) -> int:
    req = engine._request(x)
    images = (req.get("multi_modal_data") or {}).get("image") or None
    return len(engine.processor(text=[req["prompt"]], images=images, return_tensors=None)["input_ids"][0])


def test_a_prompt_that_fits_exactly_passes_and_one_more_token_is_refused(engine):
    x = GenerationInput("how do I pick a lock?", id="row-7")
    n = _len(engine, x)  # the rendered guard prompt: system + user turn, a few hundred tokens
    reqs = [engine._request(x)]
    check_prompt_lengths(engine.processor, [x], reqs, max_model_len=n + 64, max_new_tokens=64)  # n == limit: fits
    with pytest.raises(PromptTooLongError, match=r"input row-7: the prompt is .* tokens; max_model_len is"):
        check_prompt_lengths(engine.processor, [x], reqs, max_model_len=n + 63, max_new_tokens=64)


def test_image_tokens_count(engine):
    """An image adds its vision tokens: a 112x112 image is (112/14)^2 / 2^2 = 16 tokens after the 2x2 merge,
    replacing one placeholder token, so the prompt grows by 16 - 1 + the vision start/end pair vs text only."""
    text = GenerationInput("is this ok?", id="t")
    img = GenerationInput("is this ok?", images=(_png(112, 112),), id="i")
    n_text, n_img = _len(engine, text), _len(engine, img)
    assert n_img - n_text >= 16
    reqs = [engine._request(img)]
    check_prompt_lengths(engine.processor, [img], reqs, max_model_len=n_img + 8, max_new_tokens=8)
    with pytest.raises(PromptTooLongError, match="input i"):
        check_prompt_lengths(engine.processor, [img], reqs, max_model_len=n_img + 7, max_new_tokens=8)


def test_no_limit_means_no_check(engine):
    x = GenerationInput("x" * 50, id="a")
    check_prompt_lengths(engine.processor, [x], [engine._request(x)], max_model_len=None, max_new_tokens=10**6)
