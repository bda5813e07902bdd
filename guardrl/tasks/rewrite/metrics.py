"""Metrics of the rewriter's own output (evaluation of the rewrite's *effect* on a target VLM is the rewrite
evaluation stage's): parse rate, rewrite length, how often the prompt is passed on unchanged, per label."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from guardrl.core.schema import LABELS


@dataclass(frozen=True)
class RewriteScored:
    """One evaluated completion (plain data, sent between processes)."""

    label: str | None
    format_ok: bool
    unchanged: bool
    rewrite_chars: int
    output_tokens: int
    modality: str | None = None
    source: str | None = None


def _rates(records: Sequence[RewriteScored]) -> dict[str, float]:
    n = len(records)
    ok = [r for r in records if r.format_ok]
    out = {"n": float(n), "parse_rate": len(ok) / n if n else float("nan"),
           "mean_output_tokens": sum(r.output_tokens for r in records) / n if n else float("nan"),
           "mean_rewrite_chars": sum(r.rewrite_chars for r in ok) / len(ok) if ok else float("nan"),
           "unchanged_rate": sum(r.unchanged for r in ok) / len(ok) if ok else float("nan")}
    return out


def evaluate_sets(sets: Mapping[str, Sequence[RewriteScored]], prefix: str = "rewrite") -> dict[str, float]:
    """``<prefix>/<set>/<metric>`` for each set, and ``<prefix>/<set>/<label>/<metric>`` per gold label
    (harmful prompts should be rewritten, unharmful ones usually passed on unchanged)."""
    out: dict[str, float] = {}
    for name, records in sets.items():
        for key, value in _rates(records).items():
            out[f"{prefix}/{name}/{key}"] = value
        for label in LABELS:
            part = [r for r in records if r.label == label]
            if part:
                for key, value in _rates(part).items():
                    out[f"{prefix}/{name}/{label}/{key}"] = value
    return out
