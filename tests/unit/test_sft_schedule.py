"""R-SFT learning-rate schedule and data order: values worked out by hand."""

from __future__ import annotations

import math

import pytest

from guardrl.stages.sft.data import StepSchedule
from guardrl.stages.sft.schedule import lr_factor, warmup_steps


def test_warmup_steps():
    assert warmup_steps(100, 0.1) == 10
    assert warmup_steps(100, 0.05) == 5
    assert warmup_steps(7, 0.1) == 1  # ceil(0.7)
    assert warmup_steps(1, 0.5) == 0  # never all of the run
    assert warmup_steps(10, 0.0) == 0
    with pytest.raises(ValueError):
        warmup_steps(0, 0.1)


def test_lr_factor_by_hand():
    # warmup 4 of 12 steps: 1/4, 2/4, 3/4, 4/4 then cosine over the remaining 8
    f = [lr_factor(s, warmup=4, total=12) for s in range(12)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]
    assert f[4] == 1.0  # p = 0
    assert f[8] == pytest.approx(0.5)  # p = 4/8: 0.5 * (1 + cos(pi/2))
    assert f[11] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))  # 0.0381
    assert all(a >= b for a, b in zip(f[4:], f[5:], strict=False))  # non-increasing after warm-up


def test_lr_factor_min_ratio_and_no_warmup():
    # min_ratio 0.1: factor = 0.1 + 0.9 * cosine part; at p = 1/2 -> 0.1 + 0.45 = 0.55
    assert lr_factor(2, warmup=0, total=4, min_ratio=0.1) == pytest.approx(0.55)
    assert lr_factor(0, warmup=0, total=4, min_ratio=0.1) == 1.0
    assert lr_factor(99, warmup=0, total=4, min_ratio=0.1) == pytest.approx(0.1)  # clamped past the end


def _sched(rank=0, world=1, n=20, g=8, mb=2, seed=0):
    return StepSchedule(num_samples=n, global_batch=g, micro_batch=mb, world_size=world, rank=rank, seed=seed)


def test_step_schedule_shapes_and_coverage():
    s = _sched()
    assert s.steps_per_epoch == 2  # 20 // 8, tail of 4 left out
    assert s.accum_steps == 4  # 8 / (2 x 1)
    seen = [i for step in range(2) for mb in s.micro_batches(0, step) for i in mb]
    assert len(seen) == len(set(seen)) == 16
    assert seen == s.order(0)[:16]
    assert list(s.iter_from(0, 1)) == s.micro_batches(0, 1)
    with pytest.raises(IndexError):
        s.micro_batches(0, 2)


def test_step_schedule_is_deterministic_and_reshuffles_per_epoch():
    assert _sched().order(0) == _sched().order(0)
    assert _sched().order(0) != _sched().order(1)
    assert _sched(seed=1).order(0) != _sched().order(0)


def test_ranks_partition_the_global_batch():
    # 2 ranks x micro 2 x 2 accumulation = 8: rank 0 takes the first 4 of the step's 8, rank 1 the rest
    r0, r1 = _sched(rank=0, world=2), _sched(rank=1, world=2)
    assert r0.accum_steps == 2
    step_samples = r0.order(0)[8:16]
    a = [i for mb in r0.micro_batches(0, 1) for i in mb]
    b = [i for mb in r1.micro_batches(0, 1) for i in mb]
    assert a == step_samples[:4] and b == step_samples[4:]


def test_too_few_samples():
    with pytest.raises(ValueError, match="global batch"):
        _sched(n=5, g=8)


def test_lengths_order_samples_within_a_rank_step_only():
    lengths = tuple(range(20, 0, -1))  # sample i has length 20 - i
    plain, by_len = _sched(), StepSchedule(20, 8, 2, 1, 0, 0, lengths=lengths)
    for step in range(2):
        a = [i for mb in plain.micro_batches(0, step) for i in mb]
        b = [i for mb in by_len.micro_batches(0, step) for i in mb]
        assert sorted(a) == sorted(b)  # same samples in the step
        assert [lengths[i] for i in b] == sorted(lengths[i] for i in b)  # shortest first


def _table(rows):
    import pyarrow as pa

    names = ("modality", "label_request", "response", "label_response")
    return pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})


def test_balance_weights_by_hand():
    from guardrl.stages.sft.data import balance_weights

    h, u = "harmful", "unharmful"
    rows = [("text", h, None, None)] * 6 + [("text", u, None, None)] * 2 + [
        ("text", h, "sure", h), ("text", h, "no", u), ("text", h, "no", u), ("text", u, "hi", u),
        ("image", h, None, None), ("image", u, None, None)]
    t = _table(rows)
    # 14 rows: text 12 (share 12/14), image 2 (share 2/14).
    # label_presence, text: 4 cells (h/no-resp, u/no-resp, h/resp, u/resp), 12/14/4 = 3/14 each;
    # h/no-resp: 3/14 over 6 rows = 1/28; u/no-resp: 3/14 / 2 = 3/28; h/resp splits 3/14 into
    # response harmful (1 row: 3/28) and unharmful (2 rows: 3/56 each); u/resp: 1 row, 3/14.
    # image: 2 cells of 1/14, one row each.
    w = balance_weights(t, "label_presence")
    want = [1 / 28] * 6 + [3 / 28] * 2 + [3 / 28, 3 / 56, 3 / 56, 3 / 14, 1 / 14, 1 / 14]
    assert w == pytest.approx(want)
    assert sum(w) == pytest.approx(1.0)
    # label, text: harmful 9 rows and unharmful 3 rows share 12/14 equally: 6/14/9 = 1/21, 6/14/3 = 1/7
    w = balance_weights(t, "label")
    assert w == pytest.approx([1 / 21] * 6 + [1 / 7] * 2 + [1 / 21] * 3 + [1 / 7, 1 / 14, 1 / 14])
    assert balance_weights(t, "none") is None
    with pytest.raises(ValueError, match="unknown balance"):
        balance_weights(t, "other")


def test_weighted_order_is_seeded_draws_in_proportion():
    # sample 0 carries 3/4 of the weight, samples 1..3 1/12 each: over 40 epochs of 4 draws (160
    # draws) sample 0 is expected 120 times; a plain permutation would give it exactly 40.
    weights = (0.75, 0.25 / 3, 0.25 / 3, 0.25 / 3)
    s = StepSchedule(4, 4, 2, 1, 0, 7, weights=weights)
    assert s.order(3) == StepSchedule(4, 4, 2, 1, 0, 7, weights=weights).order(3)  # resumable
    draws = [i for e in range(40) for i in s.order(e)]
    assert len(draws) == 160 and set(draws) <= {0, 1, 2, 3}
    assert 100 < draws.count(0) < 140
    with pytest.raises(ValueError, match="3 weights for 4 samples"):
        StepSchedule(4, 4, 2, 1, 0, 7, weights=weights[:3])
