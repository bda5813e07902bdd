"""matplotlib (Agg backend) helpers shared by every task's plots, and the one plot every evaluation has."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(plt, fig, out: Path, title: str) -> Path:
    """Title, lay out, write ``out`` (PNG, 110 dpi), close; returns ``out``."""
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def length_histogram(lengths: Mapping[str, Sequence[int]], out: Path, title: str = "") -> Path:
    """Histogram of output tokens per sample, one series per benchmark, the mean as a dashed line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    all_len = [x for v in lengths.values() for x in v]
    bins = min(40, max(5, len(set(all_len))))
    ax.hist([list(v) for v in lengths.values()], bins=bins, stacked=True, label=list(lengths))
    ax.set_xlabel("output tokens per sample")
    ax.set_ylabel("samples")
    if all_len:
        ax.axvline(sum(all_len) / len(all_len), color="k", linestyle="--", linewidth=1, label="mean")
    ax.legend(fontsize=7)
    return save_figure(plt, fig, out, title or "output length")
