"""``guardrl gateway`` on a real chain on 127.0.0.1: the ``openai`` client -> gateway (keyword guard judging)
-> the scripted VLM (tests/integration/serving_models.py), which is also the rewriter, served by
``guardrl serve-chat`` and, where vLLM is installed, by a real ``vllm serve`` (the tests that take ``upstream`` run
against both; the ``vllm-serve`` ones are marked ``vllm`` and skip, with the reason, without vLLM).

Every step is predictable: the guard calls a text harmful iff it holds bomb / poison / weapon / malware, and the
scripted VLM answers "tell me about a garden" with "here is how to use a poison" (a harmless request, a harmful
answer), rewrites "how do I make a bomb" to "how do I make a bread", and so on (``CHAT_SCRIPT``)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import socket
import sys
import threading

import httpx
import pytest
from server_support import VLLM_MISSING, free_port, server_process, uvicorn_thread, vllm_server
from serving_models import CHAT_SCRIPT, keyword_guard

from guardrl.stages.serve.policy import GatewayPolicy

openai = pytest.importorskip("openai", reason="the openai client is a [dev] dependency: pip install -e '.[dev]'")

KEY = "sk-test-key"
MODEL = "scripted"
REFUSAL = GatewayPolicy().refusal


def _chat_server_cmd(model_dir, port: int) -> list[str]:
    return [sys.executable, "-m", "guardrl.cli", "serve-chat", str(model_dir), "--port", str(port),
            "--served-model-name", MODEL, "--max-tokens", "24", "--max-batch", "32", "--batch-size", "32",
            "--api-key-env", "CHAT_KEY"]


@contextlib.contextmanager
def chat_server(model_dir, tmp_path, port: int | None = None):
    port = port or free_port()
    env = {**os.environ, "CHAT_KEY": KEY, "OMP_NUM_THREADS": "1"}
    with server_process(_chat_server_cmd(model_dir, port), f"http://127.0.0.1:{port}/health",
                        tmp_path / f"chat-{port}.log", env=env) as proc:
        yield f"http://127.0.0.1:{port}/v1", proc


@contextlib.contextmanager
def served_upstream(kind: str, model_dir, tmp_path):
    """The scripted VLM behind ``guardrl serve-chat`` or ``vllm serve`` (same name, same API key); yields its URL."""
    if kind == "vllm-serve":
        with vllm_server(model_dir, tmp_path / "vllm.log", MODEL, KEY) as url:
            yield url
    else:
        with chat_server(model_dir, tmp_path) as (url, _):
            yield url


VLLM_SERVE = pytest.param("vllm-serve", marks=[  # skipped at collection: no model is trained for it
    pytest.mark.vllm, pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason=VLLM_MISSING)])


@pytest.fixture(scope="module", params=["serve-chat", VLLM_SERVE])
def upstream(request, scripted_vlm_dir, tmp_path_factory):
    """The scripted VLM, served; every script line checked through the real server before a test relies on it
    (for ``vllm serve``: its greedy answers are the HF engine's, token for token)."""
    with served_upstream(request.param, scripted_vlm_dir, tmp_path_factory.mktemp("upstream")) as url, \
            openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=120) as c:
        for q, a in CHAT_SCRIPT.items():
            got = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": q}], max_tokens=24,
                                            temperature=0).choices[0].message.content
            assert got == a, (q, got)
        yield url


@pytest.fixture(scope="module")
def guard(keyword_guard_dir):
    g = keyword_guard(keyword_guard_dir, batch_size=32)
    yield g
    g.close()


@contextlib.contextmanager
def gateway(guard, upstream_url: str, rewriter=None, **policy):
    from guardrl.stages.serve.gateway import create_gateway_app

    app = create_gateway_app(guard, upstream_url, GatewayPolicy(**policy), rewriter)
    with uvicorn_thread(app) as base, openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0,
                                                    timeout=300) as client:
        yield base, client


def _ask(client, text: str, **kw):
    """A chat completion through the gateway: (headers, parsed completion)."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": text}], max_tokens=24, temperature=0, **kw)
    return raw.headers, raw.parse()


def _metric(base: str, name: str) -> float:
    """The sum of a Prometheus metric's samples (all labels) from the gateway's /metrics."""
    total = 0.0
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_passed_blocked_both_sides_and_rewritten(guard, upstream):
    with gateway(guard, upstream) as (base, client):
        h, r = _ask(client, "tell me about a bread")
        assert (h["x-guardrl-request"], h["x-guardrl-response"], h["x-guardrl-action"]) == (
            "unharmful", "unharmful", "passed")
        assert r.choices[0].message.content == "the bread is ready" and r.choices[0].finish_reason in ("stop", "length")
        assert r.model_extra["guardrl"]["action"] == "passed" and r.usage.completion_tokens > 0

        before = _metric(base, 'guardrl_gateway_stage_seconds_count{stage="upstream"}')
        h, r = _ask(client, "how do I make a bomb")
        assert (h["x-guardrl-request"], h["x-guardrl-response"], h["x-guardrl-action"]) == (
            "harmful", "skipped", "blocked_request")
        assert r.choices[0].message.content == REFUSAL and r.choices[0].finish_reason == "content_filter"
        assert r.model_extra["guardrl"]["request"]["reasoning"] == "I check the words."
        assert _metric(base, 'guardrl_gateway_stage_seconds_count{stage="upstream"}') == before  # not forwarded

        h, r = _ask(client, "tell me about a garden")  # harmless request, the upstream answers with a poison
        assert (h["x-guardrl-request"], h["x-guardrl-response"], h["x-guardrl-action"]) == (
            "unharmful", "harmful", "blocked_response")
        assert r.choices[0].message.content == REFUSAL and r.choices[0].finish_reason == "content_filter"
        assert _metric(base, "guardrl_gateway_blocked_total") == 2

    from guardrl.stages.serve.rewriter import ChatRewriter

    rewriter = ChatRewriter(upstream, MODEL, "tagged", max_tokens=24, api_key=KEY)
    with gateway(guard, upstream, rewriter, harmful_request="rewrite") as (base, client):
        h, r = _ask(client, "how do I make a bomb")
        g = r.model_extra["guardrl"]
        assert h["x-guardrl-action"] == "rewritten" and g["rewritten_request"] == "how do I make a bread"
        assert g["request"]["status"] == "harmful" and g["rewritten"]["status"] == "unharmful"
        assert r.choices[0].message.content == CHAT_SCRIPT["how do I make a bread"]
        assert _metric(base, "guardrl_gateway_rewritten_total") == 1


def test_streaming_holds_the_answer_until_judged(guard, upstream):
    with gateway(guard, upstream) as (_, client):
        for text, content, finish in (("tell me about a bread", "the bread is ready", None),
                                      ("tell me about a garden", REFUSAL, "content_filter"),
                                      ("how do I make a bomb", REFUSAL, "content_filter")):
            chunks = list(client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": text}], max_tokens=24, temperature=0, stream=True,
                stream_options={"include_usage": True}))
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == content
            finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
            assert len(finishes) == 1 and (finish is None or finishes[0] == finish)
            assert chunks[-1].usage is not None and "action" in chunks[-1].model_extra["guardrl"]


def test_api_key_is_passed_through(guard, upstream):
    with gateway(guard, upstream) as (base, _):
        bad = openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):  # the upstream's 401, as it came
            bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "tell me about a bread"}])
        bad.close()


@contextlib.contextmanager
def _silent_upstream():
    """A real TCP server on 127.0.0.1 that accepts connections and never answers (a hung upstream)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held, stop = [], threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(sock.accept()[0])

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        sock.close()


def test_upstream_killed_mid_test_then_back(guard, scripted_vlm_dir, tmp_path):
    port = free_port()
    with chat_server(scripted_vlm_dir, tmp_path, port) as (url, proc), gateway(guard, url) as (base, client):
        assert _ask(client, "tell me about a bread")[1].choices[0].message.content == "the bread is ready"
        proc.kill()
        proc.wait()
        with pytest.raises(openai.APIStatusError) as err:
            _ask(client, "tell me about a bread")
        assert err.value.status_code == 502 and err.value.body["code"] == "upstream_unavailable", err.value.body
        assert f"127.0.0.1:{port}" in err.value.body["message"]
        # the gateway keeps serving: health, a blocked request (no upstream needed), metrics
        assert httpx.get(f"{base}/health").json()["status"] == "ok"
        assert _ask(client, "how do I make a bomb")[0]["x-guardrl-action"] == "blocked_request"
        assert _metric(base, "guardrl_gateway_upstream_errors_total") == 1
        # the upstream comes back on the same port: traffic flows again through the same gateway
        env = {**os.environ, "CHAT_KEY": KEY, "OMP_NUM_THREADS": "1"}
        with server_process(_chat_server_cmd(scripted_vlm_dir, port), f"http://127.0.0.1:{port}/health",
                            tmp_path / "again.log", env=env):
            assert _ask(client, "tell me about a bread")[1].choices[0].message.content == "the bread is ready"
    with _silent_upstream() as hung, gateway(guard, hung, upstream_timeout_s=1.0) as (base, client):
        with pytest.raises(openai.APIStatusError) as err:
            _ask(client, "tell me about a bread")
        assert err.value.status_code == 504 and err.value.body["code"] == "upstream_timeout", err.value.body


def test_200_concurrent_requests_every_answer_checked(guard, upstream):
    """180 chat requests (passing, blocked on either side, unscripted) + 20 malformed and oversized at once."""
    max_body = 50_000  # bytes

    def job(i: int):
        if i % 20 == 7:
            return {"content": b'{"messages": [', "headers": {"content-type": "application/json"}}, (400, "bad_json")
        if i % 20 == 13:
            big = "word " * 12_000  # 60,000 bytes > max_body
            return {"json": {"model": MODEL, "messages": [{"role": "user", "content": big}]}}, (413, "body_too_large")
        if i % 50 == 19:
            return {"json": {"model": MODEL, "messages": "hi"}}, (422, "invalid_request")
        text = ("tell me about a bread", "how do I make a bomb", "tell me about a garden", f"I want a music {i}")[i % 4]
        body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 24, "temperature": 0}
        return {"json": body}, (200, text)

    jobs = [job(i) for i in range(200)]
    expected = {"tell me about a bread": ("passed", "the bread is ready"), "how do I make a bomb": (
        "blocked_request", REFUSAL), "tell me about a garden": ("blocked_response", REFUSAL)}

    async def run(base):
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=600, headers={"Authorization": f"Bearer {KEY}"}) as c:
            return await asyncio.gather(*(c.post(f"{base}/v1/chat/completions", **kw) for kw, _ in jobs))

    with gateway(guard, upstream, max_concurrency=32, queue_timeout_s=600, max_body_mb=max_body / (1 << 20)) as (
            base, _):
        responses = asyncio.run(run(base))
        assert len(responses) == 200
        for i, ((_, (status, what)), r) in enumerate(zip(jobs, responses, strict=True)):
            assert r.status_code == status, (i, r.status_code, r.text[:300])
            if status != 200:
                assert r.json()["error"]["code"] == what, (i, r.text[:300])
                continue
            body = r.json()
            action, content = r.headers["x-guardrl-action"], body["choices"][0]["message"]["content"]
            assert body["guardrl"]["action"] == action, i
            if what in expected:
                assert (action, content) == expected[what], (i, what, action, content)
            else:  # an unscripted request: whatever the guard and upstream said, the gateway acted on the verdicts
                no = ("harmful", "unparsed", "error")  # fail closed
                verdicts = r.headers["x-guardrl-response"].split(",")
                if r.headers["x-guardrl-request"] in no:
                    assert action == "blocked_request" and verdicts == ["skipped"], (i, r.headers)
                else:
                    assert action == ("blocked_response" if set(verdicts) & set(no) else "passed"), (i, r.headers)
                blocked = action != "passed"
                assert (content == REFUSAL) is blocked, (i, content)
                assert (body["choices"][0]["finish_reason"] == "content_filter") is blocked, i
        counts = {line.split("}")[0].split('"')[1]: float(line.rsplit(" ", 1)[1])
                  for line in httpx.get(f"{base}/metrics").text.splitlines()
                  if line.startswith("guardrl_gateway_requests_total{")}
        # nothing lost: every request counted once, by its status
        assert counts == {"200": 176.0, "400": 10.0, "413": 10.0, "422": 4.0}, counts
        print(json.dumps(counts))
