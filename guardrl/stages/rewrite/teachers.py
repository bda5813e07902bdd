"""The teachers of rewriter data synthesis, and the stage prompts they answer (template files).

A teacher answers one synthesis stage for a batch of samples: :meth:`Teacher.answer` gets the samples and
their rendered stage prompts and returns, per sample, one text or the exception that stopped it.

* ``engine``: a local model through :func:`guardrl.generation.make_engine` (vLLM on GPUs, HF elsewhere);
* ``openai``: an OpenAI-compatible endpoint (:class:`~guardrl.generation.openai_compat.OpenAICompatEngine`);
* ``templated``: no model; each stage's text is rendered from ``templates/teacher/<stage>.j2`` out of the
  sample's label, category and modality (the CPU demo). Its rows are marked ``synthetic`` in provenance.
* ``"module.path:Class"`` or ``"file.py:Class"``: a teacher class of the user's (same constructor arguments).

Stage prompts: ``templates/<stage>.j2`` (``hindsight``, ``risk``, ``optimise``), rendered with the sample's
request, its reference responses, category and the earlier stages' outputs.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from guardrl.core.schema import Sample
from guardrl.generation.base import Completion, Prompt, SamplingParams, isolate_failures

TEMPLATE_DIR = Path(__file__).parent / "templates"
STAGES: tuple[str, ...] = ("hindsight", "risk", "optimise")
REWRITE_MARKER = "Rewritten prompt:"
TEACHER_KINDS: tuple[str, ...] = ("templated", "engine", "openai")


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                              autoescape=False, keep_trailing_newline=False, trim_blocks=True, lstrip_blocks=True)


def references(sample: Sample) -> tuple[str | None, str | None]:
    """The sample's (safe, unsafe) reference responses from ``provenance["reference_responses"]``."""
    refs = sample.provenance.get("reference_responses") or {}
    safe, unsafe = refs.get("safe"), refs.get("unsafe")
    return (safe.strip() or None) if isinstance(safe, str) else None, \
        (unsafe.strip() or None) if isinstance(unsafe, str) else None


def hindsight_mode(sample: Sample) -> str:
    """``"pair"`` (safe and unsafe reference), ``"single"`` (one of them) or ``"inferred"`` (none: the teacher
    imagines both answers; the degraded form of hindsight analysis)."""
    n = sum(r is not None for r in references(sample))
    return ("inferred", "single", "pair")[n]


def stage_context(sample: Sample, earlier: Mapping[str, str]) -> dict[str, Any]:
    """What a stage template sees: the sample's fields, its references and the earlier stages' outputs."""
    safe, unsafe = references(sample)
    p = sample.provenance
    return {"request": sample.request, "safe": safe, "unsafe": unsafe, "refs": bool(safe or unsafe),
            "category": p.get("category"), "subcategory": p.get("subcategory"), "subset": p.get("subset"),
            "harmful": sample.label_request == "harmful", "images": len(sample.images),
            "topic": p.get("subcategory") or p.get("category") or "the requested topic",
            "marker": REWRITE_MARKER, **{k: earlier.get(k, "") for k in STAGES[:2]}}


def stage_messages(stage: str, sample: Sample, earlier: Mapping[str, str]) -> list[dict[str, Any]]:
    """The teacher's chat messages for ``stage``: the sample's images, then the rendered stage prompt."""
    text = _env().get_template(f"{stage}.j2").render(**stage_context(sample, earlier)).strip()
    return [{"role": "user", "content": [*({"type": "image"} for _ in sample.images), {"type": "text", "text": text}]}]


def stage_prompts(stage: str, samples: Sequence[Sample], earlier: Sequence[Mapping[str, str]]) -> list[Prompt]:
    return [Prompt(tuple(stage_messages(stage, s, e)), tuple(s.images), f"{s.id}:{stage}")
            for s, e in zip(samples, earlier, strict=True)]


# ------------------------------------------------------------------------------------------ teachers
class Teacher:
    """Base: ``answer(stage, samples, prompts, params)`` -> one :class:`Completion` or exception per sample."""

    name = "teacher"
    synthetic = False

    def answer(self, stage: str, samples: Sequence[Sample], prompts: Sequence[Prompt], params: SamplingParams
               ) -> tuple[list[Completion | None], list[BaseException | None]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the teacher's engine (if any)."""


class TemplatedTeacher(Teacher):
    """Each stage's text from ``templates/teacher/<stage>.j2`` (label, category, modality); no model."""

    synthetic = True

    def __init__(self, name: str = "templated", **_: Any) -> None:
        self.name = name

    def answer(self, stage, samples, prompts, params):
        texts = [_env().get_template(f"teacher/{stage}.j2").render(**stage_context(s, {})).strip() for s in samples]
        return [Completion(t, len(t.split())) for t in texts], [None] * len(samples)


class EngineTeacher(Teacher):
    """A :class:`~guardrl.generation.base.GenerationEngine` (local model or endpoint) answering stage prompts."""

    def __init__(self, engine: Any, name: str) -> None:
        self.engine, self.name = engine, name

    def answer(self, stage, samples, prompts, params):
        params = SamplingParams(n=1, temperature=params.temperature, top_p=params.top_p,
                                max_new_tokens=params.max_new_tokens, seed=params.seed)
        each = getattr(self.engine, "generate_each", None)
        if each is not None:  # the endpoint engine isolates failures per prompt itself
            results, errors = each(prompts, params)
        else:
            results, errors = isolate_failures(lambda xs: self.engine.generate(xs, params), prompts)
        return [r[0] if r else None for r in results], list(errors)

    def close(self) -> None:
        self.engine.close()


def make_teacher(kind: str, name: str | None = None, model: str | None = None, engine: str = "auto",
                 engine_kwargs: Mapping[str, Any] | None = None, base_url: str | None = None,
                 api_key_env: str | None = None, timeout_s: float = 120.0, max_retries: int = 2,
                 concurrency: int = 8) -> Teacher:
    """Build the teacher a recipe's ``teacher:`` block names (see the module docstring).

    Raises:
        ValueError: an unknown kind (listing the valid ones) or a missing ``model`` / ``base_url``.
    """
    if kind == "templated":
        return TemplatedTeacher(name or "templated")
    if kind == "engine":
        if not model:
            raise ValueError("teacher.kind engine needs teacher.model (a model folder)")
        from guardrl.generation import make_engine

        return EngineTeacher(make_engine(model, engine=engine, **dict(engine_kwargs or {})), name or str(model))
    if kind == "openai":
        if not model or not base_url:
            raise ValueError("teacher.kind openai needs teacher.model and teacher.base_url")
        from guardrl.generation.openai_compat import OpenAICompatEngine

        eng = OpenAICompatEngine(model, base_url, api_key_env=api_key_env, timeout_s=timeout_s,
                                 max_retries=max_retries, concurrency=concurrency)
        return EngineTeacher(eng, name or f"{model}@{base_url}")
    if ":" in kind:
        cls = _load_class(kind)
        return cls(name=name or kind, model=model, engine=engine, engine_kwargs=engine_kwargs, base_url=base_url,
                   api_key_env=api_key_env)
    raise ValueError(f"unknown teacher kind {kind!r}; valid: {list(TEACHER_KINDS)} or 'module:Class'")


def _load_class(spec: str) -> type[Teacher]:
    mod_name, _, attr = spec.rpartition(":")
    if mod_name.endswith(".py"):  # loaded once per process, under a name derived from its path
        key = f"guardrl_teacher_{hashlib.sha256(str(Path(mod_name).resolve()).encode()).hexdigest()[:12]}"
        module = sys.modules.get(key)
        if module is None:
            s = importlib.util.spec_from_file_location(key, mod_name)
            if s is None or s.loader is None:
                raise ValueError(f"teacher {spec!r}: cannot load {mod_name}")
            module = importlib.util.module_from_spec(s)
            sys.modules[key] = module
            s.loader.exec_module(module)
    else:
        module = importlib.import_module(mod_name)
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Teacher)):
        raise ValueError(f"teacher {spec!r}: {attr} is not a Teacher subclass")
    return cls
