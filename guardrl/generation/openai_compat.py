"""A :class:`~guardrl.generation.base.GenerationEngine` over an OpenAI-compatible ``/v1/chat/completions``.

Any server that speaks the chat API: ``vllm serve``, ``guardrl serve-chat``, a hosted API. Used where the
model is too big for this process (the rewriter's 38B teacher behind a ``vllm serve`` on other GPUs).

* ``base_url`` + ``model`` name the endpoint; the API key is read from the environment variable named by
  ``api_key_env`` (never from a recipe); a key that is not set is an error at construction.
* Images travel as base64 ``data:`` URLs, in the order of the prompt's ``{"type": "image"}`` items.
* Each prompt is one request (``n`` completions, the sampling seed passed through); requests run on
  ``concurrency`` threads, each with ``timeout_s`` and ``max_retries`` retries of the client (connection
  errors, 408/429/5xx with backoff).
* Failures are per prompt: :meth:`generate_each` returns the completions or the exception of each prompt;
  :meth:`generate` raises :class:`EndpointError` (a ``ValueError``, so
  :func:`~guardrl.generation.base.isolate_failures` isolates it) naming the first failed prompt.

Needs the ``openai`` client: ``pip install 'guardrl[openai]'``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from guardrl.generation.base import Completion, Prompt, SamplingParams


class EndpointError(ValueError):
    """One prompt the endpoint did not answer (HTTP error, timeout, empty choice list); names the prompt."""


def image_mime(data: bytes) -> str:
    """The MIME type of encoded image bytes from their magic number (PNG, JPEG, GIF, WebP; else PNG)."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"


def data_url(data: bytes) -> str:
    return f"data:{image_mime(data)};base64,{base64.b64encode(data).decode('ascii')}"


def to_openai_messages(prompt: Prompt) -> list[dict[str, Any]]:
    """HF content-list messages (``{"type": "image"}`` placeholders) -> OpenAI chat messages with data URLs.

    Raises:
        ValueError: the messages refer to more (or fewer) images than the prompt carries.
    """
    images = iter(prompt.images)
    used = 0
    out = []
    for m in prompt.messages:
        content = m.get("content")
        if isinstance(content, str):
            out.append({"role": m["role"], "content": content})
            continue
        parts = []
        for item in content or ():
            if item.get("type") == "image":
                try:
                    parts.append({"type": "image_url", "image_url": {"url": data_url(next(images))}})
                except StopIteration:
                    raise ValueError(f"prompt {prompt.id!r}: more image items than images") from None
                used += 1
            else:
                parts.append({"type": "text", "text": str(item.get("text", ""))})
        out.append({"role": m["role"], "content": parts})
    if used != len(prompt.images):
        raise ValueError(f"prompt {prompt.id!r}: {len(prompt.images)} images but {used} image items")
    return out


class OpenAICompatEngine:
    """Chat completions from an OpenAI-compatible endpoint (see the module docstring).

    Args:
        model: the model name the endpoint serves (``--served-model-name`` of ``vllm serve``).
        base_url: e.g. ``http://127.0.0.1:8000/v1``.
        api_key_env: the environment variable holding the key; ``None``: no key (a local server).
        timeout_s: seconds per request.
        max_retries: the client's retries of a failed request.
        concurrency: requests in flight at once.

    Raises:
        ValueError: ``api_key_env`` names a variable that is not set.
    """

    name = "openai"

    def __init__(self, model: str, base_url: str, api_key_env: str | None = None, timeout_s: float = 120.0,
                 max_retries: int = 2, concurrency: int = 8) -> None:
        from openai import OpenAI

        key = "EMPTY"
        if api_key_env:
            key = os.environ.get(api_key_env, "")
            if not key:
                raise ValueError(f"the API key variable {api_key_env!r} is not set")
        self.model = model
        self.concurrency = max(1, int(concurrency))
        self._client = OpenAI(base_url=base_url, api_key=key, timeout=timeout_s, max_retries=max_retries)

    def _one(self, prompt: Prompt, params: SamplingParams) -> list[Completion]:
        import openai

        try:
            resp = self._client.chat.completions.create(
                model=self.model, messages=to_openai_messages(prompt), n=params.n, temperature=params.temperature,
                top_p=params.top_p, max_tokens=params.max_new_tokens, seed=params.seed)
        except (openai.OpenAIError, ValueError) as exc:
            raise EndpointError(f"prompt {prompt.id!r}: {type(exc).__name__}: {exc}") from exc
        choices = sorted(resp.choices or (), key=lambda c: c.index)
        if len(choices) != params.n:
            raise EndpointError(f"prompt {prompt.id!r}: asked for {params.n} choices, got {len(choices)}")
        usage = resp.usage
        out_tokens = (usage.completion_tokens if usage else 0) // params.n
        in_tokens = usage.prompt_tokens if usage else 0
        return [Completion(text=c.message.content or "", num_tokens=out_tokens, prompt_tokens=in_tokens,
                           finish_reason="length" if c.finish_reason == "length" else "stop") for c in choices]

    def generate_each(self, inputs: Sequence[Prompt], params: SamplingParams
                      ) -> tuple[list[list[Completion] | None], list[BaseException | None]]:
        """Per prompt: its ``params.n`` completions or ``None``, and its exception or ``None``."""

        def call(p: Prompt) -> tuple[list[Completion] | None, BaseException | None]:
            try:
                return self._one(p, params), None
            except EndpointError as exc:
                return None, exc

        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(inputs)))) as pool:
            pairs = list(pool.map(call, inputs))
        return [r for r, _ in pairs], [e for _, e in pairs]

    def generate(self, inputs: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        results, errors = self.generate_each(inputs, params)
        for e in errors:
            if e is not None:
                raise e
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self._client.close()
