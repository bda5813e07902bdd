"""The guard task (GuardReasoner-VL): judge a request and an optional response, reasoning first.

Output format, parser and formatter: :mod:`guardrl.parse`; prompt templates: :mod:`guardrl.prompts`;
the length-aware safety reward: :mod:`guardrl.rewards`; synthetic traces: :mod:`guardrl.traces`;
metrics: :mod:`guardrl.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from guardrl.metrics import Scored, evaluate_sets
from guardrl.parse import Verdict, parse
from guardrl.prompts import build_messages
from guardrl.rewards import RewardConfig, TokenCounter, compute_reward, parse_ground_truth, verdict_matches
from guardrl.schema import Sample
from guardrl.tasks.base import Judgement, register_task
from guardrl.traces import synthetic_target

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
    # optional (guardrl.verl_ext.trainer): reward part -> training metric name (guard/format_rate, ...)
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

    def synthetic_target(self, sample: Sample, key: str) -> str | None:
        return synthetic_target(key=key, request=sample.request, response=sample.response,
                                label_request=sample.label_request, label_response=sample.label_response,
                                modality=sample.modality, category=sample.provenance.get("category"))


GUARD = register_task(GuardTask())
