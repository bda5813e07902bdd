"""guardrl_sdpa: a decode step's grouped-query attention without the KV copy equals transformers' SDPA."""

from __future__ import annotations

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from guardrl.generation.attention import folded_decode_sdpa


class _Attn(torch.nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.num_key_value_groups = groups
        self.is_causal = True


def _padding_mask(batch: int, length: int, pads: list[int]) -> torch.Tensor:
    """SDPA's additive mask [B, 1, 1, S]: -inf on each row's left padding."""
    m = torch.zeros(batch, 1, 1, length)
    for row, p in enumerate(pads):
        m[row, :, :, :p] = float("-inf")
    return m


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 2), (16, 2), (28, 4)])
def test_decode_step_matches_transformers_sdpa(heads, kv_heads):
    torch.manual_seed(0)
    b, s, d = 3, 17, 8
    q, k, v = torch.randn(b, heads, 1, d), torch.randn(b, kv_heads, s, d), torch.randn(b, kv_heads, s, d)
    mask = _padding_mask(b, s, [0, 5, 11])
    module = _Attn(heads // kv_heads)
    want, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=d**-0.5)
    got, _ = folded_decode_sdpa(module, q, k, v, mask, scaling=d**-0.5)
    assert got.shape == want.shape == (b, 1, heads, d)
    torch.testing.assert_close(got, want)
    # the fold pairs query head h with KV head h // groups (repeat_kv's order): a swapped fold differs
    swapped = q.reshape(b, module.num_key_value_groups, kv_heads, d).transpose(1, 2).reshape(b, heads, 1, d)
    other, _ = folded_decode_sdpa(module, swapped, k, v, mask, scaling=d**-0.5)
    assert not torch.allclose(other, want)


def test_prefill_and_ungrouped_take_transformers_path():
    torch.manual_seed(1)
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    causal = torch.triu(torch.full((5, 5), float("-inf")), 1).expand(2, 1, 5, 5)
    module = _Attn(2)
    torch.testing.assert_close(folded_decode_sdpa(module, q, k, v, causal)[0],
                               sdpa_attention_forward(module, q, k, v, causal)[0])
    q1 = torch.randn(2, 2, 1, 8)
    torch.testing.assert_close(folded_decode_sdpa(_Attn(1), q1, k, v, None)[0],
                               sdpa_attention_forward(_Attn(1), q1, k, v, None)[0])
