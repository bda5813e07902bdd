"""Decode-step attention without copying the KV cache for grouped-query heads: ``attn_implementation="guardrl_sdpa"``.

Qwen2.5-VL's language model shares each key/value head between ``num_key_value_groups`` query heads
(3B: 16 query heads, 2 KV heads). ``transformers``' SDPA path expands the cached keys and values to
every query head (``repeat_kv``: a full copy of the cache, every layer, every step) whenever an attention
mask is passed, which batched generation always does (left padding). For a decode step (one new
token per sequence) the copy is avoidable: the ``groups`` query heads of a KV head are folded into the
query-length axis, ``[B, H, 1, D] -> [B, H_kv, groups, D]`` (a view), and SDPA attends them to the
un-expanded cache; the padding mask ``[B, 1, 1, S]`` broadcasts unchanged over the folded axis, and the
result is unfolded back to ``[B, 1, H, D]``. Same arithmetic, same outputs (greedy completions are
identical; tests/unit/test_generation_attention.py).

Prefill (several query positions: a causal mask per position) and every other case take
``transformers``' own SDPA function unchanged. The masks are SDPA's (``AttentionMaskInterface``).
"""

from __future__ import annotations

import torch

ATTENTION_NAME = "guardrl_sdpa"


def folded_decode_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """An ``AttentionInterface`` function: ``query`` ``[B, H, q, D]``, ``key``/``value`` ``[B, H_kv, S, D]``.

    Returns ``([B, q, H, D], None)`` like ``transformers``' SDPA function.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, q_len, dim = query.shape
    if groups == 1 or q_len != 1 or attention_mask is None or kwargs.get("output_attentions"):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    folded = query.reshape(batch, key.shape[1], groups, dim)  # head h = kv * groups + g, as repeat_kv orders them
    out = torch.nn.functional.scaled_dot_product_attention(folded, key, value, attn_mask=attention_mask,
                                                           dropout_p=dropout, scale=scaling)
    return out.reshape(batch, 1, heads, dim), None


def register() -> str:
    """Make ``attn_implementation="guardrl_sdpa"`` known to ``transformers`` (idempotent); returns the name."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, folded_decode_sdpa)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    return ATTENTION_NAME
