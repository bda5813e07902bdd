"""Moderate with a trained guard: ``Guard.from_pretrained(path).moderate(request, images=..., response=...)``.

The guard renders the same prompt it was trained on (the guard task's ``prompt_messages``,
:func:`guardrl.tasks.get_task`), generates with the engine :func:`guardrl.generation.make_engine` picks
(vLLM on CUDA with the ``[gpu]`` extra, Hugging Face ``generate`` elsewhere), and parses the answer
strictly (the task's ``parse``).
An answer that does not parse gives ``format_ok=False`` and ``None`` labels -- callers decide
what to do with it (``guardrl moderate`` prints it; a deployment would usually block).

Images may be encoded bytes, file paths or PIL images; each goes through
:func:`guardrl.core.images.prepare_image` (pixel limit, verify, resize) before the model sees it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from guardrl.generation.base import GenerationEngine, Prompt, SamplingParams
from guardrl.tasks import get_task, query_sample

ImageLike = Any  # bytes | str | Path | PIL.Image.Image


@dataclass(frozen=True)
class Moderation:
    """One verdict.

    Attributes:
        request: ``"harmful"`` / ``"unharmful"``; ``None`` when the output did not parse.
        response: the same for the response; ``None`` also when there was no response to judge.
        reasoning: the think block.
        format_ok: the output parsed.
        output_tokens / prompt_tokens: token counts of the completion and of the prompt.
        finish_reason: ``"stop"`` or ``"length"`` (hit ``max_new_tokens``).
        raw: the full completion text.
    """

    request: str | None
    response: str | None
    reasoning: str
    format_ok: bool
    output_tokens: int
    prompt_tokens: int
    finish_reason: str
    raw: str

    @property
    def harmful(self) -> bool | None:
        """True if the request or the response is harmful; None if the output did not parse."""
        if not self.format_ok:
            return None
        return "harmful" in (self.request, self.response)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_image_bytes(image: ImageLike, *, where: str = "image", limit_pixels: int | None = None) -> bytes:
    """Encoded, validated image bytes from bytes, a path or a PIL image.

    Raises:
        guardrl.core.images.ImageError: unreadable, corrupt, or over the pixel limit.
    """
    from guardrl.core.images import DEFAULT_LIMIT_PIXELS, prepare_image

    limit = limit_pixels or DEFAULT_LIMIT_PIXELS
    if isinstance(image, str | Path):
        return prepare_image(Path(image), where=where, limit_pixels=limit)
    if isinstance(image, bytes | bytearray | memoryview):
        return prepare_image(bytes(image), where=where, limit_pixels=limit)
    if hasattr(image, "save"):  # PIL image
        buf = io.BytesIO()
        image.convert("RGB").save(buf, "PNG")
        return prepare_image(buf.getvalue(), where=where, limit_pixels=limit)
    raise TypeError(f"{where}: expected bytes, a path or a PIL image, got {type(image).__name__}")


def guard_prompt(request: str, response: str | None = None, images: Sequence[bytes] = (), id: str = "",
                 task: str = "guard") -> Prompt:
    """The engine input for one interaction: ``task``'s prompt messages and the (validated) image bytes."""
    messages = get_task(task).prompt_messages(query_sample(id or "query", request, response, images))
    return Prompt(tuple(messages), tuple(images), id)


class Guard:
    """A guard model behind a generation engine.

    Args:
        engine: any :class:`~guardrl.generation.base.GenerationEngine`.
        sampling: generation settings (greedy by default).
        model_path: for display.
        task: the registered task whose prompt and parser the model was trained with (its ``parse`` result
            must carry ``request``, ``response``, ``reasoning`` and ``format_ok``, as the guard's does).
    """

    #: longest request / response text :meth:`moderate` accepts (the HTTP server's default limit too); longer text
    #: is refused, never truncated: a cut request could hide its harmful part
    MAX_TEXT_CHARS = 32_000

    def __init__(self, engine: GenerationEngine, sampling: SamplingParams | None = None, model_path: str = "",
                 max_text_chars: int = MAX_TEXT_CHARS, task: str = "guard") -> None:
        self.task = get_task(task)
        self.max_text_chars = max_text_chars
        self.engine = engine
        self.sampling = sampling or SamplingParams(max_new_tokens=512)
        self.model_path = model_path

    @classmethod
    def from_pretrained(cls, path: str | Path, engine: str = "auto", *, max_new_tokens: int = 512,
                        temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, **engine_kwargs: Any) -> Guard:
        """Load an exported guard folder (or ``hf:<org>/<name>``) with the engine ``engine`` (``auto`` | ``hf`` | ``vllm``).

        Raises:
            guardrl.core.model_folder.ModelFolderError: no such folder, or files missing from it (named).
        """
        from guardrl.core.model_folder import resolve_model
        from guardrl.generation import make_engine

        path = resolve_model(path, what="guard model")  # ModelFolderError: missing folder / files, named
        sampling = SamplingParams(n=1, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
        return cls(make_engine(path, engine=engine, **engine_kwargs), sampling, path)

    @property
    def engine_name(self) -> str:
        return getattr(self.engine, "name", type(self.engine).__name__)

    def moderate(self, request: str = "", images: Iterable[ImageLike] = (), response: str | None = None) -> Moderation:
        """Judge one interaction: is the request harmful, is the response (if any) harmful."""
        return self.moderate_batch([{"request": request, "images": list(images), "response": response}])[0]

    def moderate_batch(self, items: Sequence[dict[str, Any] | Prompt]) -> list[Moderation]:
        """Judge many interactions in one batched generation (dicts with request / images / response).

        Raises:
            ValueError: an item with neither text nor image; ``ImageError`` (a ValueError) for a bad image.
        """
        inputs = [self._input(x, i) for i, x in enumerate(items)]
        return self.moderate_inputs(inputs)

    def moderate_inputs(self, inputs: Sequence[Prompt]) -> list[Moderation]:
        """Judge already-rendered inputs (images validated; :func:`guard_prompt`)."""
        if not inputs:
            return []
        outs = self.engine.generate(list(inputs), self.sampling)
        results = []
        for comps in outs:
            c = comps[0]
            v = self.task.parse(c.text)
            results.append(Moderation(request=v.request, response=v.response, reasoning=v.reasoning,
                                      format_ok=v.format_ok, output_tokens=c.num_tokens, prompt_tokens=c.prompt_tokens,
                                      finish_reason=c.finish_reason, raw=c.text))
        return results

    def _input(self, x: dict[str, Any] | Prompt, i: int) -> Prompt:
        if isinstance(x, Prompt):
            return x
        request = x.get("request") or ""
        response = x.get("response")
        if not isinstance(request, str) or (response is not None and not isinstance(response, str)):
            raise ValueError(f"item {i}: request and response must be strings")
        for name, text in (("request", request), ("response", response or "")):
            if len(text) > self.max_text_chars:
                raise ValueError(f"item {x.get('id', i)}: {name} has {len(text):,} characters, over the limit of "
                                 f"{self.max_text_chars:,} (Guard(max_text_chars=...)); over-long text is refused, "
                                 "not truncated, since a cut request could hide its harmful part")
        images = tuple(to_image_bytes(im, where=f"item {i} image {j}") for j, im in enumerate(x.get("images") or ()))
        if not request.strip() and not images:
            raise ValueError(f"item {i}: nothing to moderate (empty request and no image)")
        return guard_prompt(request, response, images, str(x.get("id", i)), self.task.name)

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
