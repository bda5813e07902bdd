"""The guard's evaluation reports: the paper's tables and a run-to-run comparison (pure: metrics dicts in, text out).

The paper reports two tables, F1 (x100, harmful = positive) per benchmark with a
sample-weighted average column: prompt (request) harmfulness over ToxicChat,
OpenAIModeration, AegisSafetyTest, SimpleSafetyTests, HarmBenchPrompt, WildGuardTest,
HarmImageTest, SPA-VL-Eval, and response harmfulness over HarmBenchResponse, SafeRLHF,
BeaverTails, XSTestResponseHarmful, WildGuardTest, SPA-VL-Eval. Benchmarks are ordered as in
the paper when their names match (case, spaces, dashes and underscores ignored), others follow
in the order they were evaluated.

Next to every model the tables show the trivial guard on the same rows: the F1 of answering
"harmful" to everything (*all-harmful*), the majority-class accuracy, and per class the harmful
recall and the unharmful recall (unharmful accuracy), per benchmark, per modality and per source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from guardrl.tasks.guard.metrics import AVG, BY_MODALITY, BY_SOURCE, benchmarks_in, slices

PAPER_ORDER: dict[str, tuple[str, ...]] = {
    "request": ("ToxicChat", "OpenAIModeration", "AegisSafetyTest", "SimpleSafetyTests", "HarmBenchPrompt",
                "WildGuardTest", "HarmImageTest", "SPA-VL-Eval"),
    "response": ("HarmBenchResponse", "SafeRLHF", "BeaverTails", "XSTestResponseHarmful", "WildGuardTest",
                 "SPA-VL-Eval"),
}
TITLES = {"request": "Prompt (request) harmfulness", "response": "Response harmfulness"}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def ordered_benchmarks(metrics: Mapping[str, float], task: str) -> list[str]:
    """Benchmarks scored for ``task``, in the paper's column order first."""
    have = [b for b in benchmarks_in(metrics) if f"guard/{b}/{task}/n" in metrics]
    rank = {_key(n): i for i, n in enumerate(PAPER_ORDER[task])}
    return sorted(have, key=lambda b: (rank.get(_key(b), len(rank)), have.index(b)))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def f1_table(runs: Mapping[str, Mapping[str, float]], task: str) -> str:
    """One paper-style table: a row per run, a column per benchmark, then the weighted average."""
    cols: list[str] = []
    for m in runs.values():
        cols += [b for b in ordered_benchmarks(m, task) if b not in cols]
    if not cols:
        return ""
    head = ["Model", *cols, "Weighted Average"]
    lines = [f"| {' | '.join(head)} |", f"|{'|'.join(['---'] + ['---:'] * (len(head) - 1))}|"]
    for run, m in runs.items():
        cells = [_pct(m.get(f"guard/{b}/{task}/f1")) for b in cols] + [_pct(m.get(f"guard/{AVG}/{task}/f1"))]
        lines.append(f"| {run} | {' | '.join(cells)} |")
    baselines: dict[str, list[str]] = {}  # the same rows give the same baseline: one row unless the rows differ
    for run, m in runs.items():
        cells = [_pct(m.get(f"guard/{b}/{task}/all_harmful_f1")) for b in cols]
        cells.append(_pct(m.get(f"guard/{AVG}/{task}/all_harmful_f1")))
        if cells not in baselines.values():
            baselines[run] = cells
    for run, cells in baselines.items():
        label = "*all-harmful (same rows)*" if len(baselines) == 1 else f"*all-harmful (rows of {run})*"
        lines.append(f"| {label} | {' | '.join(cells)} |")
    counts = []
    for b in cols:
        ns = [str(int(m[f"guard/{b}/{task}/n"])) if f"guard/{b}/{task}/n" in m else "-" for m in runs.values()]
        counts.append(ns[0] if len(set(ns)) == 1 else " / ".join(ns))  # differing counts: one per run
    lines.append(f"| *samples* | {' | '.join(counts)} | |")
    return "\n".join(lines)


def detail_table(metrics: Mapping[str, float]) -> str:
    """Per benchmark and task: F1, precision, recall, accuracy (x100), confusion counts, format failures, tokens."""
    head = "| Benchmark | Task | n | F1 | Precision | Recall | Accuracy | TP | FP | FN | TN | no prediction | format fail % | mean out tokens |"
    lines = [head, "|---|---|" + "---:|" * 12]
    for b in [*benchmarks_in(metrics), AVG]:
        for task in ("request", "response"):
            p = f"guard/{b}/{task}/"
            if p + "n" not in metrics:
                continue
            ints = [str(int(metrics.get(p + k, 0))) for k in ("tp", "fp", "fn", "tn", "missing")] if b != AVG else [
                "", "", "", "", ""]
            lines.append(
                f"| {'**weighted average**' if b == AVG else b} | {task} | {int(metrics[p + 'n'])} | "
                + " | ".join(_pct(metrics[p + k]) for k in ("f1", "precision", "recall", "accuracy"))
                + f" | {' | '.join(ints)} | {100 * metrics.get(f'guard/{b}/format_failure_rate', 0):.1f}"
                + f" | {metrics.get(f'guard/{b}/mean_output_tokens', 0):.1f} |"
            )
    return "\n".join(lines)


CLASS_COLS = ("n", "harmful %", "F1", "all-harmful F1", "lift", "accuracy", "majority acc.", "harmful recall",
              "unharmful recall")


def scopes(metrics: Mapping[str, float]) -> list[tuple[str, str]]:
    """(label, key prefix) of every row the per-class tables show: each benchmark, its modalities when it has
    several, its sources when it has several, then (over two or more benchmarks) the weighted average."""
    out: list[tuple[str, str]] = []
    names = benchmarks_in(metrics)
    for b in [*names, AVG] if len(names) > 1 else names:  # one benchmark: its average is itself
        name = "**weighted average**" if b == AVG else b
        out.append((name, f"guard/{b}/"))
        mods = slices(metrics, b, BY_MODALITY)
        if len(mods) > 1:
            out += [(f"{name} · {v}", f"guard/{b}/{BY_MODALITY}/{v}/") for v in mods]
        out += [(f"{name} · {v}", f"guard/{b}/{BY_SOURCE}/{v}/") for v in slices(metrics, b, BY_SOURCE)]
    return out


def _class_cells(metrics: Mapping[str, float], p: str) -> list[str]:
    return [str(int(metrics[p + "n"])), f"{100 * metrics.get(p + 'harmful_share', 0):.1f}", _pct(metrics.get(p + "f1")),
            _pct(metrics.get(p + "all_harmful_f1")), _lift(metrics.get(p + "f1_lift")),
            _pct(metrics.get(p + "accuracy")), _pct(metrics.get(p + "majority_accuracy")),
            *_recalls(metrics, p)]


def _recalls(metrics: Mapping[str, float], p: str) -> list[str]:
    """Harmful and unharmful recall, ``-`` for a class the rows do not hold."""
    share = metrics.get(p + "harmful_share")
    return [_pct(metrics.get(p + "recall")) if share != 0 else "-",
            _pct(metrics.get(p + "unharmful_recall")) if share != 1 else "-"]


def _lift(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.2f}"


def class_table(metrics: Mapping[str, float], task: str) -> str:
    """Per benchmark / modality / source: the model's F1 and accuracy beside the trivial baselines, per-class recall."""
    rows = [(label, p + f"{task}/") for label, p in scopes(metrics) if p + f"{task}/n" in metrics]
    if not rows:
        return ""
    lines = [f"| rows | {' | '.join(CLASS_COLS)} |", "|---|" + "---:|" * len(CLASS_COLS)]
    lines += [f"| {label} | {' | '.join(_class_cells(metrics, p))} |" for label, p in rows]
    return "\n".join(lines)


CLASS_NOTE = ("*all-harmful F1*: the F1 of answering harmful to every row; *lift* = F1 - all-harmful F1; "
              "*majority acc.*: always answering the majority class; *harmful recall* = TP / gold harmful, "
              "*unharmful recall* = TN / gold unharmful (the unharmful accuracy).")


def markdown_report(run_name: str, metrics: Mapping[str, float], header: Sequence[str] = ()) -> str:
    """The whole ``results.md``: header lines, the two paper tables, the per-class tables, the detail table."""
    parts = [f"# Evaluation: {run_name}", "", *header, ""]
    for task in ("request", "response"):
        table = f1_table({run_name: metrics}, task)
        if table:
            parts += [f"## {TITLES[task]} — F1 (harmful = positive, x100)", "", table, ""]
    for task in ("request", "response"):
        table = class_table(metrics, task)
        if table:
            parts += [f"## {TITLES[task]} — per class, beside the trivial baselines (x100)", "", table, ""]
    parts += [CLASS_NOTE, ""]
    parts += ["## Details", "", detail_table(metrics), "",
              "*no prediction*: the output did not parse, or answered `Response: None` to a labelled response; "
              "such a sample is scored as the wrong class (see guardrl/tasks/guard/metrics.py).", ""]
    return "\n".join(parts)


def compare_report(name_a: str, a: Mapping[str, float], name_b: str, b: Mapping[str, float]) -> str:
    """The two runs side by side in the paper's tables, plus a row of deltas (B - A, F1 points)."""
    parts = [f"# {name_b} vs {name_a}", ""]
    for task in ("request", "response"):
        table = f1_table({name_a: a, name_b: b}, task)
        if not table:
            continue
        cols: list[str] = []
        for m in (a, b):
            cols += [x for x in ordered_benchmarks(m, task) if x not in cols]
        deltas = []
        for bench in [*cols, AVG]:
            k = f"guard/{bench}/{task}/f1"
            deltas.append(f"{100 * (b[k] - a[k]):+.2f}" if k in a and k in b else "-")
        rows = table.splitlines()
        rows.insert(len(rows) - 1, f"| Δ (B - A) | {' | '.join(deltas)} |")
        parts += [f"## {TITLES[task]} — F1", "", *rows, ""]
    for task in ("request", "response"):
        table = compare_class_table(name_a, a, name_b, b, task)
        if table:
            parts += [f"## {TITLES[task]} — per class (x100)", "", table, ""]
    other = []
    for k in ("format_failure_rate", "mean_output_tokens"):
        key = f"guard/{AVG}/{k}"
        if key in a and key in b:
            scale, label = (100, "format failures (%)") if k == "format_failure_rate" else (1, k)
            other.append(f"| {label} | {scale * a[key]:.2f} | {scale * b[key]:.2f} | {scale * (b[key] - a[key]):+.2f} |")
    if other:
        parts += ["## Other", "", f"| metric | {name_a} | {name_b} | Δ |", "|---|---:|---:|---:|", *other, ""]
    return "\n".join(parts)


def compare_class_table(name_a: str, a: Mapping[str, float], name_b: str, b: Mapping[str, float], task: str) -> str:
    """Per row set of both runs: the baseline, each run's F1, lift and per-class recall (runs scored on other rows:
    both counts shown)."""
    rows: list[tuple[str, str]] = []
    for label, p in [*scopes(a), *scopes(b)]:
        if (label, p) not in rows and (p + f"{task}/n" in a or p + f"{task}/n" in b):
            rows.append((label, p))
    if not rows:
        return ""
    head = ["rows", "n", "all-harmful F1", f"F1 {name_a}", f"F1 {name_b}", f"lift {name_a}", f"lift {name_b}",
            f"harmful recall {name_a}", f"harmful recall {name_b}", f"unharmful recall {name_a}",
            f"unharmful recall {name_b}"]
    lines = [f"| {' | '.join(head)} |", "|---|" + "---:|" * (len(head) - 1)]
    for label, p in rows:
        k = p + f"{task}/"
        ns = [str(int(m[k + "n"])) if k + "n" in m else "-" for m in (a, b)]
        bases = [_pct(m.get(k + "all_harmful_f1")) for m in (a, b)]
        cells = [ns[0] if ns[0] == ns[1] else " / ".join(ns), bases[0] if bases[0] == bases[1] else " / ".join(bases)]
        for key, fmt in (("f1", _pct), ("f1_lift", _lift)):
            cells += [fmt(a.get(k + key)), fmt(b.get(k + key))]
        ra, rb = (_recalls(m, k) if k + "n" in m else ["-", "-"] for m in (a, b))
        cells += [ra[0], rb[0], ra[1], rb[1]]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)
