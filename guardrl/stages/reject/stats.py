"""Rejection-sampling statistics: seen / kept / format failures / truncated / correct completions per
source x modality x label, and the prompts neither kept nor judged, as manifest rows and a table."""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from guardrl.core.schema import Sample


def label_key(s: Sample) -> str:
    """The stats key of a sample's gold labels: ``request/response`` (``none`` when absent)."""
    return f"{s.label_request or 'none'}/{s.label_response or 'none'}"


class Stats:
    """Seen / kept / format failures / truncated / correct completions per source x modality x label,
    and the prompts neither kept nor judged (``prompt_too_long``, ``undecided``, ``errors``)."""

    FIELDS = ("seen", "kept", "completions", "format_failures", "truncated", "correct", "undecided",
              "prompt_too_long", "errors")

    def __init__(self) -> None:
        self._c: dict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(self.FIELDS, 0))

    def add(self, s: Sample, j: Mapping[str, Any], decision: str) -> None:
        c = self._c[(s.source, s.modality, label_key(s))]
        c["seen"] += 1
        c["kept"] += int(decision == "kept")
        c["completions"] += j["k"]
        c["format_failures"] += j["format_failures"]
        c["truncated"] += j.get("truncated", 0)
        c["correct"] += j["correct"]
        c["undecided"] += int(decision == "undecided")
        c["prompt_too_long"] += int(decision == "prompt_too_long")
        c["errors"] += int(decision == "error")

    def rows(self) -> list[dict[str, Any]]:
        return [{"source": k[0], "modality": k[1], "label": k[2], **v} for k, v in sorted(self._c.items())]

    def totals(self) -> dict[str, int]:
        return {f: sum(v[f] for v in self._c.values()) for f in self.FIELDS}


def print_stats(rows: Sequence[Mapping[str, Any]], title: str = "rejection sampling") -> None:
    """Print stats rows (:meth:`Stats.rows`) as a rich table with a total line."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    cols = ("source", "modality", "label (req/resp)", "seen", "kept", "kept %", "format fail %", "truncated %",
            "accuracy %", "too long", "errors")
    for col in cols:
        t.add_column(col, justify="left" if col in cols[:3] else "right")

    def add(name: str, mod: str, lab: str, r: Mapping[str, Any]) -> None:
        comp = max(r["completions"], 1)
        t.add_row(name, mod, lab, str(r["seen"]), str(r["kept"]), f"{100 * r['kept'] / max(r['seen'], 1):.1f}",
                  f"{100 * r['format_failures'] / comp:.1f}", f"{100 * r.get('truncated', 0) / comp:.1f}",
                  f"{100 * r['correct'] / comp:.1f}", str(r.get("prompt_too_long", 0)), str(r.get("errors", 0)))

    for r in rows:
        add(r["source"], r["modality"], r["label"], r)
    total = {f: sum(r.get(f, 0) for r in rows) for f in Stats.FIELDS}
    add("total", "", "", total)
    Console(width=None if sys.stdout.isatty() else 140).print(t)
