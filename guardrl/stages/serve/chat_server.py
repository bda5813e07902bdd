"""``guardrl serve-chat MODEL``: a small OpenAI-compatible chat server for any HF VLM folder.

An upstream to put the gateway in front of where ``vllm serve`` is not at hand (this CPU machine, the
tests): the same engine interface as the rest of guardrl (:func:`guardrl.generation.make_engine`, HF
``generate`` by default), chat messages in, completions out. On GPUs point the gateway at ``vllm serve``.

Endpoints: ``POST /v1/chat/completions`` (``messages`` with string or part contents, ``image_url`` parts as
``data:`` URLs; ``max_tokens`` / ``max_completion_tokens``, ``temperature`` (default 1.0), ``top_p``, ``n``,
``seed``, ``stream``), ``GET /v1/models``, ``GET /health``. Requests waiting together with the same sampling
settings run as one batched generation on one engine thread. A prompt that does not fit the model is a 400
``prompt_too_long`` (as vLLM answers), never truncated; other errors as the gateway's
(:mod:`guardrl.stages.serve.gateway`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi import Request  # module level: FastAPI resolves the endpoint's annotations here

from guardrl.core.schema import SchemaError
from guardrl.generation.base import Prompt, PromptTooLongError, SamplingParams
from guardrl.stages.serve.gateway import error_response, sse_events
from guardrl.stages.serve.server import HTTPError, ServeLimits, decode_image_field, read_json_body

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatLimits:
    """Limits of the chat server (each a ``guardrl serve-chat`` option).

    Attributes:
        max_tokens: the largest ``max_tokens`` a request may ask for (and the default).
        max_n: most completions per request.
        max_batch: requests per batched generation.
        batch_wait_ms: how long the first waiting request waits for others to batch with.
        request: body, image and text limits (:class:`guardrl.stages.serve.server.ServeLimits`; its ``timeout_s`` too).
    """

    max_tokens: int = 256
    max_n: int = 4
    max_batch: int = 16
    batch_wait_ms: float = 5.0
    request: ServeLimits = ServeLimits()


def to_prompt(doc: Any, limits: ChatLimits) -> tuple[Prompt, SamplingParams]:
    """An OpenAI chat request -> the engine's prompt (HF content-list messages + image bytes) and sampling.

    Raises:
        HTTPError: 422 for a bad field, 400 for a bad image or a remote image URL.
    """
    if not isinstance(doc, dict):
        raise HTTPError(422, "invalid_request", "body must be a JSON object")
    messages, images = [], []
    raw = doc.get("messages")
    if not isinstance(raw, list) or not raw:
        raise HTTPError(422, "invalid_request", "'messages' must be a non-empty list")
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise HTTPError(422, "invalid_request", f"messages[{i}]: role must be system, user or assistant")
        content = m.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise HTTPError(422, "invalid_request", f"messages[{i}].content must be a string or a list of parts")
        items = []
        for j, p in enumerate(parts):
            kind = p.get("type") if isinstance(p, dict) else None
            if kind == "text" and isinstance(p.get("text"), str):
                items.append({"type": "text", "text": p["text"]})
            elif kind == "image_url":
                url = (p.get("image_url") or {}).get("url") if isinstance(p.get("image_url"), dict) else None
                if not isinstance(url, str) or not url.startswith("data:"):
                    raise HTTPError(400, "image_url_refused", f"messages[{i}].content[{j}]: only data: image URLs")
                if len(images) >= limits.request.max_images:
                    raise HTTPError(422, "invalid_request", f"more than {limits.request.max_images} images")
                images.append(decode_image_field(url, len(images), limits.request))
                items.append({"type": "image"})
            else:
                raise HTTPError(422, "invalid_request", f"messages[{i}].content[{j}]: a text or image_url part")
        messages.append({"role": m["role"], "content": items})
    max_tokens = doc.get("max_completion_tokens", doc.get("max_tokens")) or limits.max_tokens
    n, temperature, top_p, seed = doc.get("n") or 1, doc.get("temperature"), doc.get("top_p"), doc.get("seed")
    checks = [(isinstance(max_tokens, int) and 1 <= max_tokens <= limits.max_tokens,
               f"max_tokens must be 1..{limits.max_tokens}"),
              (isinstance(n, int) and 1 <= n <= limits.max_n, f"n must be 1..{limits.max_n}"),
              (temperature is None or (isinstance(temperature, int | float) and 0 <= temperature <= 2),
               "temperature must be in [0, 2]"),
              (top_p is None or (isinstance(top_p, int | float) and 0 < top_p <= 1), "top_p must be in (0, 1]"),
              (seed is None or isinstance(seed, int), "seed must be an integer")]
    for ok, message in checks:
        if not ok:
            raise HTTPError(422, "invalid_request", message)
    params = SamplingParams(n=n, temperature=1.0 if temperature is None else float(temperature),
                            top_p=1.0 if top_p is None else float(top_p), max_new_tokens=max_tokens,
                            seed=0 if seed is None else seed)
    return Prompt(tuple(messages), tuple(images), id=str(uuid.uuid4().hex[:8])), params


class ChatBatcher:
    """Runs waiting requests with the same sampling settings as one batched generation, on one thread."""

    def __init__(self, engine: Any, limits: ChatLimits) -> None:
        self.engine, self.limits = engine, limits
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guardrl-chat")
        self.pending: list[tuple[Prompt, SamplingParams, asyncio.Future]] = []
        self.wakeup: asyncio.Event | None = None
        self.task: asyncio.Task | None = None
        self.batches = 0

    def start(self) -> None:
        self.wakeup = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.pool.shutdown(wait=True, cancel_futures=True)

    async def submit(self, prompt: Prompt, params: SamplingParams):
        fut = asyncio.get_running_loop().create_future()
        self.pending.append((prompt, params, fut))
        self.wakeup.set()
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout=self.limits.request.timeout_s)
        except TimeoutError as exc:
            fut.cancel()
            raise HTTPError(504, "timeout", f"no answer within {self.limits.request.timeout_s:g}s") from exc
        except PromptTooLongError as exc:
            raise HTTPError(400, "prompt_too_long", str(exc)) from exc
        except SchemaError as exc:
            raise HTTPError(422, "invalid_request", str(exc)) from exc

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wakeup.wait()
            await asyncio.sleep(self.limits.batch_wait_ms / 1000)
            self.pending = [x for x in self.pending if not x[2].done()]
            if not self.pending:
                self.wakeup.clear()
                continue
            params = self.pending[0][1]
            batch = [x for x in self.pending if x[1] == params][: self.limits.max_batch]
            self.pending = [x for x in self.pending if all(x is not b for b in batch)]
            results = await loop.run_in_executor(self.pool, self._isolating, [p for p, _, _ in batch], params)
            for (_, _, fut), r in zip(batch, results, strict=True):
                if not fut.done():
                    (fut.set_exception if isinstance(r, BaseException) else fut.set_result)(r)

    def _isolating(self, prompts: list[Prompt], params: SamplingParams) -> list[Any]:
        """Generate; an input the engine refuses (too long, bad image) fails alone (bisection)."""
        try:
            out = list(self.engine.generate(prompts, params))
            self.batches += 1
            return out
        except SchemaError as exc:
            if len(prompts) == 1:
                return [exc]
            mid = len(prompts) // 2
            return self._isolating(prompts[:mid], params) + self._isolating(prompts[mid:], params)
        except Exception as exc:  # engine failure: these requests fail, the server keeps serving
            log.exception("chat generation failed")
            return [exc] * len(prompts)


def create_chat_app(engine: Any, model_name: str, limits: ChatLimits | None = None, api_key: str | None = None):
    """The chat server's FastAPI application over ``engine`` (a :class:`~guardrl.generation.GenerationEngine`).

    ``api_key``: when set, ``/v1/...`` requests must send ``Authorization: Bearer <api_key>`` (else 401), as
    ``vllm serve --api-key`` does.
    """
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    limits = limits or ChatLimits()
    batcher = ChatBatcher(engine, limits)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="guardrl serve-chat", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req, exc: StarletteHTTPException):
        return error_response(HTTPError(exc.status_code, "http_error", str(exc.detail)))

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if api_key and request.url.path.startswith("/v1/") and \
                request.headers.get("authorization") != f"Bearer {api_key}":
            return error_response(HTTPError(401, "invalid_api_key", "missing or wrong API key"))
        return await call_next(request)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        try:
            body = await read_json_body(request, limits.request.max_body_bytes)
            try:
                doc = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise HTTPError(400, "bad_json", f"body is not valid JSON: {exc}") from exc
            prompt, params = await asyncio.get_running_loop().run_in_executor(None, to_prompt, doc, limits)
            completions = await batcher.submit(prompt, params)
        except HTTPError as exc:
            return error_response(exc)
        except Exception as exc:
            log.exception("chat request failed")
            return error_response(HTTPError(500, "internal", f"{type(exc).__name__}: {exc}"))
        used = sum(c.num_tokens for c in completions)
        prompt_tokens = completions[0].prompt_tokens if completions else 0
        out = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
               "model": model_name,
               "choices": [{"index": i, "message": {"role": "assistant", "content": c.text}, "logprobs": None,
                            "finish_reason": c.finish_reason} for i, c in enumerate(completions)],
               "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": used,
                         "total_tokens": prompt_tokens + used}}
        if doc.get("stream"):
            usage = bool((doc.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(sse_events(out, usage), media_type="text/event-stream")
        return JSONResponse(out)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                            "owned_by": "guardrl"}]}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name, "engine": getattr(engine, "name", "?"),
                "batches": batcher.batches}

    return app


def run_chat_server(engine: Any, model_name: str, limits: ChatLimits | None = None, host: str = "127.0.0.1",
                    port: int = 8001, api_key: str | None = None) -> None:
    """Run the chat server until interrupted (uvicorn, one process)."""
    import uvicorn

    log.info("guardrl serve-chat: %s on http://%s:%d/v1", model_name, host, port)
    uvicorn.Server(uvicorn.Config(create_chat_app(engine, model_name, limits, api_key), host=host, port=port,
                                  log_level="info", timeout_keep_alive=30)).run()
