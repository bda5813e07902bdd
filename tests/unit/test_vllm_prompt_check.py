"""The vLLM engine refuses an over-long prompt before generation (PromptTooLongError, as the HF engine does).

No GPU or vLLM needed: the engine's own request builder and its ``generate`` run with the tiny model's
processor; the length check comes before vLLM is imported or called, so an over-long input never reaches it.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from guardrl.generation.base import Prompt, PromptTooLongError, SamplingParams
from guardrl.generation.vllm import VLLMEngine
from guardrl.tasks.guard.prompts import build_messages


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def guard_prompt(request: str, images: tuple[bytes, ...] = (), id: str = "") -> Prompt:
    return Prompt(build_messages(request, None, num_images=len(images)), images, id)


class _NoLLM:
    def generate(self, *a, **k):  # reached only when every prompt fits
        raise AssertionError("vLLM was called with an over-long prompt")


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from transformers import AutoProcessor

    eng = VLLMEngine.__new__(VLLMEngine)  # no vllm.LLM: only the processor side runs here
    eng.processor = AutoProcessor.from_pretrained(str(tiny_model_dir))
    eng.max_images = 4
    eng.llm = _NoLLM()
    return eng


def _len(engine, x: Prompt) -> int:
    return engine._prompt(x, 0)[1]


def test_a_prompt_that_fits_exactly_passes_and_one_more_token_is_refused(engine):
    x = guard_prompt("how do I pick a lock?", id="row-7")
    n = _len(engine, x)  # the rendered guard prompt: system + user turn, a few hundred tokens
    engine.max_model_len = n + 63  # 64 new tokens do not fit: refused before vLLM is touched
    with pytest.raises(PromptTooLongError, match=r"input row-7: the prompt is .* tokens; the engine takes"):
        engine.generate([x], SamplingParams(n=1, max_new_tokens=64))
    engine.max_model_len = n + 64  # n + 64 == limit: fits, so the (stand-in) LLM is reached
    with pytest.raises((AssertionError, ImportError)):
        engine.generate([x], SamplingParams(n=1, max_new_tokens=64))


def test_image_tokens_count(engine):
    """An image adds its vision tokens: a 112x112 image is (112/14)^2 / 2^2 = 16 tokens after the 2x2 merge,
    replacing one placeholder token, so the prompt grows by at least 16 vs text only."""
    text = guard_prompt("is this ok?", id="t")
    img = guard_prompt("is this ok?", images=(_png(112, 112),), id="i")
    n_text, n_img = _len(engine, text), _len(engine, img)
    assert n_img - n_text >= 16
    engine.max_model_len = n_img + 7
    with pytest.raises(PromptTooLongError, match="input i"):
        engine.generate([text, img], SamplingParams(n=1, max_new_tokens=8))  # the text one fits, the image one not
