"""OpenAI request / response shapes read and written by the serving modules, without a model: moderation
inputs and results (openai_moderation.py), chat requests -> engine prompts (chat_server.py)."""

from __future__ import annotations

import asyncio
import base64
import io

import pytest
from PIL import Image

from guardrl.stages.serve.api import Moderation
from guardrl.stages.serve.chat_server import ChatLimits, to_prompt
from guardrl.stages.serve.openai_moderation import (
    GUARD_CATEGORY,
    OPENAI_CATEGORIES,
    ModerationOptions,
    moderation_result,
    parse_moderation_input,
)
from guardrl.stages.serve.server import HTTPError, ServeLimits


def _url(w=30, h=20) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (9, 9, 9)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _parse(doc):
    return asyncio.run(parse_moderation_input(doc, ServeLimits(max_images=2), ModerationOptions()))


def test_moderation_inputs():
    assert _parse({"input": "a"}) == [("a", (), ["text"])]
    assert [x[0] for x in _parse({"input": ["a", "b"], "model": "omni-moderation-latest"})] == ["a", "b"]
    (text, images, kinds), = _parse({"input": [{"type": "text", "text": "a"}, {"type": "image_url",
                                                                              "image_url": {"url": _url()}},
                                               {"type": "text", "text": "b"}]})
    assert text == "a\nb" and len(images) == 1 and images[0][:4] == b"\x89PNG" and kinds == ["text", "image"]
    with pytest.raises(HTTPError, match="remote image URLs are refused") as err:
        _parse({"input": [{"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}]})
    assert err.value.status == 400 and err.value.code == "image_url_refused"
    with pytest.raises(HTTPError, match="data: or http"):
        _parse({"input": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]})


def _m(request, format_ok=True):
    return Moderation(request=request, response=None, reasoning="r", format_ok=format_ok, output_tokens=3,
                      prompt_tokens=9, finish_reason="stop", raw="")


def test_moderation_result_of_a_binary_guard():
    harmful = moderation_result(_m("harmful"), ["text"], ModerationOptions())
    assert harmful["flagged"] is True and harmful["categories"][GUARD_CATEGORY] is True
    assert [harmful["categories"][c] for c in OPENAI_CATEGORIES] == [False] * 13
    assert harmful["category_scores"][GUARD_CATEGORY] == 1.0 and harmful["category_applied_input_types"][
        "violence"] == ["text"]
    assert moderation_result(_m("unharmful"), ["text"], ModerationOptions())["flagged"] is False
    unparsed = _m(None, format_ok=False)
    assert moderation_result(unparsed, ["image"], ModerationOptions())["flagged"] is True  # fail closed
    assert moderation_result(unparsed, ["image"], ModerationOptions(flag_unparsed=False))["flagged"] is False
    assert moderation_result(unparsed, ["image"], ModerationOptions())["guardrl"]["verdict"] is None


def test_chat_request_to_engine_prompt():
    prompt, params = to_prompt({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": _url()}}, {"type": "text", "text": "hi"}]}],
        "max_tokens": 7, "temperature": 0, "n": 2, "seed": 3}, ChatLimits())
    assert prompt.messages == ({"role": "system", "content": [{"type": "text", "text": "s"}]},
                               {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]})
    assert len(prompt.images) == 1
    assert (params.max_new_tokens, params.temperature, params.n, params.seed) == (7, 0.0, 2, 3)
    _, default = to_prompt({"messages": [{"role": "user", "content": "x"}]}, ChatLimits(max_tokens=50))
    assert (default.max_new_tokens, default.temperature, default.top_p, default.n) == (50, 1.0, 1.0, 1)


@pytest.mark.parametrize(("doc", "phrase"), [
    ({"messages": []}, "non-empty list"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "role must be"),
    ({"messages": [{"role": "user", "content": 5}]}, "string or a list"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 10_000}, "max_tokens must be 1..256"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 9}, "n must be 1..4"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]},
     "only data: image URLs"),
])
def test_bad_chat_requests(doc, phrase):
    with pytest.raises(HTTPError, match=phrase):
        to_prompt(doc, ChatLimits())
