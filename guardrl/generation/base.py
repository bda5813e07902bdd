"""One interface for batched generation, served by vLLM on CUDA machines and HF ``generate`` elsewhere.

Rejection sampling, evaluation, RL validation and ``guardrl moderate`` all talk
to an engine through :class:`GenerationEngine`; only :func:`guardrl.generation.make_engine`
knows which backend is behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from guardrl.core.schema import SchemaError


class PromptTooLongError(SchemaError):
    """An input whose prompt does not fit the model (refused, never truncated); names the input."""


@dataclass(frozen=True)
class SamplingParams:
    """How to sample: ``n`` completions per prompt.

    Attributes:
        n: completions per prompt (rejection sampling uses 4).
        temperature: 0 means greedy.
        top_p: nucleus mass.
        max_new_tokens: cap on generated tokens per completion.
        seed: base seed; the same seed and inputs give the same completions on one engine.
    """

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0


@dataclass(frozen=True)
class Prompt:
    """One rendered prompt: chat messages and the encoded images (PNG/JPEG bytes) they refer to.

    ``messages`` are Hugging Face chat messages in the content-list format, one ``{"type": "image"}`` item
    per entry of ``images``, in order (a task renders them: :meth:`guardrl.tasks.Task.prompt_messages`).
    Engines apply the model's chat template to them and know nothing of any task. ``id`` names the input
    in errors.
    """

    messages: tuple[dict[str, Any], ...]
    images: tuple[bytes, ...] = ()
    id: str = ""

    def __post_init__(self) -> None:  # lists are accepted, stored as tuples
        object.__setattr__(self, "messages", tuple(self.messages))
        object.__setattr__(self, "images", tuple(self.images))


def render_prompts(render: Callable[[Any], Sequence[dict[str, Any]]], samples: Sequence[Any]) -> list[Prompt]:
    """One :class:`Prompt` per sample: ``render(sample)`` (a task's ``prompt_messages``), the sample's
    ``images`` and ``id``. The one place a stage turns its samples into engine inputs."""
    return [Prompt(tuple(render(s)), tuple(s.images), str(s.id)) for s in samples]


@dataclass(frozen=True)
class Completion:
    """One sampled completion: decoded text (special tokens removed) and token counts."""

    text: str
    num_tokens: int
    prompt_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length"
    extra: dict = field(default_factory=dict)


@runtime_checkable
class GenerationEngine(Protocol):
    """Batched generation of ``params.n`` samples per input."""

    name: str

    def generate(self, inputs: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """Returns one list of ``params.n`` completions per input, in input order."""
        ...

    def close(self) -> None: ...


def isolate_failures(
    fn: Callable[[list[Any]], Sequence[Any]],
    items: Sequence[Any],
    refused: tuple[type[BaseException], ...] = (ValueError,),
) -> tuple[list[Any], list[BaseException | None]]:
    """``fn(items)`` (a batched call: generation, moderation); if it raises one of ``refused`` (a corrupt
    image, a prompt too long for the model), ``fn([item])`` one item at a time, so only the bad items fail
    and the others are still answered.

    Returns:
        (``fn``'s result per item or ``None``, the exception per item or ``None``).
    """
    try:
        return list(fn(list(items))), [None] * len(items)
    except refused as exc:
        logging.getLogger(__name__).warning("a batch of %d failed (%s); isolating the bad input(s)", len(items),
                                            str(exc)[:200])
    results: list[Any] = []
    errors: list[BaseException | None] = []
    for item in items:
        try:
            results.append(fn([item])[0])
            errors.append(None)
        except refused as exc:
            results.append(None)
            errors.append(exc)
    return results, errors
