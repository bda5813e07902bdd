"""``guardrl serve``: an HTTP moderation endpoint (FastAPI + uvicorn) over the same engine as ``Guard``.

Endpoints::

    GET  /health        {"status": "ok", "model": ..., "engine": ...}
    POST /v1/moderations  OpenAI's moderation API (:mod:`guardrl.stages.serve.openai_moderation`)
    POST /v1/moderate   {"request": str, "response": str | null, "images": [base64 PNG/JPEG, ...], "id": any}
                        -> 200 {"id", "request", "response", "harmful", "format_ok", "reasoning",
                                "output_tokens", "prompt_tokens", "finish_reason"}

Requests are micro-batched: a background task collects up to ``max_batch`` waiting requests
(waiting at most ``batch_wait_ms`` after the first) and runs them as one batched generation on a
single worker thread, so concurrent clients share forward passes and the engine is never used
from two threads at once.

Limits and errors (always JSON ``{"error": {"code", "message"}}``; nothing a client sends
should produce a 500):

====  ====================  ====================================================================
400   ``bad_json``          body is not valid JSON (or not UTF-8)
400   ``bad_image``         an image that is not base64, not an image, or corrupt/truncated
413   ``body_too_large``    body over ``max_body_bytes`` (checked on Content-Length and while reading)
413   ``image_too_large``   an image over ``max_image_pixels`` (checked on the header, before decoding)
413   ``prompt_too_long``   the rendered prompt does not fit the model's positions (refused, never
                            truncated; only that request fails, not the others batched with it)
415   ``unsupported_media`` Content-Type is not application/json
422   ``invalid_request``   wrong fields or types, too many images, text over ``max_text_chars``,
                            nothing to moderate
503   ``overloaded``        more than ``max_queue`` requests waiting
504   ``timeout``           no answer within ``timeout_s``
====  ====================  ====================================================================
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi import Request  # module level: FastAPI resolves the endpoint's annotations here

from guardrl.core.schema import SchemaError
from guardrl.generation.base import Prompt, PromptTooLongError
from guardrl.stages.serve.api import Guard, guard_prompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeLimits:
    """Request limits of the server (each a ``guardrl serve`` option)."""

    max_body_bytes: int = 16 << 20
    max_images: int = 4
    max_image_pixels: int = 4_000_000
    max_text_chars: int = 32_000
    timeout_s: float = 60.0
    max_batch: int = 16
    batch_wait_ms: float = 5.0
    max_queue: int = 1024


class HTTPError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str):
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def decode_image_field(value: Any, index: int, limits: ServeLimits) -> bytes:
    """Base64 string -> validated image bytes; raises :class:`HTTPError` (400 / 413)."""
    from PIL import Image

    from guardrl.core.images import ImageError, prepare_image

    if not isinstance(value, str):
        raise HTTPError(422, "invalid_request", f"images[{index}] must be a base64 string")
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HTTPError(400, "bad_image", f"images[{index}] is not valid base64: {exc}") from exc
    try:
        with Image.open(io.BytesIO(data)) as img:  # header only
            w, h = img.size
    except Image.DecompressionBombError as exc:
        raise HTTPError(413, "image_too_large", f"images[{index}]: {exc}") from exc
    except Exception as exc:  # PIL raises several types for junk
        raise HTTPError(400, "bad_image", f"images[{index}] is not a readable image ({len(data)} bytes)") from exc
    if w * h > limits.max_image_pixels:
        raise HTTPError(413, "image_too_large",
                        f"images[{index}] is {w}x{h} = {w * h:,} pixels; the limit is {limits.max_image_pixels:,}")
    try:
        return prepare_image(data, where=f"images[{index}]", limit_pixels=limits.max_image_pixels)
    except ImageError as exc:
        raise HTTPError(400, "bad_image", str(exc)) from exc


def parse_request(body: bytes, limits: ServeLimits) -> tuple[Prompt, Any]:
    """Validate a request body; returns the engine input and the client's id. Raises :class:`HTTPError`."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPError(400, "bad_json", f"body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise HTTPError(422, "invalid_request", "body must be a JSON object")
    unknown = set(doc) - {"request", "response", "images", "id"}
    if unknown:
        raise HTTPError(422, "invalid_request", f"unknown field(s) {sorted(unknown)}; allowed: request, response, images, id")
    request = doc.get("request", "")
    response = doc.get("response")
    images = doc.get("images") or []
    if request is None:
        request = ""
    if not isinstance(request, str):
        raise HTTPError(422, "invalid_request", "'request' must be a string")
    if response is not None and not isinstance(response, str):
        raise HTTPError(422, "invalid_request", "'response' must be a string or null")
    for name, text in (("request", request), ("response", response or "")):
        if len(text) > limits.max_text_chars:
            raise HTTPError(422, "invalid_request",
                            f"'{name}' has {len(text):,} characters; the limit is {limits.max_text_chars:,}")
    if not isinstance(images, list):
        raise HTTPError(422, "invalid_request", "'images' must be a list of base64 strings")
    if len(images) > limits.max_images:
        raise HTTPError(422, "invalid_request", f"{len(images)} images; the limit is {limits.max_images}")
    decoded = tuple(decode_image_field(v, i, limits) for i, v in enumerate(images))
    if not request.strip() and not decoded:
        raise HTTPError(422, "invalid_request", "nothing to moderate: empty 'request' and no images")
    rid = doc.get("id")
    return guard_prompt(request, response, decoded, str(rid or "")), rid


class Batcher:
    """Collects waiting requests into batches and runs them on one worker thread."""

    def __init__(self, guard: Guard, limits: ServeLimits) -> None:
        self.guard = guard
        self.limits = limits
        self.queue: asyncio.Queue | None = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guardrl-engine")
        self.task: asyncio.Task | None = None
        self.batches = 0

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.pool.shutdown(wait=True, cancel_futures=True)

    async def submit(self, x: Prompt):
        assert self.queue is not None
        if self.queue.qsize() >= self.limits.max_queue:
            raise HTTPError(503, "overloaded", f"{self.queue.qsize()} requests waiting; retry later")
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((x, fut))
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout=self.limits.timeout_s)
        except TimeoutError as exc:
            fut.cancel()  # the batcher skips it if not started yet
            raise HTTPError(504, "timeout", f"no answer within {self.limits.timeout_s:g}s") from exc
        except PromptTooLongError as exc:
            raise HTTPError(413, "prompt_too_long", str(exc)) from exc
        except SchemaError as exc:  # an input the engine refuses (image, ...): the client's to fix
            raise HTTPError(422, "invalid_request", str(exc)) from exc

    async def _loop(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.limits.batch_wait_ms / 1000
            while len(batch) < self.limits.max_batch:
                timeout = deadline - loop.time()
                try:
                    batch.append(self.queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(
                        self.queue.get(), timeout))
                except (asyncio.QueueEmpty, TimeoutError):
                    break
            batch = [(x, f) for x, f in batch if not f.done()]
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self.pool, self._isolating, [x for x, _ in batch])
            except Exception as exc:  # engine failure: fail this batch's requests, keep serving
                log.exception("batch of %d failed", len(batch))
                results = [exc] * len(batch)
            for (_, f), r in zip(batch, results, strict=True):
                if f.done():
                    continue
                if isinstance(r, BaseException):
                    f.set_exception(r)
                else:
                    f.set_result(r)

    def _isolating(self, inputs: list[Prompt]) -> list[Any]:
        """Moderate a batch; if the engine refuses an input (too long), bisect so only that one fails.

        The engine checks inputs before generating, so a refused half costs no generation; the others
        still run batched (one refused input in 32 -> batches of 16, 8, 4, 2, 1).
        """
        try:
            out: list[Any] = list(self.guard.moderate_inputs(inputs))
            self.batches += 1
            return out
        except SchemaError as exc:
            if len(inputs) == 1:
                return [exc]
            mid = len(inputs) // 2
            return self._isolating(inputs[:mid]) + self._isolating(inputs[mid:])


async def read_json_body(request: Request, max_bytes: int) -> bytes:
    """The body of a JSON request, read up to ``max_bytes``. Raises :class:`HTTPError` (415 / 413)."""
    ctype = request.headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        raise HTTPError(415, "unsupported_media", f"Content-Type must be application/json, got {ctype!r}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPError(413, "body_too_large", f"body of {int(declared):,} bytes; the limit is {max_bytes:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPError(413, "body_too_large", f"body over the limit of {max_bytes:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(guard: Guard, limits: ServeLimits | None = None, moderations=None):
    """The FastAPI application (``uvicorn.run(create_app(guard), host="127.0.0.1")``).

    ``moderations``: the options of ``POST /v1/moderations``
    (:class:`guardrl.stages.serve.openai_moderation.ModerationOptions`; default: remote image URLs refused).
    """
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from guardrl.stages.serve.openai_moderation import ModerationOptions, moderations_router

    limits = limits or ServeLimits()
    batcher = Batcher(guard, limits)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="guardrl moderation", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req, exc: StarletteHTTPException):
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation(_req, exc: RequestValidationError):
        return _error(422, "invalid_request", str(exc.errors()))

    @app.exception_handler(Exception)
    async def _internal(_req, exc: Exception):
        log.exception("internal error")
        return _error(500, "internal", f"{type(exc).__name__}: {exc}")

    app.include_router(moderations_router(guard, batcher, limits, moderations or ModerationOptions()))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": guard.model_path, "engine": guard.engine_name, "batches": batcher.batches,
                "limits": limits.__dict__}

    @app.post("/v1/moderate")
    async def moderate(request: Request):
        try:
            body = await read_json_body(request, limits.max_body_bytes)
            x, rid = await asyncio.get_running_loop().run_in_executor(None, parse_request, body, limits)
            m = await batcher.submit(x)
        except HTTPError as exc:
            return _error(exc.status, exc.code, exc.message)
        out = {"id": rid, **m.to_dict(), "harmful": m.harmful}
        out.pop("raw")
        return out

    return app


def serve(guard: Guard, host: str = "127.0.0.1", port: int = 8000, limits: ServeLimits | None = None,
          moderations=None) -> None:
    """Run the server until interrupted (uvicorn, one process)."""
    import uvicorn

    config = uvicorn.Config(create_app(guard, limits, moderations), host=host, port=port, log_level="info",
                            timeout_keep_alive=30)
    server = uvicorn.Server(config)
    log.info("guardrl serve: %s (%s) on http://%s:%d", guard.model_path, guard.engine_name, host, port)
    server.run()
