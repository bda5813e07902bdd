"""The sort-free nucleus sampler draws from exactly the renormalised top-p nucleus."""

from __future__ import annotations

import pytest
import torch

from guardrl.generation.sampling import TokenSampler, _sorted_nucleus_sample, nucleus_sample


def nucleus_distribution(p: torch.Tensor, top_p: float) -> torch.Tensor:
    """The reference: sort descending, keep tokens whose preceding mass is < top_p, renormalise."""
    sorted_p, idx = p.sort(descending=True)
    before = sorted_p.cumsum(0) - sorted_p
    keep = torch.zeros_like(p, dtype=torch.bool)
    keep[idx[before < top_p]] = True
    q = torch.where(keep, p, 0.0)
    return q / q.sum()


def _cases():
    g = torch.Generator().manual_seed(0)
    flat = torch.full((64,), 1 / 64) + torch.rand(64, generator=g) * 1e-4  # a random-init model: near uniform
    peaked = torch.softmax(torch.randn(64, generator=g) * 4, 0)  # a trained model: a few tokens hold the mass
    dirichlet = torch.distributions.Dirichlet(torch.full((32,), 0.3)).sample()
    with_zeros = torch.softmax(torch.randn(32, generator=g), 0)
    with_zeros[::3] = 0.0
    return {"flat": flat / flat.sum(), "peaked": peaked, "dirichlet": dirichlet, "with_zeros": with_zeros / with_zeros.sum()}


@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.95, 1.0])
@pytest.mark.parametrize("name", ["flat", "peaked", "dirichlet", "with_zeros"])
def test_draws_follow_the_renormalised_nucleus(name: str, top_p: float):
    torch.manual_seed(1)
    p = _cases()[name]
    want = nucleus_distribution(p, top_p)
    draws = nucleus_sample(p.expand(40_000, -1).contiguous(), top_p)
    freq = torch.bincount(draws, minlength=len(p)).float() / len(draws)
    assert (freq[want == 0] == 0).all(), "a token outside the nucleus was drawn"
    tv = 0.5 * (freq - want).abs().sum().item()
    assert tv < 0.03, f"total variation {tv:.4f} from the nucleus distribution"


def test_a_wrong_nucleus_is_caught():
    """The check above can fail: the reference nucleus of another top_p is far from the draws."""
    torch.manual_seed(1)
    p = _cases()["peaked"]
    draws = nucleus_sample(p.expand(20_000, -1).contiguous(), 0.5)
    freq = torch.bincount(draws, minlength=len(p)).float() / len(draws)
    assert 0.5 * (freq - nucleus_distribution(p, 0.99)).abs().sum().item() > 0.05


def test_sorted_fallback_agrees():
    torch.manual_seed(2)
    p = _cases()["dirichlet"]
    want = nucleus_distribution(p, 0.9)
    draws = _sorted_nucleus_sample(p.expand(40_000, -1).contiguous(), 0.9)
    freq = torch.bincount(draws, minlength=len(p)).float() / len(draws)
    assert 0.5 * (freq - want).abs().sum().item() < 0.03


def test_rows_are_independent_and_the_round_cap_falls_back():
    torch.manual_seed(3)
    cases = _cases()
    probs = torch.stack([cases["flat"][:32] / cases["flat"][:32].sum(), cases["dirichlet"]])
    draws = nucleus_sample(probs.repeat(5000, 1), 0.9, max_rounds=1)  # many rows finish in the sorted fallback
    for row in range(2):
        want = nucleus_distribution(probs[row], 0.9)
        freq = torch.bincount(draws[row::2], minlength=32).float() / 5000
        assert 0.5 * (freq - want).abs().sum().item() < 0.04


def test_processor_returns_one_hot_scores_for_greedy_argmax():
    torch.manual_seed(0)
    scores = torch.randn(3, 50)
    out = TokenSampler(temperature=0.7, top_p=0.9)(torch.zeros(3, 1, dtype=torch.long), scores)
    assert out.shape == scores.shape
    assert ((out == 0).sum(-1) == 1).all() and torch.isinf(out).sum() == 3 * 49
    with pytest.raises(ValueError, match="temperature"):
        TokenSampler(temperature=-0.1)
    with pytest.raises(ValueError, match="top_p"):
        nucleus_sample(torch.ones(1, 4) / 4, 0.0)


def test_sampler_suppresses_and_records_raw_logprobs():
    torch.manual_seed(1)
    scores = torch.randn(4, 30)
    scores[:, 7] = 50.0  # the argmax, suppressed
    greedy = TokenSampler(0.0, suppress_tokens=[7], record_logprobs=True)
    out = greedy(torch.zeros(4, 1, dtype=torch.long), scores)
    allowed = scores.clone()
    allowed[:, 7] = float("-inf")
    assert out.argmax(-1).tolist() == allowed.argmax(-1).tolist()
    # the log-prob is under the raw scores (suppressed token's mass included), as verl's actor computes it
    want = torch.log_softmax(scores, -1).gather(1, allowed.argmax(-1, keepdim=True))[:, 0]
    torch.testing.assert_close(greedy.logprobs[0], want)
    hot = TokenSampler(0.5, top_p=1.0, suppress_tokens=[7], record_logprobs=True)
    picks = hot(torch.zeros(4, 1, dtype=torch.long), scores).argmax(-1)
    assert 7 not in picks.tolist()
    torch.testing.assert_close(hot.logprobs[0], torch.log_softmax(scores / 0.5, -1).gather(1, picks[:, None])[:, 0])
