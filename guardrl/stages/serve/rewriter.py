"""The gateway's request rewriter: a rewriter model behind an OpenAI-compatible chat endpoint.

VLMGuard-R1's rewriter (a VLM that reads the request's text and images and writes a safer request)
is served like any VLM -- ``vllm serve REWRITER`` on GPUs, ``guardrl serve-chat REWRITER`` here -- and
the gateway calls it with the user's turn (text and images) after the instruction in
``rewrite_instruction.txt``. Its answer is read as:

* ``tagged`` (default): the text between ``<rewrite>`` and ``</rewrite>``; an answer without the block is
  a failed rewrite (the policy's ``on_guard_error`` decides);
* ``plain``: the whole answer, stripped (a rewriter trained to answer with the request alone).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

INSTRUCTION_FILE = Path(__file__).with_name("rewrite_instruction.txt")
_TAGGED = re.compile(r"<rewrite>\s*(.*?)\s*</rewrite>", re.DOTALL)


class RewriteError(RuntimeError):
    """The rewriter gave no usable rewrite (unreachable, an error status, no ``<rewrite>`` block, empty)."""


def read_rewrite(answer: str, output: str) -> str:
    """The rewritten request in the rewriter's ``answer``. Raises :class:`RewriteError`."""
    if output == "tagged":
        m = _TAGGED.search(answer)
        if m is None:
            raise RewriteError(f"the rewriter's answer has no <rewrite>...</rewrite> block: {answer[:200]!r}")
        text = m.group(1)
    else:
        text = answer.strip()
    if not text.strip():
        raise RewriteError("the rewriter's rewrite is empty")
    return text


@dataclass(frozen=True)
class ChatRewriter:
    """A rewriter model served at ``base_url`` (OpenAI-compatible, e.g. ``http://127.0.0.1:8002/v1``).

    Attributes:
        base_url: the endpoint's base URL (as the ``openai`` client takes it).
        model: the served model name (``--served-model-name``).
        output: ``tagged`` | ``plain`` (see the module docstring).
        max_tokens: generation cap of one rewrite.
        api_key: sent as ``Authorization: Bearer`` when set.
    """

    base_url: str
    model: str
    output: Literal["tagged", "plain"] = "tagged"
    max_tokens: int = 512
    api_key: str | None = None

    def __post_init__(self) -> None:
        if self.output not in ("tagged", "plain"):
            raise ValueError(f"rewriter output must be 'tagged' or 'plain', got {self.output!r}")

    def messages(self, text: str, image_urls: list[str]) -> list[dict[str, Any]]:
        """The rewriter's chat: the instruction, then the user's turn (images first, then the text)."""
        parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": u}} for u in image_urls]
        parts.append({"type": "text", "text": text})
        return [{"role": "system", "content": INSTRUCTION_FILE.read_text(encoding="utf-8").strip()},
                {"role": "user", "content": parts}]

    async def rewrite(self, client: Any, text: str, image_urls: list[str], timeout: float) -> str:
        """The rewritten request (``client``: an ``httpx.AsyncClient``). Raises :class:`RewriteError`."""
        import httpx

        body = {"model": self.model, "messages": self.messages(text, image_urls), "max_tokens": self.max_tokens,
                "temperature": 0}
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            r = await client.post(f"{self.base_url.rstrip('/')}/chat/completions", json=body, headers=headers,
                                  timeout=timeout)
        except httpx.HTTPError as exc:
            raise RewriteError(f"rewriter {self.base_url}: {type(exc).__name__}: {exc}") from exc
        if r.status_code != 200:
            raise RewriteError(f"rewriter {self.base_url} answered HTTP {r.status_code}: {r.text[:300]}")
        try:
            answer = r.json()["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise RewriteError(f"rewriter {self.base_url}: not a chat completion: {r.text[:300]}") from exc
        return read_rewrite(answer, self.output)
