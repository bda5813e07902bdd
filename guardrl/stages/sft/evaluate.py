"""Quick check of an SFT model on a held-out split: greedy generation, parse rate, accuracy against
the most-frequent-gold baseline, and the task's own metrics.

Everything goes through the task (:func:`guardrl.tasks.get_task`): prompts from ``task.prompt_messages``,
a completion is correct when ``task.judge`` says so (the guard: it parses and matches every gold label
the sample has; ``Response: None`` where a response is labelled is wrong), ``metrics`` are
``task.metrics`` of the ``dev`` set (the guard's ``guard/dev/...``: per-label accuracy, F1 and the
majority-class accuracy per label). The baseline answers every sample with the split's most frequent
gold (``task.ground_truth``): right on exactly the samples that share it.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from guardrl.core.schema import Sample
from guardrl.tasks import DEFAULT_TASK, Judgement, Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SFTEvalReport:
    """Figures of :func:`evaluate_model` (fractions in [0, 1])."""

    n: int
    parse_rate: float
    accuracy: float
    majority_accuracy: float
    per_modality: dict[str, dict[str, float]]
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def beats_majority(self) -> bool:
        return self.accuracy > self.majority_accuracy

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), beats_majority=self.beats_majority)


def pick(samples: Sequence[Sample], max_samples: int | None) -> list[Sample]:
    """Up to ``max_samples`` samples spread evenly over ``samples`` (deterministic)."""
    if max_samples is None or max_samples >= len(samples):
        return list(samples)
    step = len(samples) / max_samples
    return [samples[int(i * step)] for i in range(max_samples)]


def score(task: Task, samples: Sequence[Sample], judgements: Sequence[Judgement]) -> dict[str, float]:
    """Parse rate, accuracy (``task.judge``'s ``correct``) and the most-frequent-gold baseline."""
    n = len(judgements)
    golds = Counter(json.dumps(task.ground_truth(s), sort_keys=True) for s in samples)
    return {
        "parse_rate": sum(j.format_ok for j in judgements) / n if n else 0.0,
        "accuracy": sum(j.correct for j in judgements) / n if n else 0.0,
        "majority_accuracy": golds.most_common(1)[0][1] / n if n else 0.0,
    }


def evaluate_model(
    model_dir: str | Path,
    data: str | Path,
    *,
    split: str | None = "dev",
    max_samples: int | None = None,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    engine: str = "auto",
    num_threads: int | None = None,
    task: str = DEFAULT_TASK,
    task_modules: Sequence[str] = (),
) -> SFTEvalReport:
    """Greedy-generate on ``data`` (a guardrl shard dir or split dir + ``split``) and score it with ``task``."""
    from guardrl.core.shards import iter_samples
    from guardrl.generation import SamplingParams, make_engine, render_prompts
    from guardrl.tasks import get_task

    t = get_task(task, task_modules)
    samples = pick(list(iter_samples(data, split=split)), max_samples)
    eng = make_engine(model_dir, engine, batch_size=batch_size, num_threads=num_threads)
    t0 = time.perf_counter()
    try:
        outs = eng.generate(render_prompts(t.prompt_messages, samples),
                            SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens))
    finally:
        eng.close()
    seconds = time.perf_counter() - t0
    judgements = [t.judge(s, o[0].text) for s, o in zip(samples, outs, strict=True)]
    overall = score(t, samples, judgements)
    per_modality = {}
    for mod in sorted({s.modality for s in samples}):
        idx = [i for i, s in enumerate(samples) if s.modality == mod]
        per_modality[mod] = {"n": len(idx), **score(t, [samples[i] for i in idx], [judgements[i] for i in idx])}
    records = [t.score(s, o[0].text, o[0].num_tokens) for s, o in zip(samples, outs, strict=True)]
    return SFTEvalReport(
        n=len(samples), parse_rate=overall["parse_rate"], accuracy=overall["accuracy"],
        majority_accuracy=overall["majority_accuracy"], per_modality=per_modality, seconds=seconds,
        metrics=t.metrics({"dev": records}),
    )


def write_report(report: SFTEvalReport, path: str | Path) -> None:
    from guardrl.core.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(report.to_dict(), indent=2))
