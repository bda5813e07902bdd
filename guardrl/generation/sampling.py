"""Temperature + nucleus (top-p) sampling without sorting the vocabulary, for the HF engine.

``transformers``' sampling path sorts every row of the ``[B, vocab]`` scores for top-p and then draws
with ``torch.multinomial`` (one exponential variate per vocabulary entry). On a CPU that is most of a
batched decode step for a small model: at batch 26 and a 4,096-token vocabulary the sort alone took
28% of the step and the variates another 9% (``torch.profiler``); at Qwen2.5-VL's 151,936 tokens it
grows with the vocabulary, not with the model.

:func:`nucleus_sample` draws from the same distribution -- the probabilities renormalised over the
nucleus, the smallest set of most probable tokens whose mass reaches ``top_p`` -- with a few linear
passes instead (the pivot / rejection scheme FlashInfer uses on GPUs): draw a token by inverse CDF
over the tokens above a pivot; it is in the nucleus iff the tokens strictly more probable than it hold
less than ``top_p`` of the mass; if not, raise the pivot to its probability and draw again. Every
nucleus token stays above the pivot, so an accepted draw is distributed as the renormalised nucleus;
a rejection happens with probability ``1 - top_p`` of the first draw's mass, so the expected number
of rounds is close to 1. The top token is always in the nucleus, so the loop ends; after
``max_rounds`` the few rows left are finished with the sorted method. Tokens tied in probability at
the nucleus boundary are all kept or all dropped (a sort would keep an arbitrary subset).

:class:`TokenSampler` plugs this into ``model.generate`` as a logits processor that returns
0 at the drawn token and ``-inf`` elsewhere, with ``do_sample=False`` so generate's argmax takes it (and,
for the verl rollout, suppresses tokens and records the picked tokens' log-probabilities).
Randomness comes from torch's global generator (the engine seeds it per micro-batch).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def nucleus_sample(probs: torch.Tensor, top_p: float, max_rounds: int = 32) -> torch.Tensor:
    """One token per row of ``probs`` ``[B, V]`` (rows sum to 1), drawn from its top-``top_p`` nucleus.

    Returns:
        ``[B]`` int64 token ids.
    """
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    b, v = probs.shape
    out = torch.empty(b, dtype=torch.long, device=probs.device)
    rows = torch.arange(b, device=probs.device)
    pivot = torch.zeros(b, 1, dtype=probs.dtype, device=probs.device)
    for _ in range(max_rounds):
        q = probs[rows]  # [b', V]
        cdf = torch.where(q > pivot, q, 0.0).cumsum(-1)  # mass of the tokens above the pivot, in id order
        u = torch.rand(len(rows), 1, dtype=probs.dtype, device=probs.device) * cdf[:, -1:]
        tok = torch.searchsorted(cdf, u, right=True).clamp_(max=v - 1)  # [b', 1]
        p_tok = q.gather(1, tok)
        zero = p_tok <= pivot  # only on a rounding edge (u == total): take the row's most probable token
        if zero.any():
            tok = torch.where(zero, q.argmax(-1, keepdim=True), tok)
            p_tok = q.gather(1, tok)
        accept = (top_p >= 1.0) | (torch.where(q > p_tok, q, 0.0).sum(-1, keepdim=True) < top_p)  # [b', 1]
        acc = accept.squeeze(1)
        out[rows[acc]] = tok[acc, 0]
        pivot = p_tok[~acc]
        rows = rows[~acc]
        if len(rows) == 0:
            return out
    out[rows] = _sorted_nucleus_sample(probs[rows], top_p)
    return out


def _sorted_nucleus_sample(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """The textbook method (sort, cut at ``top_p``, renormalise, draw); the reference for the fast path."""
    sorted_p, idx = probs.sort(dim=-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p  # mass strictly before each token in sorted order
    kept = torch.where(before < top_p, sorted_p, 0.0)
    pick = torch.multinomial(kept, 1)  # [B, 1]
    return idx.gather(1, pick).squeeze(1)


class TokenSampler:
    """A ``transformers`` logits processor that picks each next token itself and returns one-hot scores.

    Use with ``generate(do_sample=False, logits_processor=LogitsProcessorList([this]))``: generate's argmax
    takes the pick. ``temperature > 0`` draws from the top-``top_p`` nucleus of ``softmax(scores / T)``
    (:func:`nucleus_sample`); ``temperature == 0`` takes the argmax. ``suppress_tokens`` are never picked.
    With ``record_logprobs``, :attr:`logprobs` collects per step the ``[B]`` log-probabilities of the
    picked tokens under ``log_softmax(raw scores / T)`` (T = 1 when greedy), the formula verl's actor uses,
    before suppression: no ``[B, T, vocab]`` logits are kept.
    """

    def __init__(self, temperature: float, top_p: float = 1.0, suppress_tokens: Sequence[int] = (),
                 record_logprobs: bool = False) -> None:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0: greedy), got {temperature}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.temperature = temperature
        self.top_p = top_p
        self.suppress_tokens = sorted(set(map(int, suppress_tokens)))
        self.logprobs: list[torch.Tensor] | None = [] if record_logprobs else None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        raw = scores.float() / (self.temperature or 1.0)  # [B, V]
        allowed = raw
        if self.suppress_tokens:
            allowed = raw.clone()
            allowed[:, self.suppress_tokens] = float("-inf")
        if self.temperature > 0:
            tok = nucleus_sample(torch.softmax(allowed, dim=-1), self.top_p)
        else:
            tok = allowed.argmax(-1)
        if self.logprobs is not None:
            self.logprobs.append(torch.log_softmax(raw, dim=-1).gather(1, tok[:, None])[:, 0])
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, tok[:, None], 0.0)
        return out
