"""``guardrl gateway``: an OpenAI-compatible chat proxy that judges both sides with the guard.

    caller (openai client) -> POST /v1/chat/completions -> gateway -> upstream VLM (vllm serve, ...)

For each chat completion the gateway (policy: :mod:`guardrl.stages.serve.policy`):

1. judges the request -- the text of every user message, joined by blank lines, and their images -- with
   the guard (in-process, micro-batched by :class:`guardrl.stages.serve.server.Batcher`);
2. blocks a harmful one: a normal ``chat.completion`` whose message is the policy's refusal and whose
   ``finish_reason`` is ``"content_filter"`` (HTTP 200, as OpenAI reports filtered content); or, with a
   rewriter, replaces the last user message's text by the rewrite and forwards that;
3. forwards the request (``stream`` off: the answer is held until judged) with the caller's
   ``Authorization`` header to ``--upstream`` (a base URL, e.g. ``http://127.0.0.1:8001/v1``);
4. judges each answer (``choices[i].message.content``) against the caller's original request and replaces a
   harmful one by the refusal (``finish_reason: "content_filter"``);
5. returns the upstream's completion with an extra field ``guardrl`` (the verdicts, the action, the rewrite)
   and the headers ``x-guardrl-request`` (``harmful`` | ``unharmful`` | ``unparsed`` | ``error`` |
   ``skipped``), ``x-guardrl-response`` (the same per choice, comma-separated; ``skipped`` when nothing was
   judged) and ``x-guardrl-action`` (``passed`` | ``blocked_request`` | ``blocked_response`` | ``rewritten``).
   With ``stream: true`` the judged answer is sent as server-sent events (one content chunk and one
   ``finish_reason`` chunk per choice, the usage chunk when ``stream_options.include_usage``, the
   ``guardrl`` field on the last chunk, then ``[DONE]``): the caller's stream starts once it is judged.

Errors are JSON ``{"error": {"code", "message", "type"}}``: 400 ``bad_json`` / ``bad_image`` /
``image_url_refused``, 413 ``body_too_large`` / ``image_too_large``, 415, 422 ``invalid_request``, an
upstream 4xx passed through as it came, 502 ``upstream_unavailable`` (connection refused or reset) /
``upstream_error`` (the upstream answered 5xx or not a completion), 503 ``overloaded`` (no slot within
``queue_timeout_s``), 504 ``upstream_timeout``. ``GET /health``, ``GET /metrics`` (Prometheus),
``GET /v1/models`` (the upstream's).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import Request  # module level: FastAPI resolves the endpoint's annotations here

from guardrl.stages.serve.api import guard_prompt
from guardrl.stages.serve.gateway_metrics import GatewayMetrics
from guardrl.stages.serve.openai_moderation import ModerationOptions, image_part_bytes
from guardrl.stages.serve.policy import GatewayPolicy
from guardrl.stages.serve.rewriter import ChatRewriter, RewriteError
from guardrl.stages.serve.server import Batcher, HTTPError, ServeLimits, read_json_body

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Judged:
    """One side's judgement: ``status`` is ``harmful`` | ``unharmful`` | ``unparsed`` | ``error`` | ``skipped``."""

    status: str
    reasoning: str = ""
    detail: str = ""

    @property
    def label(self) -> str | None:
        """``harmful`` / ``unharmful``, or ``None`` when the guard gave no verdict."""
        return self.status if self.status in ("harmful", "unharmful") else None


SKIPPED = Judged("skipped")


def error_response(exc: HTTPError):
    from fastapi.responses import JSONResponse

    kind = "invalid_request_error" if exc.status < 500 else "server_error"
    return JSONResponse(status_code=exc.status,
                        content={"error": {"code": exc.code, "message": exc.message, "type": kind}})


def check_chat(doc: Any) -> dict[str, Any]:
    """A chat completion request, checked as far as the gateway reads it. Raises :class:`HTTPError` (422)."""
    if not isinstance(doc, dict):
        raise HTTPError(422, "invalid_request", "body must be a JSON object")
    messages = doc.get("messages")
    if not isinstance(messages, list) or not messages:
        raise HTTPError(422, "invalid_request", "'messages' must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise HTTPError(422, "invalid_request", f"messages[{i}] must be an object with a string 'role'")
        content = m.get("content")
        if content is not None and not isinstance(content, str | list):
            raise HTTPError(422, "invalid_request", f"messages[{i}].content must be a string or a list of parts")
        if isinstance(content, list) and not all(isinstance(p, dict) for p in content):
            raise HTTPError(422, "invalid_request", f"messages[{i}].content parts must be objects")
    if not any(m["role"] == "user" for m in messages):
        raise HTTPError(422, "invalid_request", "no user message to answer")
    if "model" in doc and not isinstance(doc["model"], str):
        raise HTTPError(422, "invalid_request", "'model' must be a string")
    return doc


def user_parts(doc: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The text of every user message (joined by blank lines) and their image parts, in order."""
    texts, images = [], []
    for m in doc["messages"]:
        if m["role"] != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for p in content or []:
            if p.get("type") == "text" and isinstance(p.get("text"), str):
                texts.append(p["text"])
            elif p.get("type") == "image_url":
                images.append(p)
    return "\n\n".join(t for t in texts if t), images


def with_rewritten_request(doc: dict[str, Any], text: str) -> dict[str, Any]:
    """``doc`` with the last user message's text replaced by ``text`` (its images kept)."""
    messages = [dict(m) for m in doc["messages"]]
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    content = messages[last].get("content")
    if isinstance(content, list):
        kept = [p for p in content if p.get("type") != "text"]
        messages[last]["content"] = [*kept, {"type": "text", "text": text}]
    else:
        messages[last]["content"] = text
    return {**doc, "messages": messages}


def refusal_completion(doc: dict[str, Any], refusal: str) -> dict[str, Any]:
    """A ``chat.completion`` that refuses (the request side blocked, nothing was forwarded)."""
    return {"id": f"chatcmpl-guardrl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": doc.get("model") or "guardrl-gateway",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": refusal}, "logprobs": None,
                         "finish_reason": "content_filter"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}


def sse_events(completion: dict[str, Any], include_usage: bool):
    """The server-sent events of a judged completion (see the module docstring)."""
    head = {"id": completion.get("id"), "object": "chat.completion.chunk", "created": completion.get("created"),
            "model": completion.get("model")}
    chunks = []
    for c in completion.get("choices", []):
        msg = c.get("message") or {}
        delta = {"role": "assistant", "content": msg.get("content") or ""}
        chunks.append({**head, "choices": [{"index": c.get("index", 0), "delta": delta, "finish_reason": None}]})
        chunks.append({**head, "choices": [{"index": c.get("index", 0), "delta": {},
                                             "finish_reason": c.get("finish_reason")}]})
    if include_usage:
        chunks.append({**head, "choices": [], "usage": completion.get("usage")})
    chunks[-1]["guardrl"] = completion.get("guardrl")
    for chunk in chunks:
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


class Gateway:
    """The gateway's state: guard batcher, upstream client, policy, rewriter and metrics."""

    def __init__(self, guard: Any, upstream: str, policy: GatewayPolicy, rewriter: ChatRewriter | None = None):
        if policy.needs_rewriter and rewriter is None:
            raise ValueError("the policy rewrites requests (harmful_request: rewrite or rewrite_all) but no "
                             "rewriter is given (--rewriter URL)")
        self.guard, self.upstream, self.policy, self.rewriter = guard, upstream.rstrip("/"), policy, rewriter
        self.limits = ServeLimits(max_body_bytes=int(policy.max_body_mb * (1 << 20)), max_images=policy.max_images,
                                  timeout_s=policy.guard_timeout_s, max_queue=1 << 20)
        self.images = ModerationOptions(allow_image_urls=policy.fetch_image_urls)
        self.batcher = Batcher(guard, self.limits)
        self.metrics = GatewayMetrics()
        self.client: Any = None
        self.slots: asyncio.Semaphore | None = None

    async def start(self) -> None:
        import httpx

        self.batcher.start()
        self.slots = asyncio.Semaphore(self.policy.max_concurrency)
        limits = httpx.Limits(max_connections=self.policy.max_concurrency,
                              max_keepalive_connections=self.policy.max_concurrency)
        self.client = httpx.AsyncClient(limits=limits, timeout=self.policy.upstream_timeout_s)

    async def stop(self) -> None:
        await self.client.aclose()
        await self.batcher.stop()

    async def judge(self, side: str, request: str, response: str | None, images: tuple[bytes, ...]) -> Judged:
        """The guard's verdict on one side; never raises (a failure is ``error``, an unparsable answer
        ``unparsed``)."""
        with self.metrics.stage(f"judge_{side}"):
            try:
                m = await self.batcher.submit(guard_prompt(request, response, images, side, self.guard.task.name))
            except HTTPError as exc:  # guard timeout / overload, prompt too long for the guard
                self.metrics.guard_errors.labels(side).inc()
                return Judged("error", detail=f"{exc.code}: {exc.message}")
            except Exception as exc:  # the engine failed: a guard error, the policy decides
                log.exception("guard failed on the %s side", side)
                self.metrics.guard_errors.labels(side).inc()
                return Judged("error", detail=f"{type(exc).__name__}: {exc}")
        label = m.request if side == "request" else m.response
        if not m.format_ok or label not in ("harmful", "unharmful"):
            self.metrics.guard_errors.labels(side).inc()
            return Judged("unparsed", m.reasoning, detail=m.raw[:300])
        return Judged(label, m.reasoning)

    async def call_upstream(self, doc: dict[str, Any], auth: str | None) -> dict[str, Any]:
        """The upstream's completion (``stream`` off). Raises :class:`HTTPError` (502 / 504, an upstream 4xx
        as :class:`PassThrough`)."""
        import httpx

        body = {k: v for k, v in doc.items() if k not in ("stream", "stream_options")}
        headers = {"Authorization": auth} if auth else {}
        with self.metrics.stage("upstream"):
            try:
                r = await self.client.post(f"{self.upstream}/chat/completions", json=body, headers=headers)
            except httpx.TimeoutException as exc:
                self.metrics.upstream_errors.labels("upstream_timeout").inc()
                raise HTTPError(504, "upstream_timeout", f"upstream {self.upstream} gave no answer within "
                                f"{self.policy.upstream_timeout_s:g}s") from exc
            except httpx.HTTPError as exc:
                self.metrics.upstream_errors.labels("upstream_unavailable").inc()
                raise HTTPError(502, "upstream_unavailable",
                                f"upstream {self.upstream} unreachable: {type(exc).__name__}: {exc}") from exc
        if 400 <= r.status_code < 500:
            raise PassThrough(r.status_code, r.content, r.headers.get("content-type", "application/json"))
        try:
            answer = r.json() if r.status_code == 200 else None
            ok = isinstance(answer, dict) and isinstance(answer.get("choices"), list)
        except ValueError:
            ok = False
        if not ok:
            self.metrics.upstream_errors.labels("upstream_error").inc()
            raise HTTPError(502, "upstream_error", f"upstream {self.upstream} answered HTTP {r.status_code}, "
                            f"not a chat completion: {r.text[:300]}")
        return answer

    async def complete(self, doc: dict[str, Any], auth: str | None) -> tuple[dict[str, Any], dict[str, str]]:
        """Judge, forward, judge: the completion to return and the verdict headers."""
        p = self.policy
        text, image_parts = user_parts(doc)
        if len(image_parts) > p.max_images:
            raise HTTPError(422, "invalid_request", f"{len(image_parts)} images; the limit is {p.max_images}")
        if len(text) > self.limits.max_text_chars:
            raise HTTPError(422, "invalid_request", f"the user text has {len(text):,} characters; the guard "
                            f"judges at most {self.limits.max_text_chars:,}")
        images = tuple([await image_part_bytes(part, i, self.limits, self.images)
                        for i, part in enumerate(image_parts)])
        if not text.strip() and not images:
            raise HTTPError(422, "invalid_request", "the user messages have no text and no image")
        report: dict[str, Any] = {"request": None, "rewritten_request": None, "rewritten": None, "response": []}
        req = await self.judge("request", text, None, images) if p.judge_request else SKIPPED
        report["request"] = asdict(req)
        action = p.request_action(req.label)
        if action == "rewrite":
            action, doc = await self._rewrite(doc, text, image_parts, images, report)
        if action == "block":
            self.metrics.blocked.labels("request").inc()
            out = refusal_completion(doc, p.refusal)
            report["action"] = "blocked_request"
            return {**out, "guardrl": report}, self._headers(req, [], "blocked_request")
        answer = await self.call_upstream(doc, auth)
        verdicts = []
        for choice in answer["choices"]:
            content = (choice.get("message") or {}).get("content") if isinstance(choice, dict) else None
            if p.judge_response and isinstance(content, str) and content.strip():
                v = await self.judge("response", text, content, images)
            else:
                v = SKIPPED
            verdicts.append(v)
            if v.status != "skipped" and p.answer_blocked(v.label):
                choice["message"] = {"role": "assistant", "content": p.refusal}
                choice["finish_reason"] = "content_filter"
        report["response"] = [asdict(v) for v in verdicts]
        blocked = any(v.status != "skipped" and p.answer_blocked(v.label) for v in verdicts)
        if blocked:
            self.metrics.blocked.labels("response").inc()
        action = "blocked_response" if blocked else "rewritten" if report["rewritten_request"] else "passed"
        report["action"] = action
        return {**answer, "guardrl": report}, self._headers(req, verdicts, action)

    async def _rewrite(self, doc, text, image_parts, images, report) -> tuple[str, dict[str, Any]]:
        p = self.policy
        urls = [(part.get("image_url") or {}).get("url", "") for part in image_parts]
        with self.metrics.stage("rewrite"):
            try:
                new = await self.rewriter.rewrite(self.client, text, urls, timeout=p.upstream_timeout_s)
            except RewriteError as exc:
                self.metrics.guard_errors.labels("rewrite").inc()
                report["rewritten"] = {"status": "error", "reasoning": "", "detail": str(exc)}
                return ("block" if p.fail_closed else "forward"), doc
        self.metrics.rewritten.inc()
        report["rewritten_request"] = new
        again = await self.judge("request", new, None, images) if p.judge_request else SKIPPED
        report["rewritten"] = asdict(again)
        return p.rewritten_action(again.label), with_rewritten_request(doc, new)

    @staticmethod
    def _headers(req: Judged, verdicts: list[Judged], action: str) -> dict[str, str]:
        return {"x-guardrl-request": req.status,
                "x-guardrl-response": ",".join(v.status for v in verdicts) or "skipped",
                "x-guardrl-action": action}


class PassThrough(Exception):
    """An upstream 4xx, returned to the caller as it came."""

    def __init__(self, status: int, content: bytes, media_type: str) -> None:
        super().__init__(status)
        self.status, self.content, self.media_type = status, content, media_type


def create_gateway_app(guard: Any, upstream: str, policy: GatewayPolicy | None = None,
                       rewriter: ChatRewriter | None = None):
    """The gateway's FastAPI application (``guard``: a :class:`guardrl.stages.serve.api.Guard`)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    gw = Gateway(guard, upstream, policy or GatewayPolicy(), rewriter)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        await gw.start()
        yield
        await gw.stop()

    app = FastAPI(title="guardrl gateway", lifespan=lifespan)
    app.state.gateway = gw

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req, exc: StarletteHTTPException):
        return error_response(HTTPError(exc.status_code, "http_error", str(exc.detail)))

    async def handle(request: Request):
        body = await read_json_body(request, gw.limits.max_body_bytes)
        try:
            doc = check_chat(json.loads(body.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HTTPError(400, "bad_json", f"body is not valid JSON: {exc}") from exc
        try:
            await asyncio.wait_for(gw.slots.acquire(), timeout=gw.policy.queue_timeout_s)
        except TimeoutError as exc:
            raise HTTPError(503, "overloaded", f"all {gw.policy.max_concurrency} slots busy for "
                            f"{gw.policy.queue_timeout_s:g}s; retry later") from exc
        try:
            completion, headers = await gw.complete(doc, request.headers.get("authorization"))
        finally:
            gw.slots.release()
        if doc.get("stream"):
            usage = bool((doc.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(sse_events(completion, usage), media_type="text/event-stream", headers=headers)
        return JSONResponse(completion, headers=headers)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        with gw.metrics.stage("total"):
            try:
                response = await handle(request)
            except HTTPError as exc:
                response = error_response(exc)
            except PassThrough as exc:
                response = Response(exc.content, status_code=exc.status, media_type=exc.media_type)
            except Exception as exc:  # a bug: still a JSON answer, counted
                log.exception("gateway internal error")
                response = error_response(HTTPError(500, "internal", f"{type(exc).__name__}: {exc}"))
        gw.metrics.requests.labels(str(response.status_code)).inc()
        return response

    @app.get("/v1/models")
    async def models(request: Request):
        auth = request.headers.get("authorization")
        try:
            r = await gw.client.get(f"{gw.upstream}/models", headers={"Authorization": auth} if auth else {})
        except Exception as exc:
            return error_response(HTTPError(502, "upstream_unavailable", f"upstream {gw.upstream}: {exc}"))
        return Response(r.content, status_code=r.status_code, media_type=r.headers.get("content-type"))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "guard": guard.model_path, "upstream": gw.upstream, "policy": asdict(gw.policy),
                "rewriter": asdict(rewriter) | {"api_key": None} if rewriter else None}

    @app.get("/metrics")
    async def metrics():
        body, ctype = gw.metrics.render()
        return Response(body, media_type=ctype)

    return app


def run_gateway(guard: Any, upstream: str, policy: GatewayPolicy, rewriter: ChatRewriter | None = None,
                host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the gateway until interrupted (uvicorn, one process)."""
    import uvicorn

    app = create_gateway_app(guard, upstream, policy, rewriter)
    log.info("guardrl gateway: guard %s, upstream %s, on http://%s:%d", guard.model_path, upstream, host, port)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info", timeout_keep_alive=30)).run()
