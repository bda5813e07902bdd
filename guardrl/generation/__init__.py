"""Generation engines behind one interface (see ``base.py``); :func:`make_engine` picks the backend.

``engine="auto"`` uses vLLM only when CUDA is available *and* ``vllm`` imports
(the ``[gpu]`` extra); everywhere else the Hugging Face engine. The choice is
logged. Backends are imported only when chosen.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from guardrl.generation.base import Completion, GenerationEngine, Prompt, SamplingParams, render_prompts

log = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("auto", "hf", "vllm")

__all__ = ["ENGINES", "Completion", "GenerationEngine", "Prompt", "SamplingParams", "make_engine", "render_prompts",
           "resolve_engine"]


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return torch.cuda.is_available()


def _vllm_importable() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_engine(engine: str = "auto") -> tuple[str, str]:
    """Which backend ``engine`` means on this machine, and why.

    Raises:
        ValueError: an unknown engine name (the message lists the valid ones).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid: {list(ENGINES)}")
    if engine != "auto":
        return engine, "requested"
    cuda, vllm = _cuda_available(), _vllm_importable()
    if cuda and vllm:
        return "vllm", "CUDA available and vllm importable"
    why = "no CUDA device" if not cuda else "vllm not installed (pip install -e '.[gpu]')"
    return "hf", why


def make_engine(model_path: str | Path, engine: str = "auto", **kwargs: Any) -> GenerationEngine:
    """Build a generation engine for ``model_path``.

    Args:
        model_path: a saved model + processor folder (or a Hub id with a local cache).
        engine: ``"auto"`` | ``"hf"`` | ``"vllm"``.
        **kwargs: passed to the backend (:class:`~guardrl.generation.hf.HFEngine`:
            ``device``, ``dtype``, ``batch_size``, ``num_threads``;
            :class:`~guardrl.generation.vllm.VLLMEngine`: ``tensor_parallel_size``,
            ``gpu_memory_utilization``, ``max_model_len``, ``max_images``, ``dtype``).
            Options meant for the other backend are dropped with a debug log.

    Raises:
        ValueError: an unknown engine name.
    """
    name, why = resolve_engine(engine)
    log.info("generation engine: %s (%s) for %s", name, why, model_path)
    if name == "vllm":
        from guardrl.generation.vllm import VLLMEngine as cls
    else:
        from guardrl.generation.hf import HFEngine as cls
    import inspect

    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "model_path"}
    dropped = sorted(set(kwargs) - accepted)
    if dropped:
        log.debug("engine %s ignores options %s", name, dropped)
    return cls(model_path, **{k: v for k, v in kwargs.items() if k in accepted})
