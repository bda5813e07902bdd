"""augment.balance=label: the RL set's hard samples with as many harmful as unharmful requests."""

from __future__ import annotations

import random

import pytest

from guardrl.stages.augment.runner import AugmentConfig, balanced_pool

H, U = "harmful", "unharmful"


def test_balanced_pool_keeps_the_rarer_label_and_unlabelled_rows():
    labels = [H, H, H, U, None, U, H]  # harmful at 0,1,2,6; unharmful at 3,5 (the rarer: 2); 4 has no request label
    pool = balanced_pool(labels, random.Random(0))
    assert pool == sorted(pool) and len(pool) == 5  # 2 unharmful + 2 of 4 harmful + the unlabelled row
    assert {3, 4, 5} <= set(pool)
    assert len(set(pool) & {0, 1, 2, 6}) == 2
    assert balanced_pool(labels, random.Random(0)) == pool  # seeded
    assert len({tuple(balanced_pool(labels, random.Random(s))) for s in range(20)}) > 1  # a draw, not the first rows


def test_balanced_pool_with_one_label_keeps_everything():
    assert balanced_pool([H, H, None], random.Random(0)) == [0, 1, 2]
    assert balanced_pool([U, U, U], random.Random(0)) == [0, 1, 2]  # nothing to balance against


def test_balance_option_is_checked():
    assert AugmentConfig.from_dict({"data": "d", "out": "o"}).balance == "none"
    assert AugmentConfig.from_dict({"data": "d", "out": "o", "balance": "label"}).balance == "label"
    with pytest.raises(ValueError, match="augment.balance must be one of"):
        AugmentConfig.from_dict({"data": "d", "out": "o", "balance": "labels"})


def test_build_rl_set_balances_the_hard_samples(tmp_path):
    from guardrl.core.schema import Sample
    from guardrl.core.shards import iter_samples, write_samples
    from guardrl.stages.augment.runner import build_rl_set

    # 9 harmful + 3 unharmful requests + 2 response-only rows; share 0: no joined rows (and no Ray)
    labels = [H] * 9 + [U] * 3
    rows = [Sample(id=f"r{i}", source="s", modality="text", request=f"q{i}", label_request=lab)
            for i, lab in enumerate(labels)]
    rows += [Sample(id=f"p{i}", source="s", modality="text", request="q", response="a", label_response=H)
             for i in range(2)]
    hard = write_samples(tmp_path / "hard", rows, stage="reject")
    cfg = AugmentConfig.from_dict({"data": str(hard), "out": str(tmp_path / "rl"), "share": 0.0, "dev_size": 0,
                                   "balance": "label"})
    summary = build_rl_set(cfg)
    got = [s.label_request for s in iter_samples(cfg.out)]
    # 3 unharmful + 3 of the 9 harmful + 2 response-only = 8
    assert summary["base"] == 8 and summary["train"] == 8
    assert (got.count(H), got.count(U), got.count(None)) == (3, 3, 2)
