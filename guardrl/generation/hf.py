"""Hugging Face ``generate`` engine: batched, left-padded, KV-cached; runs on CPU or one GPU.

Each input (a :class:`~guardrl.generation.base.Prompt`: chat messages + image bytes, rendered by a
task) goes through the model's chat template and processor (Qwen2.5-VL: images become vision tokens), repeated
``params.n`` times, and the expanded list is generated in micro-batches of
``batch_size`` sequences. Inputs are sorted by prompt length before batching
so a micro-batch carries little padding, and micro-batches are bounded by ``batch_size``
sequences and ``max_batch_tokens`` padded tokens; results come back in input order.

Attention is :mod:`guardrl.generation.attention`'s (SDPA without the grouped-query KV copy on decode
steps). Temperature / top-p sampling goes through :mod:`guardrl.generation.sampling` (same distribution
as ``transformers``' sampler, without sorting the vocabulary every step).

Sampling is deterministic for a seed: the same inputs, ``SamplingParams`` and
``batch_size`` give the same completions on the same machine (the RNG is
seeded per micro-batch inside a forked RNG state, so the caller's RNG is not
touched).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guardrl.generation.base import Completion, Prompt, PromptTooLongError, SamplingParams

log = logging.getLogger(__name__)

_MIN_FILL = 0.7  # see HFEngine._micro_batches

def decode_images(images: Sequence[bytes], where: str = "input") -> list[Any]:
    """Decode stored image bytes to RGB PIL images with :func:`guardrl.core.images.open_stored` (safe decode).

    Raises:
        guardrl.core.images.ImageError: (a ``ValueError``) an image that is corrupt, too large or not an image.
    """
    from guardrl.core.images import open_stored

    return [open_stored(b, where=f"{where} image {i}") for i, b in enumerate(images)]


def _image_key(image: Any) -> tuple:
    """Content identity of a decoded image (equal copies of one image, e.g. a GRPO group's, share it)."""
    return (image.mode, image.size, hashlib.blake2b(image.tobytes(), digest_size=16).digest())


class HFEngine:
    """Batched generation with ``transformers`` (the CPU / single-GPU engine).

    Args:
        model_path: a folder with a saved model and processor (``save_pretrained``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when available.
        dtype: ``"float32"`` / ``"bfloat16"``; default bf16 on CUDA, fp32 on CPU.
        batch_size: at most this many sequences per forward pass (after repeating each prompt ``n`` times).
        max_batch_tokens: at most this many padded tokens (longest prompt + ``max_new_tokens``, times
            the batch's sequences) per micro-batch, so a few long prompts do not pad a large batch.
        num_threads: torch intra-op threads (CPU); ``None`` leaves torch's default.
    """

    name = "hf"

    def __init__(
        self,
        model_path: str | Path,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = 32,
        max_batch_tokens: int = 16384,
        num_threads: int | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_threads:
            torch.set_num_threads(num_threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch_dtype = getattr(torch, dtype) if dtype else (
            torch.bfloat16 if self.device.type == "cuda" else torch.float32
        )
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.processor = AutoProcessor.from_pretrained(str(model_path))
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        from guardrl.generation.attention import register as register_attention

        self.model = AutoModelForImageTextToText.from_pretrained(  # decode steps skip the GQA cache copy
            str(model_path), dtype=torch_dtype, attn_implementation=register_attention())
        self.model.to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        self.eos_ids.discard(None)
        self.stats = {"generate_calls": 0, "sequences": 0}  # model.generate calls (micro-batches), sequences
        log.debug("HFEngine: %s on %s (%s), batch %d", model_path, self.device, torch_dtype, batch_size)

    def _prompt_text(self, x: Prompt) -> str:
        return self.processor.apply_chat_template(list(x.messages), add_generation_prompt=True, tokenize=False)

    def generate(self, inputs: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions per input, in input order (see :class:`GenerationEngine`)."""
        texts = [self._prompt_text(x) for x in inputs]
        images = [decode_images(x.images, where=x.id or f"input {i}") for i, x in enumerate(inputs)]
        lengths = [self._prompt_len(t, ims) for t, ims in zip(texts, images, strict=True)]
        self._check_lengths([x.id for x in inputs], lengths, params)
        return self._run(lengths, params, lambda chunk: self._text_batch(chunk, texts, images))

    def generate_ids(
        self,
        prompt_ids: Sequence[Sequence[int]],
        images: Sequence[Sequence[Any] | None],
        params: SamplingParams,
        *,
        logprobs: bool = False,
        suppress_tokens: Sequence[int] = (),
    ) -> list[list[Completion]]:
        """Token-in/token-out generation (the verl rollout): ``params.n`` completions per tokenised prompt.

        ``prompt_ids`` are chat-templated token ids; ``images`` the decoded (PIL) images of each prompt, in the
        order of its image placeholders (one placeholder per image is expanded to the image's vision tokens).
        Each prompt's images go through the image processor once, however many samples it gets (prompts
        with equal images -- a GRPO group's copies -- share one encoding; the vision tower still runs per
        sequence). Each
        completion's ``extra`` holds ``token_ids`` (cut after the first EOS) and, with ``logprobs``,
        ``logprobs``: ``log_softmax(logits / temperature)`` at each sampled token (greedy: temperature 1).
        ``suppress_tokens`` are never sampled.
        """
        if len(images) != len(prompt_ids):
            raise ValueError(f"{len(prompt_ids)} prompts but {len(images)} image lists")
        encoded: dict[tuple, dict[str, Any] | None] = {}  # prompts with equal images share one encoding
        vision = []
        for ims in images:
            key = tuple(map(_image_key, ims or ()))
            if key not in encoded:
                encoded[key] = self._encode_images(ims)
            vision.append(encoded[key])
        ids = [self._expand_image_tokens(list(map(int, p)), v) for p, v in zip(prompt_ids, vision, strict=True)]
        lengths = [len(x) for x in ids]
        self._check_lengths([None] * len(ids), lengths, params)
        return self._run(lengths, params, lambda chunk: self._token_batch(chunk, ids, vision),
                         logprobs=logprobs, suppress_tokens=suppress_tokens)

    def _run(self, lengths: list[int], params: SamplingParams, make_batch, *, logprobs: bool = False,
             suppress_tokens: Sequence[int] = ()) -> list[list[Completion]]:
        """Micro-batch the prompts (each ``params.n`` times), sample each batch under its own seed, and
        return the completions in input order."""
        import torch

        if params.n < 1:
            raise ValueError(f"n must be >= 1, got {params.n}")
        results: list[list[Completion]] = [[] for _ in lengths]
        t0, n_new = time.perf_counter(), 0
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        for b, chunk in enumerate(self._micro_batches(lengths, params)):
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(params.seed * 1_000_003 + b)
                comps = self._sample(make_batch(chunk), params, logprobs, suppress_tokens)
            for i, comp in zip(chunk, comps, strict=True):
                results[i].append(comp)
                n_new += comp.num_tokens
            self.stats["generate_calls"] += 1
            self.stats["sequences"] += len(chunk)
        dt = time.perf_counter() - t0
        log.debug("HFEngine: %d sequences, %d new tokens in %.2fs", len(lengths) * params.n, n_new, dt)
        return results

    def _check_lengths(self, ids: Sequence[str | None], lengths: list[int], params: SamplingParams) -> None:
        """Refuse (never truncate) a prompt that leaves no room for ``max_new_tokens`` in the model's positions.

        Raises:
            PromptTooLongError: naming the input's id, its length and the limit.
        """
        text_cfg = self.model.config.get_text_config()
        positions = getattr(text_cfg, "max_position_embeddings", None)
        if not positions:
            return
        limit = positions - params.max_new_tokens
        for i, (name, n) in enumerate(zip(ids, lengths, strict=True)):
            if n > limit:
                raise PromptTooLongError(
                    f"input {name or i}: the prompt is {n:,} tokens; the model takes {positions:,} positions, "
                    f"{params.max_new_tokens} of them kept for new tokens. Over-long inputs are refused, not "
                    "truncated (a cut request could hide its harmful part)")

    def _prompt_len(self, text: str, images: list[Any]) -> int:
        """Prompt tokens after the processor expands each image placeholder into vision tokens."""
        n = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        ip = getattr(self.processor, "image_processor", None)
        merge = getattr(ip, "merge_size", 1) ** 2
        for im in images:
            try:
                n += ip.get_number_of_image_patches(im.height, im.width, {}) // merge - 1  # type: ignore[union-attr]
            except (AttributeError, TypeError):
                n += 256
        return n

    def _micro_batches(self, lengths: list[int], params: SamplingParams) -> list[list[int]]:
        """Prompt indices per micro-batch (each prompt ``n`` times): longest first, bounded by
        ``batch_size`` sequences and ``max_batch_tokens`` padded tokens, and a sequence joins a
        batch only if it fills at least ``_MIN_FILL`` of the batch's longest (prompt + new tokens),
        so one long prompt does not make a batch of short ones pay for its padding; deterministic."""
        order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
        seqs = [i for i in order for _ in range(params.n)]  # [N*n] prompt index per sequence
        batches: list[list[int]] = []
        for i in seqs:
            if batches:
                cur = batches[-1]
                longest = lengths[cur[0]] + params.max_new_tokens
                padded = (len(cur) + 1) * longest
                fills = lengths[i] + params.max_new_tokens >= _MIN_FILL * longest
                if len(cur) < self.batch_size and padded <= self.max_batch_tokens and fills:
                    cur.append(i)
                    continue
            batches.append([i])
        return batches

    def _text_batch(self, chunk: list[int], texts: list[str], images: list[list[Any]]) -> dict[str, Any]:
        """The processor's padded batch for rendered prompts (images expanded to vision tokens)."""
        flat_images = [im for i in chunk for im in images[i]]
        return self.processor(text=[texts[i] for i in chunk], images=flat_images or None, return_tensors="pt",
                              padding=True).to(self.device)

    def _encode_images(self, images: Sequence[Any] | None) -> dict[str, Any] | None:
        """One prompt's images through the image processor: ``pixel_values`` and ``image_grid_thw``."""
        if not images:
            return None
        out = self.processor.image_processor(images=list(images), return_tensors="pt")
        return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}

    def _expand_image_tokens(self, ids: list[int], vision: dict[str, Any] | None) -> list[int]:
        """Expand one placeholder per image to the image's vision tokens (ids already expanded pass as they are).

        Raises:
            ValueError: the placeholders match neither one per image nor the images' vision tokens.
        """
        image_token = getattr(self.model.config, "image_token_id", None)
        if vision is None or image_token is None:
            return ids
        merge = getattr(self.processor.image_processor, "merge_size", 2) ** 2
        want = (vision["image_grid_thw"].prod(-1) // merge).tolist()
        have = sum(1 for t in ids if t == image_token)
        if have == sum(want):
            return ids
        if have != len(want):
            raise ValueError(f"the prompt has {have} image tokens for {len(want)} images ({sum(want)} vision tokens)")
        out, k = [], 0
        for t in ids:
            if t == image_token:
                out.extend([t] * int(want[k]))
                k += 1
            else:
                out.append(t)
        return out

    def _token_batch(self, chunk: list[int], ids: list[list[int]], vision: list[dict[str, Any] | None]) -> dict[str, Any]:
        """A left-padded batch of token-id prompts; the images' preprocessed patches concatenated in order."""
        import torch

        width = max(len(ids[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            input_ids[row, width - len(ids[i]):] = torch.tensor(ids[i])
            mask[row, width - len(ids[i]):] = 1
        batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask}
        pics = [vision[i] for i in chunk if vision[i] is not None]
        if pics:
            batch["pixel_values"] = torch.cat([v["pixel_values"] for v in pics]).to(self.model.dtype)
            batch["image_grid_thw"] = torch.cat([v["image_grid_thw"] for v in pics])
        return {k: v.to(self.device) for k, v in batch.items()}

    def _sample(self, batch: dict[str, Any], params: SamplingParams, logprobs: bool,
                suppress_tokens: Sequence[int]) -> list[Completion]:
        """One ``generate`` call for a padded batch; completions cut after the first EOS (found in one pass)."""
        import torch
        from transformers import LogitsProcessorList

        from guardrl.generation.sampling import TokenSampler

        sampler = None
        sampling: dict[str, Any] = {"do_sample": False}
        if params.temperature > 0 or logprobs or suppress_tokens:  # our processor picks; generate's argmax takes it
            sampler = TokenSampler(params.temperature, params.top_p, suppress_tokens, record_logprobs=logprobs)
            sampling = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None,
                        "logits_processor": LogitsProcessorList([sampler])}
        with torch.inference_mode():
            out = self.model.generate(**batch, max_new_tokens=params.max_new_tokens, use_cache=True,
                                      pad_token_id=self.tokenizer.pad_token_id, **sampling)
        new = out[:, batch["input_ids"].shape[1]:].cpu()  # [B, T]
        eos = torch.isin(new, torch.tensor(sorted(self.eos_ids), dtype=new.dtype))
        found = eos.any(1)
        stops = torch.where(found, eos.int().argmax(1) + 1, new.shape[1]).tolist()  # kept tokens per row
        lp = torch.stack(sampler.logprobs, 1).cpu() if sampler is not None and sampler.logprobs else None
        rows = new.tolist()
        prompt_tokens = batch["attention_mask"].sum(dim=1).tolist()
        comps = []
        for row, (tokens, keep, stopped, p_tok) in enumerate(zip(rows, stops, found.tolist(), prompt_tokens,
                                                                 strict=True)):
            kept = tokens[:keep]
            extra: dict[str, Any] = {"token_ids": kept}
            if lp is not None:
                extra["logprobs"] = lp[row, :keep].tolist()
            comps.append(Completion(text=self.tokenizer.decode(kept, skip_special_tokens=True), num_tokens=keep,
                                    prompt_tokens=int(p_tok), finish_reason="stop" if stopped else "length",
                                    extra=extra))
        return comps

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass
