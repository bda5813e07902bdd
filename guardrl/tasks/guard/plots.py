"""PNG plots of an evaluation (matplotlib, Agg backend): per-benchmark F1 bars beside the all-harmful
baseline, per-class recall by modality, confusion matrices (the output-length histogram is every task's: guardrl.core.plots). Each function writes one file and returns its path."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from guardrl.core.plots import pyplot, save_figure
from guardrl.tasks.guard.metrics import AVG, BY_MODALITY, benchmarks_in, slices
from guardrl.tasks.guard.report import ordered_benchmarks


def f1_bars(metrics: Mapping[str, float], out: Path, title: str = "") -> Path:
    """Grouped bars: F1 (x100) per benchmark and weighted average for each task, each beside the F1 of the
    trivial guard that answers harmful to every row (grey), so a bar cannot look good by itself."""
    plt = pyplot()
    tasks = [t for t in ("request", "response") if f"guard/{AVG}/{t}/n" in metrics]
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(6 * max(len(tasks), 1), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=False):
        names = [*ordered_benchmarks(metrics, task), AVG]
        vals = [100 * metrics[f"guard/{b}/{task}/f1"] for b in names]
        base = [100 * metrics.get(f"guard/{b}/{task}/all_harmful_f1", 0.0) for b in names]
        x = range(len(names))
        bars = ax.bar([i - 0.2 for i in x], vals, width=0.4, color=["tab:blue"] * (len(names) - 1) + ["tab:orange"],
                      label="model")
        gbars = ax.bar([i + 0.2 for i in x], base, width=0.4, color="tab:gray", label="all-harmful (same rows)")
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.bar_label(gbars, fmt="%.1f", fontsize=7, color="dimgray")
        ax.set_xticks(list(x), ["weighted avg" if n == AVG else n for n in names], rotation=40, ha="right",
                      fontsize=8)
        ax.set_ylim(0, 110)
        ax.set_ylabel("F1 (harmful = positive)")
        ax.set_title(f"{task} harmfulness")
        ax.legend(fontsize=7, loc="lower right")
    return save_figure(plt, fig, out, title)


def class_recall(metrics: Mapping[str, float], out: Path, title: str = "") -> Path:
    """Harmful recall and unharmful recall (x100) per modality and task, over all benchmarks (weighted average)
    or the one benchmark; a dashed line at 50 marks a coin flip."""
    plt = pyplot()
    names = benchmarks_in(metrics)
    scope = names[0] if len(names) == 1 else AVG
    tasks = [t for t in ("request", "response") if f"guard/{scope}/{t}/n" in metrics]
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(5 * max(len(tasks), 1), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=False):
        rows = [("all", f"guard/{scope}/{task}/")]
        rows += [(m, f"guard/{scope}/{BY_MODALITY}/{m}/{task}/") for m in slices(metrics, scope, BY_MODALITY)
                 if f"guard/{scope}/{BY_MODALITY}/{m}/{task}/n" in metrics]
        x = range(len(rows))
        h = [100 * metrics[p + "recall"] for _, p in rows]
        u = [100 * metrics[p + "unharmful_recall"] for _, p in rows]
        hb = ax.bar([i - 0.2 for i in x], h, width=0.4, color="tab:red", label="harmful recall")
        ub = ax.bar([i + 0.2 for i in x], u, width=0.4, color="tab:green", label="unharmful recall")
        ax.bar_label(hb, fmt="%.0f", fontsize=7)
        ax.bar_label(ub, fmt="%.0f", fontsize=7)
        ax.axhline(50, color="k", linestyle="--", linewidth=0.8)
        ax.set_xticks(list(x), [f"{name}\n(n={int(metrics[p + 'n'])})" for name, p in rows], fontsize=8)
        ax.set_ylim(0, 110)
        ax.set_title(f"{task}: per class ({'weighted avg' if scope == AVG else scope})", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    return save_figure(plt, fig, out, title)


def confusion_matrices(metrics: Mapping[str, float], out: Path, title: str = "") -> Path:
    """A 2x2 confusion matrix (gold rows, predicted columns; unparsed outputs counted as wrong) per benchmark x task."""
    plt = pyplot()
    panels = [(b, t) for t in ("request", "response") for b in ordered_benchmarks(metrics, t)]
    cols = min(4, max(len(panels), 1))
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (b, t) in zip(axes.flat, panels, strict=False):
        p = f"guard/{b}/{t}/"
        mat = [[metrics[p + "tp"], metrics[p + "fn"]], [metrics[p + "fp"], metrics[p + "tn"]]]
        ax.axis("on")
        ax.imshow(mat, cmap="Blues")
        top = max(max(r) for r in mat) or 1
        for i in range(2):
            for j in range(2):
                ax.text(j, i, str(int(mat[i][j])), ha="center", va="center", fontsize=10,
                        color="white" if mat[i][j] > top / 2 else "black")
        ax.set_xticks([0, 1], ["pred harmful", "pred unharmful"], fontsize=7)
        ax.set_yticks([0, 1], ["harmful", "unharmful"], fontsize=7)
        ax.set_title(f"{b} / {t}", fontsize=8)
    return save_figure(plt, fig, out, title)
