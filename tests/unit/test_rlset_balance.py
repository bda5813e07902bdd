"""augment.balance=label / label_presence: the RL set's hard samples with as many harmful as unharmful requests
(and, for label_presence, as many with a response as without in each label)."""

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


def test_balanced_pool_label_presence_evens_the_four_cells():
    # (label, response present): H bare 0,1,2,3; H+resp 4,5; U bare 6,7,8; U+resp 9,10,11; 12 response-only
    labels = [H] * 6 + [U] * 6 + [None]
    present = [False] * 4 + [True] * 2 + [False] * 3 + [True] * 4
    pool = balanced_pool(labels, random.Random(0), present)
    # smallest cell: H+resp (2 rows) -> 2 per cell + the response-only row = 9
    assert pool == sorted(pool) and len(pool) == 9 and {4, 5, 12} <= set(pool)
    for cell in ({0, 1, 2, 3}, {6, 7, 8}, {9, 10, 11}):
        assert len(set(pool) & cell) == 2
    assert len({tuple(balanced_pool(labels, random.Random(s), present)) for s in range(20)}) > 1


def test_balanced_pool_label_presence_skips_an_empty_cell():
    # no harmful request with a response: the other three cells keep 1 each (the smallest, U bare = 1 row)
    labels = [H, H, H, U, U, U]
    present = [False, False, False, False, True, True]
    pool = balanced_pool(labels, random.Random(0), present)
    assert len(pool) == 3 and 3 in pool and len(set(pool) & {0, 1, 2}) == 1 and len(set(pool) & {4, 5}) == 1


def test_balance_option_is_checked():
    assert AugmentConfig.from_dict({"data": "d", "out": "o"}).balance == "none"
    assert AugmentConfig.from_dict({"data": "d", "out": "o", "balance": "label"}).balance == "label"
    assert AugmentConfig.from_dict({"data": "d", "out": "o", "balance": "label_presence"}).balance == "label_presence"
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


def test_build_rl_set_balances_label_and_presence(tmp_path):
    from guardrl.core.schema import Sample
    from guardrl.core.shards import iter_samples, write_samples
    from guardrl.stages.augment.runner import build_rl_set

    # harmful: 6 bare + 2 with a response; unharmful: 2 bare + 5 with a response (presence predicts the label)
    cells = [(H, False)] * 6 + [(H, True)] * 2 + [(U, False)] * 2 + [(U, True)] * 5
    rows = [Sample(id=f"r{i}", source="s", modality="text", request=f"q{i}", response="a" if p else None,
                   label_request=lab, label_response=U if p else None) for i, (lab, p) in enumerate(cells)]
    hard = write_samples(tmp_path / "hard", rows, stage="reject")
    cfg = AugmentConfig.from_dict({"data": str(hard), "out": str(tmp_path / "rl"), "share": 0.0, "dev_size": 0,
                                   "balance": "label_presence"})
    assert build_rl_set(cfg)["train"] == 8  # 2 per cell
    got = [(s.label_request, s.response is not None) for s in iter_samples(cfg.out)]
    assert all(got.count(c) == 2 for c in ((H, False), (H, True), (U, False), (U, True)))
