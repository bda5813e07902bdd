"""vLLM engine (the ``[gpu]`` extra): offline ``vllm.LLM`` with tensor parallelism and image inputs.

Imported only when chosen (:func:`guardrl.generation.make_engine`), so nothing
else in guardrl needs vLLM. Prompts are rendered exactly as the HF engine
renders them (the processor's chat template over
:func:`guardrl.prompts.build_messages`); images go in as decoded PIL images
through ``multi_modal_data``. Checked against vLLM 0.24's offline API:
``LLM(model=..., tensor_parallel_size=..., limit_mm_per_prompt={"image": k})``,
``LLM.generate([{"prompt": ..., "multi_modal_data": {"image": [...]}}], SamplingParams(...))``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from guardrl.generation.base import Completion, GenerationInput, PromptTooLongError, SamplingParams
from guardrl.generation.hf import decode_images
from guardrl.prompts import build_messages

log = logging.getLogger(__name__)


class VLLMEngine:
    """Batched generation with vLLM on CUDA (continuous batching does the batching).

    Args:
        model_path: a saved model + processor folder.
        tensor_parallel_size: GPUs one model is split over (from the recipe).
        gpu_memory_utilization: share of each GPU vLLM may take.
        max_model_len: context length (prompt + completion); ``None`` = the model's.
        max_images: images one prompt may carry (vLLM's ``limit_mm_per_prompt``).
        dtype: ``"bfloat16"`` by default.
    """

    name = "vllm"

    def __init__(
        self,
        model_path: str | Path,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = 4096,
        max_images: int = 4,
        dtype: str = "bfloat16",
    ) -> None:
        from transformers import AutoProcessor
        from vllm import LLM

        self.processor = AutoProcessor.from_pretrained(str(model_path))
        self.llm = LLM(
            model=str(model_path),
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            limit_mm_per_prompt={"image": max_images},
            dtype=dtype,
        )
        self.max_images = max_images
        self.max_model_len = max_model_len
        log.info("vLLM engine: %s, tensor_parallel_size=%d", model_path, tensor_parallel_size)

    def _request(self, x: GenerationInput) -> dict:
        if len(x.images) > self.max_images:
            raise ValueError(f"input {x.id!r}: {len(x.images)} images > max_images={self.max_images}")
        msgs = build_messages(x.request, x.response, num_images=len(x.images))
        prompt = self.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        req: dict = {"prompt": prompt}
        if x.images:
            req["multi_modal_data"] = {"image": decode_images(x.images)}
        return req

    def generate(self, inputs: Sequence[GenerationInput], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions per input, in input order."""
        from vllm import SamplingParams as VSamplingParams

        sp = VSamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p if params.temperature > 0 else 1.0,
            max_tokens=params.max_new_tokens,
            seed=params.seed,
        )
        requests = [self._request(x) for x in inputs]
        check_prompt_lengths(self.processor, inputs, requests, self.max_model_len, params.max_new_tokens)
        outs = self.llm.generate(requests, sp, use_tqdm=False)
        return [
            [
                Completion(
                    text=o.text,
                    num_tokens=len(o.token_ids),
                    prompt_tokens=len(out.prompt_token_ids or ()),
                    finish_reason="length" if o.finish_reason == "length" else "stop",
                )
                for o in out.outputs
            ]
            for out in outs
        ]

    def close(self) -> None:
        self.llm = None


def check_prompt_lengths(
    processor: object,
    inputs: Sequence[GenerationInput],
    requests: Sequence[dict],
    max_model_len: int | None,
    max_new_tokens: int,
) -> None:
    """Refuse (never truncate) a prompt that leaves no room for ``max_new_tokens`` in ``max_model_len``,
    before vLLM sees it (vLLM would raise a plain ``ValueError`` for the whole batch).

    The prompt length is the processor's own count: the rendered chat text with every image
    placeholder expanded into its vision tokens, as vLLM feeds the model.

    Raises:
        PromptTooLongError: naming the input's id, its length and the limit (as the HF engine does).
    """
    if not max_model_len:
        return
    limit = int(max_model_len) - int(max_new_tokens)
    for i, (x, req) in enumerate(zip(inputs, requests, strict=True)):
        images = (req.get("multi_modal_data") or {}).get("image") or None
        enc = processor(text=[req["prompt"]], images=images, return_tensors=None)  # type: ignore[operator]
        n = len(enc["input_ids"][0])
        if n > limit:
            raise PromptTooLongError(
                f"input {x.id or i}: the prompt is {n:,} tokens; max_model_len is {max_model_len:,}, "
                f"{max_new_tokens} of them kept for new tokens. Over-long inputs are refused, not "
                "truncated (a cut request could hide its harmful part)")
