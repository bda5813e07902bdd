"""``POST /v1/moderations``: OpenAI's moderation API in front of the guard (mounted by ``guardrl serve``).

The real ``openai`` client's ``client.moderations.create(model=..., input=...)`` works unchanged
(``base_url="http://127.0.0.1:8000/v1"``). ``input`` is, as OpenAI's omni-moderation takes it:

* a string: one result;
* a list of strings: one result per string (judged in one batch);
* a list of parts, ``{"type": "text", "text": ...}`` and ``{"type": "image_url", "image_url": {"url": ...}}``:
  one result for all of them (the text parts joined by newlines, the images together). An image URL is a
  ``data:image/...;base64,...`` URL; a remote ``http(s)://`` URL is refused (400 ``image_url_refused``)
  unless the operator allows fetching (``guardrl serve --allow-image-urls``), and then it is fetched with
  the body-size limit and a timeout, no redirects.

What a binary reasoning guard puts in OpenAI's fields:

* ``flagged``: the guard judged the input harmful -- or its answer did not parse (fail closed;
  ``ModerationOptions.flag_unparsed``);
* ``categories`` / ``category_scores``: OpenAI's 13 category names, all ``false`` / ``0.0``, because the
  guard judges harm, not categories; one extra key ``guardrl/harmful`` carries the verdict (``true`` / ``1.0``
  when flagged). ``category_applied_input_types`` lists, per key, the input types the result saw (``text``,
  ``image``);
* ``guardrl``: the verdict as the guard gave it: ``verdict`` (``harmful`` / ``unharmful`` / ``null`` when
  unparsed), ``format_ok``, ``reasoning``, ``output_tokens``, ``prompt_tokens``, ``finish_reason``.

``model`` in the request is accepted and ignored (one guard is served); the response names the served
guard (``ModerationOptions.model_name``, default the folder's name). Errors are ``guardrl serve``'s JSON
errors (:mod:`guardrl.stages.serve.server`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request  # module level: FastAPI resolves the endpoint's annotations here

from guardrl.stages.serve.api import guard_prompt
from guardrl.stages.serve.server import HTTPError, ServeLimits, _error, decode_image_field, read_json_body

#: OpenAI's moderation categories (omni-moderation), in its order
OPENAI_CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
                     "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
                     "sexual/minors", "violence", "violence/graphic")
GUARD_CATEGORY = "guardrl/harmful"


@dataclass(frozen=True)
class ModerationOptions:
    """Options of ``POST /v1/moderations``.

    Attributes:
        model_name: the ``model`` the responses name (default: the guard folder's name).
        allow_image_urls: fetch remote ``http(s)://`` image URLs (off: only ``data:`` URLs; a server that
            fetches what clients name can be made to reach hosts its clients cannot).
        fetch_timeout_s: seconds to fetch one remote image.
        max_inputs: most strings in one list input.
        flag_unparsed: flag an input whose verdict did not parse (fail closed).
    """

    model_name: str | None = None
    allow_image_urls: bool = False
    fetch_timeout_s: float = 10.0
    max_inputs: int = 32
    flag_unparsed: bool = True


async def fetch_image(url: str, index: int, limits: ServeLimits, options: ModerationOptions) -> bytes:
    """A remote image's bytes (no redirects, at most ``limits.max_body_bytes``). Raises :class:`HTTPError`."""
    import httpx

    if not options.allow_image_urls:
        raise HTTPError(400, "image_url_refused", f"image {index}: remote image URLs are refused by this server "
                        "(send a data:image/...;base64 URL, or start it with --allow-image-urls)")
    try:
        async with httpx.AsyncClient(timeout=options.fetch_timeout_s, follow_redirects=False) as client, \
                client.stream("GET", url) as r:
            if r.status_code != 200:
                raise HTTPError(400, "bad_image", f"image {index}: fetching {url} gave HTTP {r.status_code}")
            data = bytearray()
            async for chunk in r.aiter_bytes():
                data += chunk
                if len(data) > limits.max_body_bytes:
                    raise HTTPError(413, "image_too_large",
                                    f"image {index}: {url} is over {limits.max_body_bytes:,} bytes")
    except httpx.HTTPError as exc:
        raise HTTPError(400, "bad_image", f"image {index}: cannot fetch {url}: {type(exc).__name__}: {exc}") from exc
    return bytes(data)


async def image_part_bytes(part: dict[str, Any], index: int, limits: ServeLimits,
                           options: ModerationOptions) -> bytes:
    """Validated image bytes of an ``image_url`` part (a ``data:`` URL, or a fetched remote URL)."""
    image_url = part.get("image_url")
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        raise HTTPError(422, "invalid_request", f"part {index}: image_url.url must be a string")
    if url.startswith(("http://", "https://")):
        url = base64.b64encode(await fetch_image(url, index, limits, options)).decode()
    elif not url.startswith("data:"):
        raise HTTPError(422, "invalid_request", f"part {index}: image_url.url must be a data: or http(s):// URL")
    return await asyncio.get_running_loop().run_in_executor(None, decode_image_field, url, index, limits)


def _check_text(text: Any, where: str, limits: ServeLimits) -> str:
    if not isinstance(text, str):
        raise HTTPError(422, "invalid_request", f"{where} must be a string")
    if len(text) > limits.max_text_chars:
        raise HTTPError(422, "invalid_request",
                        f"{where} has {len(text):,} characters; the limit is {limits.max_text_chars:,}")
    return text


async def parse_moderation_input(doc: Any, limits: ServeLimits,
                                 options: ModerationOptions) -> list[tuple[str, tuple[bytes, ...], list[str]]]:
    """A request body -> one (text, images, input types) per result. Raises :class:`HTTPError`."""
    if not isinstance(doc, dict):
        raise HTTPError(422, "invalid_request", "body must be a JSON object")
    unknown = set(doc) - {"input", "model"}
    if unknown:
        raise HTTPError(422, "invalid_request", f"unknown field(s) {sorted(unknown)}; allowed: input, model")
    value = doc.get("input")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise HTTPError(422, "invalid_request", "'input' must be a string, a list of strings or a list of parts")
    if all(isinstance(v, str) for v in value):
        if len(value) > options.max_inputs:
            raise HTTPError(422, "invalid_request", f"{len(value)} inputs; the limit is {options.max_inputs}")
        out = []
        for i, v in enumerate(value):
            if not _check_text(v, f"input[{i}]", limits).strip():
                raise HTTPError(422, "invalid_request", f"input[{i}]: nothing to moderate (empty text)")
            out.append((v, (), ["text"]))
        return out
    if not all(isinstance(v, dict) for v in value):
        raise HTTPError(422, "invalid_request", "'input' mixes strings and parts; give one kind")
    texts, images = [], []
    for i, part in enumerate(value):
        kind = part.get("type")
        if kind == "text":
            texts.append(_check_text(part.get("text"), f"input[{i}].text", limits))
        elif kind == "image_url":
            if len(images) >= limits.max_images:
                raise HTTPError(422, "invalid_request", f"more than {limits.max_images} images; the limit is "
                                f"{limits.max_images}")
            images.append(await image_part_bytes(part, i, limits, options))
        else:
            raise HTTPError(422, "invalid_request", f"input[{i}]: type must be 'text' or 'image_url', got {kind!r}")
    text = _check_text("\n".join(texts), "the joined text", limits)
    if not text.strip() and not images:
        raise HTTPError(422, "invalid_request", "nothing to moderate: no text and no image")
    kinds = (["text"] if text.strip() else []) + (["image"] if images else [])
    return [(text, tuple(images), kinds)]


def moderation_result(m: Any, kinds: list[str], options: ModerationOptions) -> dict[str, Any]:
    """One OpenAI ``results[]`` entry from a guard verdict (:class:`guardrl.stages.serve.api.Moderation`)."""
    flagged = m.request == "harmful" or (not m.format_ok and options.flag_unparsed)
    categories = {c: False for c in OPENAI_CATEGORIES} | {GUARD_CATEGORY: flagged}
    return {
        "flagged": flagged,
        "categories": categories,
        "category_scores": {c: float(v) for c, v in categories.items()},
        "category_applied_input_types": {c: kinds for c in categories},
        "guardrl": {"verdict": m.request, "format_ok": m.format_ok, "reasoning": m.reasoning,
                    "output_tokens": m.output_tokens, "prompt_tokens": m.prompt_tokens,
                    "finish_reason": m.finish_reason},
    }


def moderations_router(guard: Any, batcher: Any, limits: ServeLimits, options: ModerationOptions):
    """The ``/v1/moderations`` route over the server's batcher (:class:`guardrl.stages.serve.server.Batcher`)."""
    from fastapi import APIRouter

    router = APIRouter()
    model_name = options.model_name or Path(guard.model_path).name or "guardrl"
    task = guard.task.name  # the prompt the guard was trained with

    @router.post("/v1/moderations")
    async def moderations(request: Request):
        try:
            body = await read_json_body(request, limits.max_body_bytes)
            try:
                doc = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise HTTPError(400, "bad_json", f"body is not valid JSON: {exc}") from exc
            inputs = await parse_moderation_input(doc, limits, options)
            verdicts = await asyncio.gather(*(batcher.submit(guard_prompt(text, None, images, str(i), task))
                                              for i, (text, images, _) in enumerate(inputs)))
        except HTTPError as exc:
            return _error(exc.status, exc.code, exc.message)
        return {"id": f"modr-{uuid.uuid4().hex}", "model": model_name,
                "results": [moderation_result(m, kinds, options) for m, (_, _, kinds) in zip(verdicts, inputs,
                                                                                             strict=True)]}

    return router
