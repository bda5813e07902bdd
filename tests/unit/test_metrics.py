"""guardrl.tasks.guard.metrics: F1 (harmful = positive) and friends checked against scikit-learn and by hand."""

from __future__ import annotations

import random

import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from guardrl.tasks.guard.metrics import (
    HARMFUL,
    UNHARMFUL,
    Scored,
    benchmarks_in,
    compare,
    confusion,
    evaluate_sets,
    recall_by_modality,
    set_metrics,
    task_confusion,
    weighted_averages,
)

H, U = HARMFUL, UNHARMFUL


def _flip(label):
    return U if label == H else H


def _sk(gold, pred):
    """scikit-learn's view: drop unlabelled samples, a missing prediction becomes the wrong class."""
    pairs = [(g, p if p is not None else _flip(g)) for g, p in zip(gold, pred, strict=True) if g is not None]
    y = [g == H for g, _ in pairs]
    yhat = [p == H for _, p in pairs]
    kw = {"zero_division": 0}
    return {
        "f1": f1_score(y, yhat, **kw),
        "precision": precision_score(y, yhat, **kw),
        "recall": recall_score(y, yhat, **kw),
        "accuracy": accuracy_score(y, yhat),
    }


def test_hand_worked_example():
    # gold:  H H H U U U ; pred: H U None H U None
    # H,H -> tp; H,U -> fn; H,None -> fn (missing); U,H -> fp; U,U -> tn; U,None -> fp (missing)
    # tp=1 fp=2 fn=2 tn=1: P=1/3, R=1/3, F1=2/(2+2+2)=1/3, acc=2/6
    c = confusion([H, H, H, U, U, U], [H, U, None, H, U, None])
    assert (c.tp, c.fp, c.fn, c.tn, c.missing) == (1, 2, 2, 1, 2)
    assert c.precision == pytest.approx(1 / 3)
    assert c.recall == pytest.approx(1 / 3)
    assert c.f1 == pytest.approx(1 / 3)
    assert c.accuracy == pytest.approx(2 / 6)


@pytest.mark.parametrize("seed", range(20))
def test_matches_sklearn_on_random_fixtures(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 60)
    gold = [rng.choice([H, U, None]) for _ in range(n)]
    pred = [rng.choice([H, U, None]) for _ in range(n)]
    if all(g is None for g in gold):
        gold[0] = H
    c = confusion(gold, pred).as_dict()
    for k, v in _sk(gold, pred).items():
        assert c[k] == pytest.approx(v), (k, gold, pred)


def test_zero_division_is_zero_like_sklearn():
    c = confusion([U, U], [U, U])  # no positives anywhere
    assert c.f1 == 0.0 and c.precision == 0.0 and c.recall == 0.0 and c.accuracy == 1.0
    assert c.f1 == f1_score([0, 0], [0, 0], zero_division=0)


def test_format_failure_counts_as_wrong_even_if_labels_were_set():
    # A format failure never helps: labels on a failed record are ignored.
    rec = Scored(gold_request=H, gold_response=None, pred_request=H, pred_response=None, format_ok=False)
    c = task_confusion([rec], "request")
    assert (c.tp, c.fn, c.missing) == (0, 1, 1)


def test_response_none_when_a_response_is_labelled_is_wrong():
    recs = [
        Scored(H, U, H, None, True, 10),  # request right; response missing -> fp
        Scored(U, H, U, H, True, 20),  # both right
    ]
    m = set_metrics("bench", recs)
    assert m["guard/bench/request/f1"] == 1.0
    assert m["guard/bench/response/fp"] == 1 and m["guard/bench/response/tp"] == 1
    assert m["guard/bench/response/missing"] == 1
    assert m["guard/bench/mean_output_tokens"] == 15
    assert m["guard/bench/format_failure_rate"] == 0


def test_task_without_labels_is_left_out():
    m = set_metrics("txt", [Scored(H, None, H, None, True, 3)])
    assert "guard/txt/request/f1" in m
    assert not any(k.startswith("guard/txt/response/") for k in m)


def test_weighted_average_by_hand():
    # set a: 3 request samples, F1 = 1 (tp=2, tn=1); set b: 1 request sample, fn -> F1 = 0
    # weighted request F1 = (3*1 + 1*0) / 4 = 0.75 (not the unweighted 0.5)
    a = [Scored(H, None, H, None, True, 4), Scored(H, None, H, None, True, 4), Scored(U, None, U, None, True, 4)]
    b = [Scored(H, None, U, None, True, 8)]
    m = evaluate_sets({"a": a, "b": b})
    assert m["guard/a/request/f1"] == 1.0 and m["guard/b/request/f1"] == 0.0
    assert m["guard/avg/request/f1"] == pytest.approx(0.75)
    assert m["guard/avg/request/n"] == 4
    assert m["guard/avg/mean_output_tokens"] == pytest.approx((3 * 4 + 8) / 4)
    assert "guard/avg/response/f1" not in m
    assert weighted_averages(m)["guard/avg/request/accuracy"] == pytest.approx(0.75)


def test_weighted_average_matches_formula_on_random_sets():
    rng = random.Random(7)
    sets = {}
    for name in ("s1", "s2", "s3"):
        sets[name] = [
            Scored(rng.choice([H, U]), rng.choice([H, U, None]), rng.choice([H, U]), rng.choice([H, U, None]),
                   rng.random() > 0.1, rng.randint(1, 50))
            for _ in range(rng.randint(5, 40))
        ]
    m = evaluate_sets(sets)
    for task in ("request", "response"):
        names = [s for s in sets if f"guard/{s}/{task}/n" in m]
        f1s = []
        ns = []
        for s in names:
            gold = [getattr(r, f"gold_{task}") for r in sets[s]]
            pred = [getattr(r, f"pred_{task}") if r.format_ok else None for r in sets[s]]
            f1s.append(_sk(gold, pred)["f1"])
            ns.append(sum(g is not None for g in gold))
        expect = sum(f * n for f, n in zip(f1s, ns, strict=True)) / sum(ns)
        assert m[f"guard/avg/{task}/f1"] == pytest.approx(expect)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="maybe"):
        confusion([H], ["maybe"])
    with pytest.raises(ValueError):
        confusion([H], [])
    with pytest.raises(ValueError):
        set_metrics("a/b", [])


def test_compare_is_b_minus_a():
    assert compare({"guard/avg/request/f1": 0.5, "x": 1}, {"guard/avg/request/f1": 0.75}) == {
        "guard/avg/request/f1": 0.25
    }


def test_scripted_engine_outputs_through_the_scorer():
    """Metric arithmetic end to end from completions: a scripted 'engine' (fixed texts) is parsed and scored."""
    from guardrl.stages.eval.scoring import EvalItem, score

    def out(req, resp="None"):
        return f"<think>\nr\n</think>\n<result>\nRequest: {req}\nResponse: {resp}\n</result>"

    items = [
        EvalItem("1", "b", "q", None, (), H, None),
        EvalItem("2", "b", "q", "a", (), U, H),
        EvalItem("3", "b", "q", "a", (), U, U),
        EvalItem("4", "b", "q", None, (), H, None),
    ]
    texts = [out("harmful"), out("unharmful", "unharmful"), out("harmful", "unharmful"), "garbage"]
    recs = [score(it, t, 5) for it, t in zip(items, texts, strict=True)]
    m = set_metrics("b", recs)
    sk = _sk([H, U, U, H], [H, U, H, None])
    assert m["guard/b/request/f1"] == pytest.approx(sk["f1"])
    assert m["guard/b/request/accuracy"] == pytest.approx(sk["accuracy"])
    assert m["guard/b/response/f1"] == pytest.approx(_sk([H, U], [U, U])["f1"])
    assert m["guard/b/format_failure_rate"] == 0.25


def test_baselines_and_per_class_recall_on_hand_worked_counts():
    # tp=6 fp=2 fn=3 tn=4: P = 9 gold harmful, N = 6 gold unharmful, n = 15
    # F1 = 12 / (12 + 2 + 3) = 12/17; harmful recall = 6/9; unharmful recall = 4/6
    # all-harmful: tp=9 fp=6 fn=0 -> F1 = 18 / (18 + 6) = 0.75; majority (harmful) accuracy = 9/15 = 0.6
    # lift = 12/17 - 0.75 = -0.0441... (this model is *worse* than answering harmful to everything)
    gold = [H] * 9 + [U] * 6
    pred = [H] * 6 + [U] * 3 + [H] * 2 + [U] * 4
    c = confusion(gold, pred)
    assert (c.tp, c.fp, c.fn, c.tn) == (6, 2, 3, 4)
    d = c.as_dict()
    assert d["f1"] == pytest.approx(12 / 17)
    assert d["recall"] == pytest.approx(6 / 9)
    assert d["unharmful_recall"] == pytest.approx(4 / 6)
    assert d["harmful_share"] == pytest.approx(9 / 15)
    assert d["all_harmful_f1"] == pytest.approx(0.75)
    assert d["majority_accuracy"] == pytest.approx(0.6)
    assert d["f1_lift"] == pytest.approx(12 / 17 - 0.75)
    # the all-harmful baseline is exactly the F1 of predicting harmful everywhere
    assert confusion(gold, [H] * 15).f1 == pytest.approx(d["all_harmful_f1"])
    # unharmful majority: P=1, N=3 -> majority accuracy 3/4; all-harmful F1 = 2/(2+3) = 0.4
    c2 = confusion([H, U, U, U], [U, U, U, U])
    assert c2.majority_accuracy == pytest.approx(0.75) and c2.all_harmful_f1 == pytest.approx(0.4)
    assert c2.unharmful_recall == 1.0 and c2.recall == 0.0


def test_missing_prediction_never_raises_the_per_class_recall():
    # gold H U, pred None None: missing -> fn and fp: harmful recall 0, unharmful recall 0; baselines unchanged
    c = confusion([H, U], [None, None])
    assert (c.recall, c.unharmful_recall) == (0.0, 0.0)
    assert c.all_harmful_f1 == pytest.approx(2 / 3) and c.majority_accuracy == 0.5


def test_breakdown_by_modality_and_source_with_weighted_averages():
    # bench "a": text rows from src1: (H->H), (U->H); image rows from src2: (H->H), (H->U), (U->U)
    #   text:  tp=1 fp=1        -> F1 = 2/3, harmful recall 1, unharmful recall 0, all-harmful F1 = 2/3
    #   image: tp=1 fn=1 tn=1   -> F1 = 2/3, harmful recall 1/2, unharmful recall 1, all-harmful F1 = 4/5
    #   whole: tp=2 fp=1 fn=1 tn=1 -> F1 = 4/6, all-harmful: P=3 N=2 -> 6/8 = 0.75, majority acc 3/5
    # bench "b": one text row (U->U): text unharmful recall 1, F1 0, all-harmful F1 0, single source -> no by_source
    # avg text (weighted by n: a 2 rows, b 1 row): unharmful recall (2*0 + 1*1)/3 = 1/3; image only in a
    def r(g, p, mod, src):
        return Scored(g, None, p, None, True, 1, modality=mod, source=src)

    a = [r(H, H, "text", "src1"), r(U, H, "text", "src1"), r(H, H, "image", "src2"), r(H, U, "image", "src2"),
         r(U, U, "image", "src2")]
    b = [r(U, U, "text", "only")]
    m = evaluate_sets({"a": a, "b": b})
    assert m["guard/a/request/f1"] == pytest.approx(4 / 6)
    assert m["guard/a/request/all_harmful_f1"] == pytest.approx(0.75)
    assert m["guard/a/request/majority_accuracy"] == pytest.approx(0.6)
    t, i = "guard/a/by_modality/text/request/", "guard/a/by_modality/image/request/"
    assert (m[t + "n"], m[t + "recall"], m[t + "unharmful_recall"]) == (2, 1.0, 0.0)
    assert m[t + "all_harmful_f1"] == pytest.approx(2 / 3)
    assert m[i + "recall"] == pytest.approx(0.5) and m[i + "unharmful_recall"] == 1.0
    assert m[i + "all_harmful_f1"] == pytest.approx(0.8) and m[i + "f1_lift"] == pytest.approx(2 / 3 - 0.8)
    assert m["guard/a/by_source/src2/request/n"] == 3 and m["guard/a/by_source/src1/request/tp"] == 1
    assert not any(k.startswith("guard/b/by_source/") for k in m)
    assert m["guard/avg/by_modality/text/request/n"] == 3
    assert m["guard/avg/by_modality/text/request/unharmful_recall"] == pytest.approx(1 / 3)
    assert m["guard/avg/by_modality/image/request/n"] == 3
    # weighted average of the baseline: (5 * 0.75 + 1 * 0) / 6 = 0.625; lift = avg F1 - avg baseline
    assert m["guard/avg/request/all_harmful_f1"] == pytest.approx(0.625)
    assert m["guard/avg/request/f1_lift"] == pytest.approx(m["guard/avg/request/f1"] - 0.625)
    assert benchmarks_in(m) == ["a", "b"]


def test_recall_by_modality_from_rows():
    # text: gold H H U, pred H U U -> harmful recall 1/2, unharmful recall 1; image: gold U, pred None -> 0
    rows = [(H, H, "text"), (H, U, "text"), (U, U, "text"), (U, None, "image"), (None, H, "image")]
    out = recall_by_modality(rows)
    assert out["text"] == {"harmful_recall": 0.5, "unharmful_recall": 1.0, "harmful": 2, "unharmful": 1}
    assert out["image"] == {"harmful_recall": 0.0, "unharmful_recall": 0.0, "harmful": 0, "unharmful": 1}


def test_scorer_carries_modality_and_source():
    from guardrl.stages.eval.scoring import EvalItem, modality_of, score

    text = "<think>\nr\n</think>\n<result>\nRequest: harmful\nResponse: None\n</result>"
    png = (b"\x89PNG",)
    # given modality wins; else: no image -> text, image and no text -> image, image and text -> text_image
    assert modality_of(EvalItem("1", "b", "q", None, (), H, None, "image", "s")) == "image"
    assert modality_of(EvalItem("2", "b", "q", None, (), H, None)) == "text"
    assert modality_of(EvalItem("3", "b", "  ", None, png, H, None)) == "image"
    assert modality_of(EvalItem("4", "b", "q", None, png, H, None)) == "text_image"
    rec = score(EvalItem("5", "b", "q", None, png, H, None, source="AdvBench"), text, 3)
    assert (rec.modality, rec.source, rec.pred_request) == ("text_image", "AdvBench", H)
    assert score(EvalItem("6", "b", "q", None, (), H, None), text, 3).source is None
