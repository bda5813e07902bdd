"""What the eval stage writes for any task: the task's own report when it has one, else one key/value table.

A task may give (optional hooks, see :mod:`guardrl.tasks.base`) ``report_markdown(run_name, metrics,
header)``, ``compare_markdown(name_a, a, name_b, b)``, ``write_plots(metrics, out_dir, run_name)`` and
``summary_line(metrics)``; the guard's draw the paper's tables and plots (:mod:`guardrl.tasks.guard.report`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def key_value_table(metrics: Mapping[str, float]) -> str:
    """Every metric as one row (sorted keys)."""
    lines = ["| Metric | Value |", "|---|---:|"]
    lines += [f"| {k} | {metrics[k]:.4g} |" for k in sorted(metrics)]
    return "\n".join(lines)


def markdown_report(task: Any, run_name: str, metrics: Mapping[str, float], header: Sequence[str] = ()) -> str:
    """``results.md``: the task's report, or the header and one key/value table."""
    hook = getattr(task, "report_markdown", None)
    if hook is not None:
        return hook(run_name, metrics, header)
    return "\n".join([f"# Evaluation: {run_name}", "", *header, "", "## Metrics", "", key_value_table(metrics), ""])


def compare_report(task: Any, name_a: str, a: Mapping[str, float], name_b: str, b: Mapping[str, float]) -> str:
    """Two runs side by side: the task's comparison, or every shared metric with its delta (B - A)."""
    hook = getattr(task, "compare_markdown", None)
    if hook is not None:
        return hook(name_a, a, name_b, b)
    lines = [f"# {name_b} vs {name_a}", "", f"| metric | {name_a} | {name_b} | Δ |", "|---|---:|---:|---:|"]
    lines += [f"| {k} | {a[k]:.4g} | {b[k]:.4g} | {b[k] - a[k]:+.4g} |" for k in sorted(set(a) & set(b))]
    return "\n".join([*lines, ""])


def write_plots(task: Any, metrics: Mapping[str, float], out_dir: Path, run_name: str) -> list[Path]:
    """The task's plots (none when it has no ``write_plots`` hook)."""
    hook = getattr(task, "write_plots", None)
    return list(hook(metrics, out_dir, run_name)) if hook is not None else []


def summary_line(task: Any, metrics: Mapping[str, float]) -> str:
    """One log line's worth of the metrics: the task's, or how many there are."""
    hook = getattr(task, "summary_line", None)
    return hook(metrics) if hook is not None else f"task {task.name}: {len(metrics)} metrics"
