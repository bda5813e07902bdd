"""``guardrl serve`` over real HTTP on 127.0.0.1: good requests, limits, malformed input, 200 concurrent."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import sys
import time

import httpx
import pytest
from PIL import Image
from server_support import free_port, server_process, uvicorn_thread

from guardrl.tasks.guard.prompts import build_messages

MAX_PIXELS = 100_000
MAX_NEW = 6


def _b64_png(w: int, h: int, color=(10, 120, 200)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    port = free_port()
    cmd = [sys.executable, "-m", "guardrl.cli", "serve", str(tiny_model_dir), "--host", "127.0.0.1", "--port",
           str(port), "--engine", "hf", "--max-new-tokens", str(MAX_NEW), "--max-image-pixels", str(MAX_PIXELS),
           "--max-body-mb", "1", "--max-images", "2", "--timeout", "240", "--max-batch", "32", "--batch-size", "32"]
    base = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with server_process(cmd, f"{base}/health", log, env={**os.environ, "OMP_NUM_THREADS": "2"}):
        yield base


@pytest.fixture(scope="module")
def prompt_tokens(tiny_model_dir):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_model_dir)

    def count(text: str, response: str | None = None) -> int:
        rendered = proc.apply_chat_template(build_messages(text, response, 0), add_generation_prompt=True,
                                            tokenize=False)
        return len(proc.tokenizer(rendered)["input_ids"])

    return count


def _check_ok(body: dict, rid, n_prompt: int | None = None):
    assert body["id"] == rid
    assert body["request"] in ("harmful", "unharmful", None)
    assert body["response"] in ("harmful", "unharmful", None)
    assert isinstance(body["format_ok"], bool) and isinstance(body["reasoning"], str)
    assert 1 <= body["output_tokens"] <= MAX_NEW
    assert body["finish_reason"] in ("stop", "length")
    if not body["format_ok"]:
        assert body["request"] is None and body["harmful"] is None
    if n_prompt is not None:
        assert body["prompt_tokens"] == n_prompt


def test_good_requests(server, prompt_tokens):
    r = httpx.post(f"{server}/v1/moderate", json={"request": "How do I pick a lock?", "id": "a"}, timeout=120)
    assert r.status_code == 200, r.text
    _check_ok(r.json(), "a", prompt_tokens("How do I pick a lock?"))
    r = httpx.post(f"{server}/v1/moderate", json={"request": "q", "response": "an answer", "id": 7}, timeout=120)
    assert r.status_code == 200, r.text
    _check_ok(r.json(), 7, prompt_tokens("q", "an answer"))
    r = httpx.post(f"{server}/v1/moderate", json={"request": "what is this?", "images": [_b64_png(120, 90)]},
                   timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["prompt_tokens"] > prompt_tokens("what is this?")  # the image became vision tokens
    r = httpx.post(f"{server}/v1/moderate", json={"images": ["data:image/png;base64," + _b64_png(60, 60)]},
                   timeout=120)
    assert r.status_code == 200, r.text  # image-only request
    h = httpx.get(f"{server}/health").json()
    assert h["status"] == "ok" and h["engine"] == "hf"


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "phrase"),
    [
        ({"json": {"request": "x", "images": [_b64_png(1000, 1000)]}}, 413, "image_too_large", "1,000,000 pixels"),
        ({"content": b'{"request": "x",', "headers": {"content-type": "application/json"}}, 400, "bad_json", "JSON"),
        ({"content": b"\xff\xfe\x00", "headers": {"content-type": "application/json"}}, 400, "bad_json", "JSON"),
        ({"json": [1, 2]}, 422, "invalid_request", "object"),
        ({"json": {"request": 5}}, 422, "invalid_request", "'request' must be a string"),
        ({"json": {"request": "x", "extra": 1}}, 422, "invalid_request", "unknown field"),
        ({"json": {"request": "  "}}, 422, "invalid_request", "nothing to moderate"),
        ({"json": {"request": "x", "images": [_b64_png(8, 8)] * 3}}, 422, "invalid_request", "limit is 2"),
        ({"json": {"request": "x", "images": ["not base64!!"]}}, 400, "bad_image", "base64"),
        ({"json": {"request": "x", "images": [base64.b64encode(b"GIF89a broken").decode()]}}, 400, "bad_image",
         "image"),
        ({"json": {"request": "x" * 40_000}}, 422, "invalid_request", "characters"),
        ({"json": {"request": "word " * 6000}}, 413, "prompt_too_long", "positions"),  # > 4096 tokens
        ({"content": b"x" * (2 << 20), "headers": {"content-type": "application/json"}}, 413, "body_too_large",
         "limit"),
        ({"content": b"request=x", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media",
         "application/json"),
    ],
)
def test_bad_requests_get_clear_4xx(server, kwargs, status, code, phrase):
    r = httpx.post(f"{server}/v1/moderate", timeout=60, **kwargs)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and phrase in err["message"], err


def test_unknown_route_is_json_404(server):
    r = httpx.get(f"{server}/nope")
    assert r.status_code == 404 and "error" in r.json()


def test_200_concurrent_requests(server, prompt_tokens):
    big = _b64_png(800, 800)  # 640,000 pixels > limit

    def job(i: int):
        if i % 20 == 7:
            return {"content": b'{"request": ', "headers": {"content-type": "application/json"}}, (400, "bad_json")
        if i % 20 == 13:
            return {"json": {"request": "look", "images": [big], "id": i}}, (413, "image_too_large")
        if i % 50 == 17:  # batched with good requests: only this one fails
            return {"json": {"request": "word " * 6000, "id": i}}, (413, "prompt_too_long")
        text = f"request number {i} " + "word " * (i % 11)
        return {"json": {"request": text, "id": i}}, (200, prompt_tokens(text))

    jobs = [job(i) for i in range(200)]

    async def run():
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=300) as client:
            return await asyncio.gather(*(client.post(f"{server}/v1/moderate", **kw) for kw, _ in jobs))

    t0 = time.perf_counter()
    responses = asyncio.run(run())
    elapsed = time.perf_counter() - t0
    assert len(responses) == 200
    for i, ((_, expect), r) in enumerate(zip(jobs, responses, strict=True)):
        assert r.status_code < 500, (i, r.status_code, r.text)
        if expect[0] == 200:
            assert r.status_code == 200, (i, r.text)
            _check_ok(r.json(), i, expect[1])  # the answer belongs to this request
        else:
            assert (r.status_code, r.json()["error"]["code"]) == expect, (i, r.text)
    batches = httpx.get(f"{server}/health").json()["batches"]
    print(f"200 concurrent requests in {elapsed:.1f}s, {batches} batched generations so far")
    assert batches < 180  # requests were batched together


def test_timeout_is_a_json_504(tiny_model_dir):
    """A server whose timeout is shorter than any generation answers 504, in-process uvicorn on 127.0.0.1."""
    from guardrl.stages.serve.api import Guard
    from guardrl.stages.serve.server import ServeLimits, create_app

    guard = Guard.from_pretrained(tiny_model_dir, engine="hf", max_new_tokens=32)
    try:
        with uvicorn_thread(create_app(guard, ServeLimits(timeout_s=0.01))) as base:
            for _ in range(2):
                r = httpx.post(f"{base}/v1/moderate", json={"request": "slow please"}, timeout=60)
                assert r.status_code == 504 and r.json()["error"]["code"] == "timeout", r.text
    finally:
        guard.close()
