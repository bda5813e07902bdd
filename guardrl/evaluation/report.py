"""Markdown reports in the paper's layout, and run-to-run comparison (pure: metrics dicts in, text out).

The paper reports two tables, F1 (x100, harmful = positive) per benchmark with a
sample-weighted average column: prompt (request) harmfulness over ToxicChat,
OpenAIModeration, AegisSafetyTest, SimpleSafetyTests, HarmBenchPrompt, WildGuardTest,
HarmImageTest, SPA-VL-Eval, and response harmfulness over HarmBenchResponse, SafeRLHF,
BeaverTails, XSTestResponseHarmful, WildGuardTest, SPA-VL-Eval. Benchmarks are ordered as in
the paper when their names match (case, spaces, dashes and underscores ignored), others follow
in the order they were evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from guardrl.metrics import AVG, benchmarks_in

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


def markdown_report(run_name: str, metrics: Mapping[str, float], header: Sequence[str] = ()) -> str:
    """The whole ``results.md``: header lines, the two paper tables, the detail table."""
    parts = [f"# Evaluation: {run_name}", "", *header, ""]
    for task in ("request", "response"):
        table = f1_table({run_name: metrics}, task)
        if table:
            parts += [f"## {TITLES[task]} — F1 (harmful = positive, x100)", "", table, ""]
    parts += ["## Details", "", detail_table(metrics), "",
              "*no prediction*: the output did not parse, or answered `Response: None` to a labelled response; "
              "such a sample is scored as the wrong class (see guardrl/metrics.py).", ""]
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
    other = []
    for k in ("format_failure_rate", "mean_output_tokens"):
        key = f"guard/{AVG}/{k}"
        if key in a and key in b:
            scale, label = (100, "format failures (%)") if k == "format_failure_rate" else (1, k)
            other.append(f"| {label} | {scale * a[key]:.2f} | {scale * b[key]:.2f} | {scale * (b[key] - a[key]):+.2f} |")
    if other:
        parts += ["## Other", "", f"| metric | {name_a} | {name_b} | Δ |", "|---|---:|---:|---:|", *other, ""]
    return "\n".join(parts)
