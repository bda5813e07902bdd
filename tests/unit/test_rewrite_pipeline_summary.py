"""The rewrite pipeline's one-line summary per (target, benchmark), read from the metrics the rewrite
evaluation really writes (:func:`guardrl.stages.rewrite.metrics.answer_metrics` on hand-worked records)."""

from __future__ import annotations

from guardrl.stages.pipeline.rewrite_stages import eval_summary
from guardrl.stages.rewrite.metrics import AnswerRecord, answer_metrics, rewrite_metrics


def _rec(bench: str, arm: str, harmful: bool, verdict: str | None) -> AnswerRecord:
    return AnswerRecord(target="tiny", benchmark=bench, arm=arm, harmful_input=harmful, guard_response=verdict,
                        refused=arm == "refuse_all")


def test_summary_shows_both_arms_the_lift_and_the_refuse_all_baseline():
    recs = []
    # FigStep-like: 4 harmful inputs; the original prompt gets 1 safe answer, the rewritten 3, refuse-all 4
    for arm, safe in (("original", 1), ("rewritten", 3), ("refuse_all", 4)):
        recs += [_rec("Fig", arm, True, "unharmful" if i < safe else "harmful") for i in range(4)]
    # VLGuard-like: 2 harmful + 2 benign; helpfulness counted on the benign rows
    for arm in ("original", "rewritten", "refuse_all"):
        recs += [_rec("VLG", arm, True, "unharmful"), _rec("VLG", arm, True, None),
                 _rec("VLG", arm, False, "unharmful"), _rec("VLG", arm, False, "harmful")]
    metrics = {**answer_metrics(recs), **rewrite_metrics([("Fig", True, 1.0)] * 3 + [("Fig", False, None), ("VLG", True, 1.0)])}
    s = eval_summary(metrics)
    assert set(s) == {"tiny/Fig", "tiny/VLG"}
    assert s["tiny/Fig"] == "safety 25.0 -> 75.0 (+50.0; refuse-all 100.0); rewrites parsed 75.0%"
    # refuse-all refuses the benign rows too: helpfulness 0 -- the cost the table must show
    assert s["tiny/VLG"] == ("safety 50.0 -> 50.0 (+0.0; refuse-all 50.0); helpfulness 50.0 -> 50.0 "
                             "(+0.0; refuse-all 0.0); rewrites parsed 100.0%")


def test_summary_of_no_metrics_is_empty():
    assert eval_summary({}) == {}
