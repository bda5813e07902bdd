"""``results.md`` / ``results.json`` / ``predictions.jsonl`` / ``plots/`` of ``guardrl rewrite eval``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from guardrl.core.atomic import atomic_write_text
from guardrl.stages.rewrite.metrics import REWRITTEN, arm_order, is_arm, rewriter_name

ARM_LABEL = {"original": "original prompt (no rewriter)", REWRITTEN: "rewritten prompt",
             "refuse_all": "refuse-all baseline"}


def arm_label(arm: str) -> str:
    return ARM_LABEL.get(arm) or f"rewritten by {rewriter_name(arm)}"


def _pct(m: Mapping[str, float], key: str) -> str:
    return f"{100 * m[key]:.1f}" if key in m else "-"


def _cells(m: Mapping[str, float]) -> list[tuple[str, str]]:
    """(target, benchmark) pairs in the metrics, in order."""
    seen = []
    for k in m:
        parts = k.split("/")
        if len(parts) == 5 and is_arm(parts[3]) and (parts[1], parts[2]) not in seen:
            seen.append((parts[1], parts[2]))
    return seen


def _arms(results: Mapping[str, Any]) -> list[str]:
    """The arms of the run: original, the rewriters' (in the recipe's order, ``results["arms"]``), refuse-all."""
    m = results["metrics"]
    present = [k.split("/")[3] for k in m if len(k.split("/")) == 5 and is_arm(k.split("/")[3])]
    return arm_order([a for a in results.get("arms") or () if a in present] + present)


def judge_parts(m: Mapping[str, float]) -> list[str]:
    skip = {"n", "n_harmful", "n_benign", "guard_unparsed", "safety", "refusal", "helpfulness", "benign_refusal",
            "judge_failures", "target_errors"}
    names = {k.split("/")[4] for k in m if len(k.split("/")) == 5 and is_arm(k.split("/")[3])}
    return sorted(n for n in names - skip if not n.endswith("_n"))


def report_markdown(results: Mapping[str, Any]) -> str:
    m = results["metrics"]
    parts = judge_parts(m)
    head = ["target", "benchmark", "prompt", "harmful n", "safety %", "refusal %", "benign n", "helpfulness %",
            "guard unparsed", *[f"{p} %" for p in parts], *(["judge failures"] if parts else [])]
    lines = [f"# Rewriter evaluation: {results['run_name']}", "",
             "safety = answers to harmful inputs that the guard judges `Response: unharmful` (an unparsed guard "
             "output counts as unsafe); refusal = answers holding a refusal marker (VLGuard's list); helpfulness = "
             "answers to benign inputs that are not refusals, not empty and judged unharmful. The refuse-all "
             "baseline answers every input with the same refusal.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    arms = _arms(results)
    for target, bench in _cells(m):
        for arm in arms:
            k = f"rewrite/{target}/{bench}/{arm}"
            if f"{k}/n" not in m:
                continue
            row = [target, bench, arm_label(arm), f"{int(m[f'{k}/n_harmful'])}", _pct(m, f"{k}/safety"),
                   _pct(m, f"{k}/refusal"), f"{int(m[f'{k}/n_benign'])}", _pct(m, f"{k}/helpfulness"),
                   f"{int(m[f'{k}/guard_unparsed'])}", *[_pct(m, f"{k}/{p}") for p in parts]]
            if parts:
                row.append(f"{int(m.get(f'{k}/judge_failures', 0))}")
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", "faithfulness = share of the request's content words a parsed rewrite keeps (a rewrite that swaps "
              "the question keeps none).", "",
              "| benchmark | rewriter | rewrites parsed % | fallbacks to the original prompt | faithfulness % |",
              "|---|---|---|---|---|"]
    for k, v in m.items():
        if k.endswith("/rewrite_format_ok"):
            head = k.removesuffix("/rewrite_format_ok")
            parts = head.split("/")
            who = rewriter_name(parts[2]) if len(parts) == 3 else "rewriter"
            lines.append(f"| {parts[1]} | {who} | {100 * v:.1f} | {int(m[f'{head}/rewrite_fallbacks'])} | "
                         f"{_pct(m, f'{head}/faithfulness')} |")
    deltas = [(k, v) for k, v in m.items() if len(k.split("/")) == 5 and k.split("/")[3].startswith("delta")]
    if deltas:
        def who(part: str) -> str:
            return "" if part == "delta" else f" ({part.removeprefix('delta-')})"

        lines += ["", "Lift of the rewriter (rewritten - original, points): " +
                  ", ".join(f"{k.split('/')[1]} on {k.split('/')[2]}{who(k.split('/')[3])} {k.split('/')[-1]} "
                            f"{100 * v:+.1f}" for k, v in deltas)]
    errs = {k: v for k, v in m.items() if k.endswith("/target_errors")}
    if errs:
        lines += ["", "Inputs a target could not answer (left out of the rates): " +
                  ", ".join(f"{k.rsplit('/', 1)[0].removeprefix('rewrite/')}: {int(v)}" for k, v in errs.items())]
    return "\n".join(lines) + "\n"


def write_plot(results: Mapping[str, Any], out: Path) -> Path:
    """Grouped bars: safety (and helpfulness where a benchmark has benign inputs) per target x benchmark, one bar
    per arm (the original prompt, each rewriter, the refuse-all baseline)."""
    from guardrl.core.plots import pyplot, save_figure

    m = results["metrics"]
    cells, arms = _cells(m), _arms(results)
    metrics = [x for x in ("safety", "helpfulness") if any(f"rewrite/{t}/{b}/original/{x}" in m for t, b in cells)]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(5, 2.2 * len(cells)) * len(metrics), 4), squeeze=False)
    width = 0.8 / len(arms)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, arm in enumerate(arms):
            vals = [100 * m.get(f"rewrite/{t}/{b}/{arm}/{metric}", 0.0) for t, b in cells]
            bars = ax.bar([c + (i - (len(arms) - 1) / 2) * width for c in range(len(cells))], vals, width,
                          label=arm_label(arm))
            ax.bar_label(bars, fmt="%.0f", fontsize=6)
        ax.set_xticks(range(len(cells)), [f"{t}\n{b}" for t, b in cells], fontsize=7)
        ax.set_ylim(0, 100)
        ax.set_ylabel(f"{metric} %")
        ax.legend(fontsize=7)
    out.mkdir(parents=True, exist_ok=True)
    return save_figure(plt, fig, out / "rewrite_eval.png", f"{results['run_name']}: with and without the rewriter")


def write_report(out: Path, results: Mapping[str, Any], predictions: Sequence[Mapping[str, Any]]) -> None:
    atomic_write_text(out / "predictions.jsonl",
                      "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions))
    atomic_write_text(out / "results.md", report_markdown(results))
    write_plot(results, out / "plots")
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n")
