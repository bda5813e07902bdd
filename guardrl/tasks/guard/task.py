"""The guard task (GuardReasoner-VL): judge a request and an optional response, reasoning first.

Output format, parser and formatter: :mod:`guardrl.tasks.guard.parse`; prompt templates: :mod:`guardrl.tasks.guard.prompts`;
the length-aware safety reward: :mod:`guardrl.tasks.guard.reward`; synthetic traces: :mod:`guardrl.tasks.guard.traces`;
metrics: :mod:`guardrl.tasks.guard.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from guardrl.core.schema import Sample
from guardrl.tasks.base import Judgement, register_task
from guardrl.tasks.guard.metrics import Scored, evaluate_sets
from guardrl.tasks.guard.parse import Verdict, parse
from guardrl.tasks.guard.prompts import build_messages
from guardrl.tasks.guard.reward import (
    RewardConfig,
    TokenCounter,
    compute_reward,
    parse_ground_truth,
    verdict_matches,
)
from guardrl.tasks.guard.traces import synthetic_target

__all__ = ["GUARD", "GuardTask", "prediction_label", "verdict_matches"]


def prediction_label(v: Verdict) -> str:
    """``"harmful/none"``-style label of a parsed verdict; ``"format_failure"`` when it did not parse."""
    return f"{v.request}/{v.response or 'none'}" if v.format_ok else "format_failure"


@lru_cache(maxsize=64)
def _reward_config(items: tuple[tuple[str, Any], ...]) -> RewardConfig:
    return RewardConfig.from_kwargs(**dict(items))


class GuardTask:
    """Request (and response) -> ``<think>...</think><result>Request: .. / Response: ..</result>``."""

    name = "guard"
    metric_prefix = "guard"
    # optional (guardrl.integrations.verl.trainer): reward part -> training metric name (guard/format_rate, ...)
    reward_metric_names = {"format": "format_rate", "request_correct": "request_acc",
                           "response_correct": "response_acc"}

    def prompt_messages(self, sample: Sample) -> list[dict[str, Any]]:
        return build_messages(sample.request, sample.response, num_images=len(sample.images))

    def sft_target(self, sample: Sample) -> str | None:
        return sample.target

    def parse(self, completion: str) -> Verdict:
        return parse(completion)

    def judge(self, sample: Sample, completion: str) -> Judgement:
        v = parse(completion)
        return Judgement(format_ok=v.format_ok, correct=verdict_matches(v, sample.label_request, sample.label_response),
                         prediction=prediction_label(v))

    def ground_truth(self, sample: Sample) -> dict[str, Any]:
        return {"request": sample.label_request, "response": sample.label_response}

    def reward_config(self, options: Mapping[str, Any]) -> RewardConfig:
        return _reward_config(tuple(sorted(options.items())))

    def reward(self, completion: str, ground_truth: Any, config: RewardConfig,
               count_tokens: TokenCounter | None = None) -> dict[str, float]:
        gold_request, gold_response = parse_ground_truth(ground_truth)
        return compute_reward(completion, gold_request, gold_response, config, count_tokens).as_dict()

    def score(self, sample: Sample, completion: str, output_tokens: int) -> Scored:
        v = parse(completion)
        return Scored(gold_request=sample.label_request, gold_response=sample.label_response,
                      pred_request=v.request, pred_response=v.response, format_ok=v.format_ok,
                      output_tokens=int(output_tokens), modality=sample.modality or None,
                      source=sample.source or None)

    def metrics(self, sets: Mapping[str, Sequence[Scored]]) -> dict[str, float]:
        return evaluate_sets(sets)

    # optional hooks of the eval stage (guardrl.stages.eval.report): the paper's tables and plots
    def report_markdown(self, run_name: str, metrics: Mapping[str, float], header: Sequence[str] = ()) -> str:
        from guardrl.tasks.guard.report import markdown_report

        return markdown_report(run_name, metrics, header)

    def compare_markdown(self, name_a: str, a: Mapping[str, float], name_b: str, b: Mapping[str, float]) -> str:
        from guardrl.tasks.guard.report import compare_report

        return compare_report(name_a, a, name_b, b)

    def write_plots(self, metrics: Mapping[str, float], out_dir: Path, run_name: str) -> list[Path]:
        from guardrl.tasks.guard import plots

        return [plots.f1_bars(metrics, out_dir / "f1.png", run_name),
                plots.class_recall(metrics, out_dir / "per_class.png", run_name),
                plots.confusion_matrices(metrics, out_dir / "confusion.png", run_name)]

    def summary_line(self, metrics: Mapping[str, float]) -> str:
        return (f"request F1 {100 * metrics.get('guard/avg/request/f1', float('nan')):.2f}, "
                f"response F1 {100 * metrics.get('guard/avg/response/f1', float('nan')):.2f}")

    def synthetic_target(self, sample: Sample, key: str) -> str | None:
        return synthetic_target(key=key, request=sample.request, response=sample.response,
                                label_request=sample.label_request, label_response=sample.label_response,
                                modality=sample.modality, category=sample.provenance.get("category"))


GUARD = register_task(GuardTask())
