"""The rewrite task (VLMGuard-R1): read a user's prompt (text, images), reason in three stages, rewrite it.

Output format, parser and formatter: :mod:`guardrl.tasks.rewrite.parse`; prompt templates:
:mod:`guardrl.tasks.rewrite.prompts`; metrics of the
rewriter's own output: :mod:`guardrl.tasks.rewrite.metrics`. Training rows come from ``guardrl rewrite synth`` (a
teacher VLM in three stages, or on a CPU its templated teacher), which assembles each target with
:meth:`RewriteTask.assemble_target`. How a rewrite changes a target VLM's answers is
measured by ``guardrl rewrite eval``, which looks this task up by name.

Rows (:class:`~guardrl.core.schema.Sample`): ``request`` + ``images`` = the user's prompt; ``label_request``
= is the prompt risky (``harmful``) or benign (``unharmful``); no response; ``target`` = the rewriter output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from guardrl.core.schema import Sample
from guardrl.tasks.base import Judgement, TokenCounter, register_task
from guardrl.tasks.rewrite.metrics import RewriteScored, evaluate_sets
from guardrl.tasks.rewrite.parse import ParsedRewrite, RewriteOutput, format_rewrite, parse_rewrite
from guardrl.tasks.rewrite.prompts import build_messages
from guardrl.tasks.rewrite.reward import RewriteRewardConfig, TargetJudgement, compute_reward

__all__ = ["REWRITE", "RewriteTask"]


@lru_cache(maxsize=64)
def _reward_config(items: tuple[tuple[str, Any], ...]) -> RewriteRewardConfig:
    return RewriteRewardConfig.from_kwargs(**dict(items))


class RewriteTask:
    """User prompt -> ``<think>`` three stages ``</think><rewrite>`` rewritten prompt ``</rewrite>``."""

    name = "rewrite"
    metric_prefix = "rewrite"
    reward_metric_names = {"format": "format_rate", "safety": "safety_rate", "helpfulness": "helpfulness_rate",
                           "judge_failed": "judge_failure_rate"}
    #: verl calls this module's async compute_score: the judged parts await the target and guard services
    verl_reward_module = "guardrl.stages.rewrite.rl_reward"
    #: reward: keys that name the services of the judged parts (not reward options; the recipe check needs them)
    reward_service_keys = ("target", "guard")

    def prompt_messages(self, sample: Sample) -> list[dict[str, Any]]:
        return build_messages(sample.request, num_images=len(sample.images))

    def sft_target(self, sample: Sample) -> str | None:
        return sample.target if sample.target and parse_rewrite(sample.target).format_ok else None

    def parse(self, completion: str) -> ParsedRewrite:
        return parse_rewrite(completion)

    def judge(self, sample: Sample, completion: str) -> Judgement:
        """There is no gold rewrite: a completion is right when it parses into a usable rewrite."""
        p = parse_rewrite(completion)
        return Judgement(format_ok=p.format_ok, correct=p.format_ok,
                         prediction="rewrite" if p.format_ok else "format_failure")

    def ground_truth(self, sample: Sample) -> dict[str, Any]:
        return {"label": sample.label_request, "request": sample.request,
                "category": sample.provenance.get("category")}

    def reward_config(self, options: Mapping[str, Any]) -> RewriteRewardConfig:
        return _reward_config(tuple(sorted(options.items())))

    def reward(self, completion: str, ground_truth: Any, config: RewriteRewardConfig,
               count_tokens: TokenCounter | None = None, judgement: TargetJudgement | None = None
               ) -> dict[str, float]:
        """The format reward, plus faithfulness and the judged parts (:mod:`guardrl.tasks.rewrite.reward`);
        ``judgement`` = what the target and the guard said (the judged RL reward's services pass it)."""
        return compute_reward(completion, config, ground_truth, judgement)

    def score(self, sample: Sample, completion: str, output_tokens: int) -> RewriteScored:
        p = parse_rewrite(completion)
        rewrite = p.rewrite or ""
        return RewriteScored(label=sample.label_request, format_ok=p.format_ok,
                             unchanged=p.format_ok and " ".join(rewrite.split()) == " ".join(sample.request.split()),
                             rewrite_chars=len(rewrite), output_tokens=int(output_tokens),
                             modality=sample.modality or None, source=sample.source or None)

    def metrics(self, sets: Mapping[str, Sequence[RewriteScored]]) -> dict[str, float]:
        return evaluate_sets(sets, self.metric_prefix)

    def summary_line(self, metrics: Mapping[str, float]) -> str:
        rates = [v for k, v in metrics.items() if k.endswith("/parse_rate") and k.count("/") == 2]
        mean = sum(rates) / len(rates) if rates else float("nan")
        return f"rewrite parse rate {100 * mean:.1f}%"

    def synthetic_target(self, sample: Sample, key: str) -> str | None:
        """None: the rewriter's targets are synthesised stage by stage by ``guardrl rewrite synth`` (its
        templated teacher on a CPU), not written from a row's labels here."""
        return None

    # hook of the synthesis stage (guardrl.stages.rewrite.synth): the three stage texts + the rewrite -> target
    def assemble_target(self, parts: Mapping[str, str]) -> str:
        """``format_rewrite`` of the stages' outputs (keys ``hindsight``, ``risk``, ``optimise``, ``rewrite``).

        Raises:
            ValueError: a part is missing, empty or would not parse back (a tag or a heading inside).
        """
        missing = [k for k in ("hindsight", "risk", "optimise", "rewrite") if not str(parts.get(k) or "").strip()]
        if missing:
            raise ValueError(f"rewrite target: missing or empty part(s) {missing}")
        return format_rewrite(RewriteOutput(*(str(parts[k]).strip() for k in ("hindsight", "risk", "optimise",
                                                                                "rewrite"))))

    # optional hook of `guardrl rewrite eval` and guardrl.Rewriter: the prompt the target VLM answers instead
    def rewritten_prompt(self, parsed: ParsedRewrite | str) -> str | None:
        """The rewritten prompt of a parsed completion (or of a completion's text); ``None`` on a format failure
        (callers fall back to the original prompt and count it)."""
        return (parse_rewrite(parsed) if isinstance(parsed, str) else parsed).rewrite


REWRITE = register_task(RewriteTask())
