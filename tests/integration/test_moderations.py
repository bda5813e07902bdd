"""``POST /v1/moderations`` driven by the real ``openai`` client against ``guardrl serve``'s app on 127.0.0.1,
with the keyword guard judging (tests/integration/serving_models.py: harmful iff a text holds bomb, poison,
weapon or malware)."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image
from server_support import uvicorn_thread
from serving_models import keyword_guard

from guardrl.stages.serve.openai_moderation import GUARD_CATEGORY, OPENAI_CATEGORIES, ModerationOptions

openai = pytest.importorskip("openai", reason="the openai client is a [dev] dependency: pip install -e '.[dev]'")


def _png(w: int = 60, h: int = 50, color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "PNG")
    return buf.getvalue()


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


@pytest.fixture(scope="module")
def guard(keyword_guard_dir):
    g = keyword_guard(keyword_guard_dir)
    yield g
    g.close()


def _server(guard, **options):
    from guardrl.stages.serve.server import ServeLimits, create_app

    return uvicorn_thread(create_app(guard, ServeLimits(max_images=2, max_body_bytes=1 << 20),
                                     ModerationOptions(model_name="kw-guard", **options)))


@pytest.fixture(scope="module")
def base(guard):
    with _server(guard) as url:
        yield url


@pytest.fixture(scope="module")
def client(base):
    with openai.OpenAI(base_url=f"{base}/v1", api_key="unused", timeout=120, max_retries=0) as c:
        yield c


def _extra(result) -> dict:
    return result.model_extra["guardrl"]


def test_text_and_list_of_texts(client):
    r = client.moderations.create(model="omni-moderation-latest", input="how do I make a bomb")
    assert r.id.startswith("modr-") and r.model == "kw-guard" and len(r.results) == 1
    res = r.results[0]
    assert res.flagged is True and _extra(res)["verdict"] == "harmful" and _extra(res)["format_ok"] is True
    assert _extra(res)["reasoning"] == "I check the words."
    # a binary guard: every OpenAI category false / 0.0, the verdict in guardrl/harmful
    cats = res.categories.model_dump(by_alias=True, exclude_none=True)
    assert set(OPENAI_CATEGORIES) <= set(cats) and not any(cats[c] for c in OPENAI_CATEGORIES)
    assert cats[GUARD_CATEGORY] is True and res.category_scores.model_dump(by_alias=True)[GUARD_CATEGORY] == 1.0
    r = client.moderations.create(input=["tell me about a bread", "I want a poison today", "explain the music to me"])
    assert [x.flagged for x in r.results] == [False, True, False]  # one result per string, in order
    assert [_extra(x)["verdict"] for x in r.results] == ["unharmful", "harmful", "unharmful"]
    assert r.results[0].category_scores.model_dump(by_alias=True)[GUARD_CATEGORY] == 0.0


def test_image_and_mixed_parts_are_one_result(client):
    png = _png()
    text_only = client.moderations.create(input=[{"type": "text", "text": "tell me about a bread"}]).results[0]
    mixed = client.moderations.create(input=[{"type": "text", "text": "tell me about a bread"},
                                             {"type": "image_url", "image_url": {"url": _data_url(png)}}]).results[0]
    image_only = client.moderations.create(input=[{"type": "image_url",
                                                   "image_url": {"url": _data_url(png)}}]).results[0]
    types = lambda r: r.category_applied_input_types.model_dump(by_alias=True)[GUARD_CATEGORY]  # noqa: E731
    assert types(text_only) == ["text"] and types(mixed) == ["text", "image"] and types(image_only) == ["image"]
    # a 60x50 image is resized to 56x56 -> 4x4 patches of 14 -> 2x2 merged = 4 image tokens + start/end = 6
    assert _extra(mixed)["prompt_tokens"] - _extra(text_only)["prompt_tokens"] == 6
    for res in (text_only, mixed, image_only):  # flagged follows the verdict (fail closed when unparsed)
        ex = _extra(res)
        assert res.flagged is (ex["verdict"] == "harmful" or not ex["format_ok"]), ex
    assert text_only.flagged is False


@pytest.mark.parametrize(("body", "status", "phrase"), [
    ({"input": []}, 422, "'input' must be"),
    ({"input": ["a", {"type": "text", "text": "b"}]}, 422, "mixes strings and parts"),
    ({"input": ["x"] * 33}, 422, "the limit is 32"),
    ({"input": "  "}, 422, "nothing to moderate"),
    ({"input": [{"type": "audio"}]}, 422, "type must be 'text' or 'image_url'"),
    ({"input": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,!!"}}]}, 400, "base64"),
    ({"input": [{"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/x.png"}}]}, 400,
     "remote image URLs are refused"),
    ({"input": [{"type": "image_url", "image_url": {"url": _data_url(_png())}}] * 3}, 422, "the limit is 2"),
    ({"input": "x", "extra": 1}, 422, "unknown field"),
])
def test_bad_inputs_are_clear_4xx(client, body, status, phrase):
    with pytest.raises(openai.APIStatusError) as err:
        client.moderations.create(**body) if "extra" not in body else client.moderations.create(
            input=body["input"], extra_body={"extra": 1})
    assert err.value.status_code == status and phrase in err.value.body["message"], err.value.body


def test_remote_image_url_fetched_when_allowed(guard):
    """A real image server on 127.0.0.1: the fetched image is judged exactly like the same bytes in a data URL."""
    from fastapi import FastAPI
    from fastapi.responses import Response

    png = _png(80, 40, (0, 90, 200))
    images = FastAPI()
    images.get("/cat.png")(lambda: Response(png, media_type="image/png"))
    images.get("/big.png")(lambda: Response(b"\x89PNG" + b"0" * (2 << 20), media_type="image/png"))
    with uvicorn_thread(images) as image_host, _server(guard, allow_image_urls=True) as base, \
            openai.OpenAI(base_url=f"{base}/v1", api_key="k", timeout=120, max_retries=0) as c:
        fetched = c.moderations.create(input=[{"type": "image_url", "image_url": {"url": f"{image_host}/cat.png"}}])
        inline = c.moderations.create(input=[{"type": "image_url", "image_url": {"url": _data_url(png)}}])
        assert _extra(fetched.results[0]) == _extra(inline.results[0])  # same pixels, same greedy verdict
        with pytest.raises(openai.APIStatusError) as err:  # over the body limit (1 MiB) while fetching
            c.moderations.create(input=[{"type": "image_url", "image_url": {"url": f"{image_host}/big.png"}}])
        assert err.value.status_code == 413
        with pytest.raises(openai.BadRequestError, match="HTTP 404"):
            c.moderations.create(input=[{"type": "image_url", "image_url": {"url": f"{image_host}/none.png"}}])
    # the route shares the server with /v1/moderate
    with _server(guard) as base2:
        assert httpx.post(f"{base2}/v1/moderate", json={"request": "how do I make a bomb"}, timeout=60).status_code == 200
