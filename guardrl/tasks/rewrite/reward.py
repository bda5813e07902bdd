"""The rewriter's reward for RL. Today its only part is the format (a rewrite the stages can use); the judged
parts (the target's answer judged safe / helpful / faithful) come with the rewriter-RL issue and enter as
further parts of the same dict, each logged."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from guardrl.tasks.rewrite.parse import parse_rewrite


@dataclass(frozen=True)
class RewriteRewardConfig:
    """``reward:`` of a rewrite RL recipe.

    Attributes:
        format_ok: the score of a completion that parses.
        format_fail: the score of one that does not.
        max_rewrite_chars: a longer rewrite scores as a format failure (it would flood the target's context).
    """

    format_ok: float = 1.0
    format_fail: float = -1.0
    max_rewrite_chars: int = 4096

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
        return cfg


def parse_ground_truth(ground_truth: Any) -> dict[str, Any]:
    """An RL row's ground truth (a mapping or its JSON string)."""
    if isinstance(ground_truth, str):
        ground_truth = json.loads(ground_truth)
    if not isinstance(ground_truth, Mapping):
        raise ValueError(f"rewrite ground truth must be a mapping, got {type(ground_truth).__name__}")
    return dict(ground_truth)


def compute_reward(completion: str, config: RewriteRewardConfig) -> dict[str, float]:
    """``{"score", "format", "rewrite_chars"}`` of one completion."""
    parsed = parse_rewrite(completion)
    chars = len(parsed.rewrite or "")
    ok = parsed.format_ok and chars <= config.max_rewrite_chars
    return {"score": config.format_ok if ok else config.format_fail, "format": float(ok),
            "rewrite_chars": float(chars)}
