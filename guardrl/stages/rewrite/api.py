"""Use a trained rewriter: ``Rewriter.from_pretrained(path).rewrite(text, images=()) -> RewriteResult``.

The rewriter renders the prompt it was trained on (the ``rewrite`` task's ``prompt_messages``, looked up with
:func:`guardrl.tasks.get_task`), generates with the engine :func:`guardrl.generation.make_engine` picks (vLLM on
CUDA with the ``[gpu]`` extra, Hugging Face ``generate`` elsewhere; greedy by default) and parses the answer
strictly (the task's ``parse``). An answer that does not parse gives ``format_ok=False`` and ``rewrite=None``;
:attr:`RewriteResult.prompt` is then the user's own text, so a caller that sends ``result.prompt`` to its VLM
falls back to the unrewritten prompt (``guardrl rewrite eval`` does the same and counts it). Images may be bytes,
paths or PIL images; each goes through :func:`guardrl.core.images.prepare_image` (pixel limit, verify, resize).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrl.generation.base import GenerationEngine, Prompt, SamplingParams
from guardrl.stages.serve.api import ImageLike, to_image_bytes
from guardrl.tasks import get_task, query_sample


@dataclass(frozen=True)
class RewriteResult:
    """One rewrite.

    Attributes:
        original: the user's text as given.
        rewrite: the rewritten prompt; ``None`` when the output did not parse.
        format_ok: the output parsed.
        analysis: the parsed reasoning (the task's parse result: hindsight / risk / optimisation for the
            ``rewrite`` task), ``None`` when the output did not parse.
        raw: the full completion; output_tokens / prompt_tokens / finish_reason as the engine reports them.
    """

    original: str
    rewrite: str | None
    format_ok: bool
    analysis: Any
    raw: str
    output_tokens: int
    prompt_tokens: int
    finish_reason: str

    @property
    def prompt(self) -> str:
        """What to send the target VLM: the rewrite, or the original text when the output did not parse."""
        return self.rewrite if self.rewrite is not None else self.original

    def to_dict(self) -> dict[str, Any]:
        out = getattr(self.analysis, "output", self.analysis)
        analysis = None
        if out is not None and hasattr(out, "__dataclass_fields__"):
            from dataclasses import asdict

            analysis = asdict(out)
        return {"original": self.original, "rewrite": self.rewrite, "prompt": self.prompt,
                "format_ok": self.format_ok, "analysis": analysis, "output_tokens": self.output_tokens,
                "prompt_tokens": self.prompt_tokens, "finish_reason": self.finish_reason}


def rewritten_text(task: Any, parsed: Any) -> str | None:
    """The rewritten prompt in ``parsed``: the task's ``rewritten_prompt(parsed)`` hook, else ``parsed.rewrite``;
    ``None`` when the output did not parse or the rewrite is blank."""
    if not getattr(parsed, "format_ok", False):
        return None
    hook = getattr(task, "rewritten_prompt", None)
    text = hook(parsed) if callable(hook) else getattr(parsed, "rewrite", None)
    return text if isinstance(text, str) and text.strip() else None


class Rewriter:
    """A rewriter model behind a generation engine.

    Args:
        engine: any :class:`~guardrl.generation.base.GenerationEngine`.
        sampling: generation settings (greedy, 512 new tokens by default).
        model_path: for display.
        task: the registered task the model was trained with (default ``rewrite``); ``task_modules``: modules or
            ``.py`` paths that register a task defined outside guardrl.
    """

    MAX_TEXT_CHARS = 32_000

    def __init__(self, engine: GenerationEngine, sampling: SamplingParams | None = None, model_path: str = "",
                 task: str = "rewrite", max_text_chars: int = MAX_TEXT_CHARS, task_modules: Sequence[str] = ()) -> None:
        self.task = get_task(task, task_modules)
        self.engine = engine
        self.sampling = sampling or SamplingParams(max_new_tokens=512)
        self.model_path = model_path
        self.max_text_chars = max_text_chars

    @classmethod
    def from_pretrained(cls, path: str | Path, engine: str = "auto", *, max_new_tokens: int = 512,
                        temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, task: str = "rewrite",
                        task_modules: Sequence[str] = (), **engine_kwargs: Any) -> Rewriter:
        """Load a rewriter folder (an SFT output's ``hf/``, an export, or ``hf:<org>/<name>``).

        Raises:
            guardrl.core.model_folder.ModelFolderError: no such folder, or files missing from it (named).
        """
        from guardrl.core.model_folder import resolve_model
        from guardrl.generation import make_engine

        path = resolve_model(path, what="rewriter model")
        sampling = SamplingParams(n=1, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
        return cls(make_engine(path, engine=engine, **engine_kwargs), sampling, str(path), task=task,
                   task_modules=task_modules)

    def prompt(self, text: str, images: Iterable[ImageLike] = (), id: str = "query") -> Prompt:
        """The engine input for one request (images validated).

        Raises:
            ValueError: empty text and no image, text over ``max_text_chars`` (refused, never truncated);
                ``ImageError`` (a ValueError) for a bad image.
        """
        if not isinstance(text, str):
            raise ValueError(f"{id}: text must be a string")
        if len(text) > self.max_text_chars:
            raise ValueError(f"{id}: text has {len(text):,} characters, over the limit of {self.max_text_chars:,}")
        imgs = tuple(to_image_bytes(im, where=f"{id} image {j}") for j, im in enumerate(images))
        if not text.strip() and not imgs:
            raise ValueError(f"{id}: nothing to rewrite (empty text and no image)")
        return Prompt(tuple(self.task.prompt_messages(query_sample(id, text, None, imgs))), imgs, id)

    def rewrite(self, text: str, images: Iterable[ImageLike] = ()) -> RewriteResult:
        """Rewrite one request (text and its images)."""
        return self.rewrite_batch([{"text": text, "images": list(images)}])[0]

    def rewrite_batch(self, items: Sequence[dict[str, Any]]) -> list[RewriteResult]:
        """Rewrite many requests (dicts with ``text`` and ``images``) in one batched generation."""
        prompts = [self.prompt(x.get("text") or "", x.get("images") or (), str(x.get("id", i)))
                   for i, x in enumerate(items)]
        if not prompts:
            return []
        outs = self.engine.generate(prompts, self.sampling)
        results = []
        for x, comps in zip(items, outs, strict=True):
            c = comps[0]
            parsed = self.task.parse(c.text)
            new = rewritten_text(self.task, parsed)
            results.append(RewriteResult(original=x.get("text") or "", rewrite=new, format_ok=new is not None,
                                         analysis=parsed if new is not None else None, raw=c.text,
                                         output_tokens=c.num_tokens, prompt_tokens=c.prompt_tokens,
                                         finish_reason=c.finish_reason))
        return results

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> Rewriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
