"""The rewriter's reward for RL: format, and -- when a target VLM and a guard judge the rewrite's effect --
safety, helpfulness and faithfulness. Pure: the services' verdicts come in as a :class:`TargetJudgement`.

For one completion (the rewriter's output) of a prompt whose ground truth is ``{"label", "request", ...}``::

    format failure            -> score = format_fail; nothing is judged (no service is called)
    otherwise score = format_ok
        + w_faithfulness * faithfulness   content-word recall of the original request in the rewrite (below)
        + w_safety       * safety         1 when the guard judges the target's answer unharmful, else 0
        + w_helpfulness  * helpfulness    benign prompts only: 1 when the answer is neither a refusal nor empty

*Helpfulness* is judged on the target's answer to the rewrite; that the answer addresses the *original* request
is what faithfulness adds: a rewrite that swaps the question ("What is 2+2?") keeps none of the request's
content words and loses that part, whatever the target answers. Faithfulness is lexical on purpose (pure, cheap,
the same on every machine); a judge model can replace it later behind the same part name.

A **failed judgement** (the target or the guard timed out, errored, or the guard's output did not parse) is
counted (``judge_failed = 1``), its parts are NaN (left out of the logged rates) and they add nothing to the
score: a failure never scores as success. The returned dict's keys are fixed (verl stacks them per batch):
``score, format, rewrite_chars, faithfulness, safety, helpfulness, judge_failed``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from guardrl.core.schema import UNHARMFUL
from guardrl.core.text_overlap import STOPWORDS, content_words, faithfulness
from guardrl.tasks.base import TargetJudgement
from guardrl.tasks.rewrite.parse import parse_rewrite

__all__ = ["STOPWORDS", "RewriteRewardConfig", "TargetJudgement", "compute_reward", "content_words", "faithfulness"]

NAN = float("nan")
@dataclass(frozen=True)
class RewriteRewardConfig:
    """``reward:`` of a rewrite RL recipe.

    Attributes:
        format_ok: the score of a completion that parses (before the judged parts).
        format_fail: the score of one that does not.
        max_rewrite_chars: a longer rewrite scores as a format failure (it would flood the target's context).
        w_safety, w_helpfulness: weights of the judged parts; both 0 (the default) = no target or guard is
            needed (format + faithfulness only).
        w_faithfulness: weight of the content-word recall (0 = off).
        min_word_chars: shorter words are left out of the recall.
    """

    format_ok: float = 1.0
    format_fail: float = -1.0
    max_rewrite_chars: int = 4096
    w_safety: float = 0.0
    w_helpfulness: float = 0.0
    w_faithfulness: float = 0.0
    min_word_chars: int = 3

    @property
    def judged(self) -> bool:
        """True when the reward needs the target's answer and the guard's verdict."""
        return self.w_safety > 0 or self.w_helpfulness > 0

    @classmethod
    def from_kwargs(cls, **options: Any) -> RewriteRewardConfig:
        """Raises: ValueError: an unknown key (listing the valid ones) or a bad value."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ValueError(f"reward: unknown key(s) {unknown}; valid: {sorted(names)}")
        cfg = cls(**options)
        if cfg.format_ok <= cfg.format_fail:
            raise ValueError(f"reward: format_ok ({cfg.format_ok}) must exceed format_fail ({cfg.format_fail})")
        if cfg.max_rewrite_chars < 1:
            raise ValueError(f"reward: max_rewrite_chars must be >= 1, got {cfg.max_rewrite_chars}")
        for w in ("w_safety", "w_helpfulness", "w_faithfulness"):
            if not getattr(cfg, w) >= 0:
                raise ValueError(f"reward: {w} must be >= 0, got {getattr(cfg, w)}")
        return cfg


def parse_ground_truth(ground_truth: Any) -> dict[str, Any]:
    """An RL row's ground truth (a mapping or its JSON string)."""
    if isinstance(ground_truth, str):
        ground_truth = json.loads(ground_truth)
    if not isinstance(ground_truth, Mapping):
        raise ValueError(f"rewrite ground truth must be a mapping, got {type(ground_truth).__name__}")
    return dict(ground_truth)


def compute_reward(completion: str, config: RewriteRewardConfig, ground_truth: Any = None,
                   judgement: TargetJudgement | None = None) -> dict[str, float]:
    """The reward dict of one completion (keys in the module docstring).

    Args:
        ground_truth: the row's ``{"label", "request"}`` (needed for faithfulness and helpfulness).
        judgement: the services' verdicts; ``None`` with a judged config = the judgement failed.
    """
    parsed = parse_rewrite(completion)
    chars = len(parsed.rewrite or "")
    out = {"score": config.format_fail, "format": 0.0, "rewrite_chars": float(chars), "faithfulness": NAN,
           "safety": NAN, "helpfulness": NAN, "judge_failed": 0.0}
    if not parsed.format_ok or chars > config.max_rewrite_chars:
        return out
    gt = parse_ground_truth(ground_truth) if ground_truth is not None else {}
    score = config.format_ok
    out["format"] = 1.0
    if gt.get("request") is not None:
        out["faithfulness"] = faithfulness(str(gt["request"]), parsed.rewrite or "", config.min_word_chars)
        score += config.w_faithfulness * out["faithfulness"]
    if config.judged:
        if judgement is None or judgement.failed:
            out["judge_failed"] = 1.0
        else:
            out["safety"] = float(judgement.response_label == UNHARMFUL)
            score += config.w_safety * out["safety"]
            if gt.get("label") == UNHARMFUL:
                answer = judgement.answer or ""
                out["helpfulness"] = float(bool(answer.strip()) and not judgement.refused)
                score += config.w_helpfulness * out["helpfulness"]
    out["score"] = score
    return out
