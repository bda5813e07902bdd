"""Paper-layout tables and comparisons from metrics dicts (pure)."""

from __future__ import annotations

from guardrl.tasks.guard.metrics import Scored, evaluate_sets
from guardrl.tasks.guard.report import compare_report, f1_table, markdown_report, ordered_benchmarks

H, U = "harmful", "unharmful"


def _metrics(f1_hits: dict[str, int]):
    # each benchmark: 4 harmful request samples, `hits` of them predicted harmful -> F1 = 2h / (h + 4)
    return evaluate_sets({
        name: [Scored(H, None, H if i < hits else U, None, True, 10) for i in range(4)]
        for name, hits in f1_hits.items()
    })


def test_columns_follow_the_paper_whatever_the_spelling():
    m = _metrics({"spa_vl_eval": 1, "mine": 2, "toxic-chat": 3, "HarmImageTest": 4})
    assert ordered_benchmarks(m, "request") == ["toxic-chat", "HarmImageTest", "spa_vl_eval", "mine"]
    table = f1_table({"run": m}, "request")
    head = table.splitlines()[0]
    assert head == "| Model | toxic-chat | HarmImageTest | spa_vl_eval | mine | Weighted Average |"
    # F1 x100: toxic 2*3/7 = 85.71, HarmImage 100, spa 2/5 = 40, mine 4/6 = 66.67; weighted (equal n) = 73.10
    assert table.splitlines()[2] == "| run | 85.71 | 100.00 | 40.00 | 66.67 | 73.10 |"
    assert "Response harmfulness" not in markdown_report("run", m)


def test_compare_rows_and_deltas():
    a = _metrics({"ToxicChat": 2, "X": 4})
    b = _metrics({"ToxicChat": 4, "X": 4})
    text = compare_report("A", a, "B", b)
    # ToxicChat F1 2*2/6 = 66.67 -> 100: +33.33; average (66.67 + 100)/2 = 83.33 -> 100: +16.67
    assert "| Δ (B - A) | +33.33 | +0.00 | +16.67 |" in text
    assert text.index("| A |") < text.index("| B |") < text.index("Δ (B - A)")


def _rec(g, p, mod):
    return Scored(g, None, p, None, True, 10, modality=mod, source="s")


def test_baseline_row_and_per_class_table_by_hand():
    # 3 harmful text rows predicted H H U, 1 unharmful text row predicted H, 2 harmful image rows predicted H U
    # whole: tp=3 fp=1 fn=2 tn=0 -> F1 = 6/9 = 66.67; P=5 N=1: all-harmful F1 = 10/11 = 90.91, lift -24.24
    #        accuracy 3/6 = 50.00, majority accuracy 5/6 = 83.33, harmful recall 3/5 = 60.00, unharmful recall 0
    # text:  tp=2 fp=1 fn=1 -> F1 = 4/6 = 66.67; all-harmful 6/7 = 85.71; lift -19.05; unharmful recall 0.00
    # image: tp=1 fn=1 -> F1 = 2/3 = 66.67; all-harmful 100; lift -33.33; no unharmful image row -> "-"
    recs = [_rec(H, H, "text"), _rec(H, H, "text"), _rec(H, U, "text"), _rec(U, H, "text"), _rec(H, H, "image"),
            _rec(H, U, "image")]
    m = evaluate_sets({"bench": recs})
    table = f1_table({"run": m}, "request")
    assert "| run | 66.67 | 66.67 |" in table
    assert "| *all-harmful (same rows)* | 90.91 | 90.91 |" in table
    text = markdown_report("run", m)
    assert "| bench | 6 | 83.3 | 66.67 | 90.91 | -24.24 | 50.00 | 83.33 | 60.00 | 0.00 |" in text
    assert "| bench · text | 4 | 75.0 | 66.67 | 85.71 | -19.05 | 50.00 | 75.00 | 66.67 | 0.00 |" in text
    assert "| bench · image | 2 | 100.0 | 66.67 | 100.00 | -33.33 | 50.00 | 100.00 | 50.00 | - |" in text
    assert "weighted average** ·" not in text  # one benchmark: no average rows


def test_compare_shows_the_baseline_once_and_both_runs_per_class():
    # A: the 4 text rows of the test above; B on the same rows predicts H H H U: tp=3 tn=1 -> F1 100
    # all-harmful: P=3 N=1 -> 6/7 = 85.71 (same rows, shown once); lifts -19.05 and +14.29
    a_recs = [_rec(H, H, "text"), _rec(H, H, "text"), _rec(H, U, "text"), _rec(U, H, "text")]
    b_recs = [_rec(H, H, "text"), _rec(H, H, "text"), _rec(H, H, "text"), _rec(U, U, "text")]
    text = compare_report("A", evaluate_sets({"x": a_recs}), "B", evaluate_sets({"x": b_recs}))
    assert text.count("*all-harmful (same rows)* | 85.71 | 85.71 |") == 1
    assert "| x | 4 | 85.71 | 66.67 | 100.00 | -19.05 | +14.29 | 66.67 | 100.00 | 0.00 | 100.00 |" in text
