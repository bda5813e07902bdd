"""The length-aware safety reward of GuardReasoner-VL (pure: no torch, no verl).

For one completion ``y`` with gold labels ``g_req`` / ``g_resp`` (either may be
``None``, not both), ``L`` = reasoning length: the think block in tokens of the policy's own
tokenizer (``count_tokens``; the verl adapter always passes the actor's tokenizer), or whitespace
words when no counter is given (``length_unit: words`` in a recipe)::

    I_format  = 1 if parse(y).format_ok else 0            (guardrl.tasks.guard.parse: one think block, then one
                                                           result block with parseable labels)
    r_req     = 1 if predicted request  == g_req  else 0
    r_resp    = 1 if predicted response == g_resp else 0
    (w_req, w_resp) = (0.5, 0.5) when both labels exist,
                      (1, 0)     when g_resp is None  (no response label: the request part carries full weight),
                      (0, 1)     when g_req  is None  (response label only, as in some guard-mini rows:
                                                       the response part carries full weight)
    r_safety  = I_format * (w_req * r_req + w_resp * r_resp)                        in [0, 1]

    l_norm    = min(1, L / max_length)                                              in [0, 1]
    l_eff     = min(max(l_norm, l_min), beta)          (clamped from below by l_min, capped by beta)
    raw       = (r_safety - 1) / l_eff ** 2                                         in [-1/l_min^2, 0]
    eco_cost  = eco_coef * min(1, max(0, L - eco_budget) / max_length)  if eco_budget is set and r_safety == 1
                0                                                        otherwise
    reward    = floor                       if I_format == 0
                max(floor, raw - eco_cost)  otherwise

``floor`` defaults to ``-1 / l_min**2`` (the smallest ``raw``), so by default format failures
*and* fully wrong answers whose reasoning is at most ``l_min * max_length`` tokens sit exactly on
the floor (``raw = -1 / l_min**2`` there); a half-wrong short answer gets half of it. Bounds:
``reward in [floor, 0]``; a fully correct, well-formed answer gets 0 (the maximum) whatever its
length when the Eco cost is off.

Why ``l_min = 0.05``: the paper's ``(r_safety - 1) / l_norm**2`` is unbounded at ``l_norm = 0``;
the clamp makes the floor finite (``-400``) while every wrong answer that reasoned more than 5% of
the budget (~100 tokens of 2048, a short think block) still gets a length-dependent reward, so the
length signal covers the traces the R-SFT model writes. A larger ``l_min`` flattens more of that
range; a smaller one makes the floor (and the advantage spread of a GRPO group) grow as
``1 / l_min**2``.

By design, the length term rewards longer reasoning on *wrong* answers: in a GRPO group of wrong
answers (or wrong answers and format failures) the ones that reasoned longer get a positive advantage.
The verl trainer logs it per step (``guard/adv_wrong_pos_frac``: share of wrong answers with a
positive advantage; ``guard/adv_wrong_mean``: their mean advantage).

Eco (the paper's variant, as in the released code): ``beta = ECO_BETA = 500 / 3072`` (~0.163), i.e.
the released code's denominator cap ``(500 / 3072)**2``: reasoning longer than ~16% of the maximum
response length earns a wrong answer nothing more, so the policy is no longer pushed to lengthen.

* ``no_length=True`` (ablation): ``reward = r_safety`` in ``[0, 1]`` (format failure 0).
* optional length cost (``eco_budget`` set, off by default, also on top of the Eco beta): a fully
  correct answer loses ``eco_coef`` per ``max_length`` tokens of reasoning beyond ``eco_budget``
  (at most ``eco_coef``). ``eco_coef < 0.5 / beta**2``
  is enforced so that any correct answer still beats any wrong one; within a GRPO group of
  correct answers the shorter ones get the higher advantage, which shortens outputs.

Defaults: ``beta = 1`` (the paper), ``l_min = 0.05``, ``max_length = 2048`` (set it to the
rollout's ``max_response_length``), no length cost.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from guardrl.core.schema import normalize_label
from guardrl.tasks.guard.parse import Verdict, parse

NAN = float("nan")
TokenCounter = Callable[[str], int]
ECO_BETA = 500 / 3072  # the released code's Eco cap: denominator min(len, 500)^2 / 3072^2


@dataclass(frozen=True)
class RewardConfig:
    """Parameters of the length-aware reward (see the module docstring for the formula).

    Args:
        beta: cap on the normalised reasoning length (paper: 1; Eco: ``ECO_BETA = 500 / 3072``).
        l_min: lower clamp of ``l_norm`` (keeps the reward finite at ``l_norm = 0``); ``0 < l_min <= min(beta, 1)``.
        floor: the lowest reward (format failures get it); ``None`` = ``-1 / l_min**2``. Must be
            ``<= -1 / min(beta, 1)**2`` so that wrong answers reasoning up to the cap are not clipped.
        max_length: tokens that make ``l_norm = 1`` (the rollout's maximum response length).
        no_length: ablation switch: the reward is plain ``r_safety``.
        eco_budget: optional length cost: reasoning tokens a correct answer may use for free; ``None`` = off.
        eco_coef: optional length cost per ``max_length`` tokens beyond the budget (``< 0.5 / beta**2``).

    Raises:
        ValueError: for parameters outside those ranges.
    """

    beta: float = field(default=1.0, metadata={"help": "Cap on the normalised reasoning length (> 0): paper 1; "
                                                       "Eco 500/3072 = 0.16276 (guardrl.tasks.guard.reward.ECO_BETA)."})
    l_min: float = field(default=0.05, metadata={"help": "Lower clamp of l_norm, in (0, min(beta, 1)]: keeps the "
                                                         "reward finite; floor = -1/l_min^2."})
    floor: float | None = field(default=None, metadata={"help": "Lowest reward (format failures); null = -1/l_min^2; "
                                                                "must be <= -1/min(beta,1)^2."})
    max_length: int = field(default=2048, metadata={"help": "Tokens that make l_norm = 1; `guardrl rl` sets "
                                                            "verl's data.max_response_length."})
    no_length: bool = field(default=False, metadata={"help": "Ablation: plain r_safety in [0, 1], no length term."})
    eco_budget: int | None = field(default=None, metadata={"help": "Optional length cost: reasoning tokens a "
                                                                   "correct answer may use for free (>= 0); null = off."})
    eco_coef: float = field(default=0.1, metadata={"help": "Cost per max_length tokens beyond eco_budget, in "
                                                           "[0, 0.5/min(beta,1)^2)."})

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if not 0 < self.l_min <= min(self.beta, 1.0):
            raise ValueError(f"l_min must be in (0, min(beta, 1)], got {self.l_min} (beta={self.beta})")
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")
        cap = min(self.beta, 1.0)
        if self.floor is not None and not (math.isfinite(self.floor) and self.floor <= -1.0 / cap**2):
            raise ValueError(f"floor must be finite and <= -1/min(beta,1)^2 = {-1.0 / cap**2}, got {self.floor}")
        if self.eco_budget is not None:
            if self.eco_budget < 0:
                raise ValueError(f"eco_budget must be >= 0, got {self.eco_budget}")
            if not 0 <= self.eco_coef < 0.5 / cap**2:
                raise ValueError(f"eco_coef must be in [0, 0.5/min(beta,1)^2 = {0.5 / cap**2}), got {self.eco_coef}")

    @property
    def reward_floor(self) -> float:
        """The lowest reward this config can give (``floor``, or ``-1/l_min^2``)."""
        return self.floor if self.floor is not None else -1.0 / self.l_min**2

    @property
    def bounds(self) -> tuple[float, float]:
        """``(lowest, highest)`` reward: ``(0, 1)`` with ``no_length``, else ``(reward_floor, 0)``."""
        return (0.0, 1.0) if self.no_length else (self.reward_floor, 0.0)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> RewardConfig:
        """Build from loose keyword arguments (e.g. verl's ``reward_kwargs``).

        Raises:
            TypeError: naming unknown keys and listing the valid ones.
        """
        valid = set(cls.__dataclass_fields__)
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise TypeError(f"unknown reward parameter(s) {unknown}; valid: {sorted(valid)}")
        return cls(**kwargs)


DEFAULT_CONFIG = RewardConfig()


@dataclass(frozen=True, slots=True)
class RewardParts:
    """The reward of one completion and the parts it was built from (all logged).

    ``request_correct`` / ``response_correct`` are 1.0 / 0.0, or NaN when the sample has no
    gold label for that task (use a NaN-aware mean).
    """

    score: float
    format: int
    request_correct: float
    response_correct: float
    reasoning_tokens: int
    l_norm: float
    r_safety: float
    eco_cost: float

    def as_dict(self) -> dict[str, float | int]:
        """The parts as a flat dict (``score`` first), e.g. for verl's ``reward_extra_info``."""
        return {
            "score": self.score,
            "format": self.format,
            "request_correct": self.request_correct,
            "response_correct": self.response_correct,
            "reasoning_tokens": self.reasoning_tokens,
            "l_norm": self.l_norm,
            "r_safety": self.r_safety,
            "eco_cost": self.eco_cost,
        }


# bytes -> b" " for what str.split() treats as whitespace, b"x" for anything else (ASCII only)
_WORD_CLASS = bytes(32 if chr(i).isspace() else 120 for i in range(128)) + b"x" * 128


def whitespace_words(text: str) -> int:
    """``len(text.split())`` without building the list (the default reasoning-length counter).

    ASCII text is mapped byte-wise to word/space classes and word starts are counted
    (a few times faster than ``split`` on long reasoning); other text uses ``split``.
    """
    if not text.isascii():
        return len(text.split())
    classes = text.encode("ascii").translate(_WORD_CLASS)
    return classes.count(b" x") + (classes[:1] == b"x")


def parse_ground_truth(ground_truth: Any) -> tuple[str | None, str | None]:
    """Gold ``(request, response)`` labels from the RL set's ``reward_model.ground_truth``.

    Accepted layouts: a mapping ``{"request": "harmful"|"unharmful"|None, "response": ...|None}``
    or the same object as a JSON string. Labels are normalised with
    :func:`guardrl.core.schema.normalize_label`.

    Raises:
        ValueError: malformed JSON, a non-object, unknown labels, or neither label present.
    """
    if isinstance(ground_truth, str):
        return _parse_gt_json(ground_truth)
    if isinstance(ground_truth, Mapping):
        return _labels(ground_truth)
    raise ValueError(f"ground_truth must be a JSON string or a mapping, got {type(ground_truth).__name__}")


@lru_cache(maxsize=1 << 16)
def _parse_gt_json(text: str) -> tuple[str | None, str | None]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"ground_truth is not valid JSON: {text[:80]!r}") from e
    if not isinstance(obj, dict):
        raise ValueError(f"ground_truth JSON must be an object, got {text[:80]!r}")
    return _labels(obj)


def _labels(obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    req = normalize_label(obj.get("request"), where="ground_truth.request")
    resp = normalize_label(obj.get("response"), where="ground_truth.response")
    if req is None and resp is None:
        raise ValueError(f"ground_truth has neither a request nor a response label: {dict(obj)!r}")
    return req, resp


def format_indicator(verdict: Verdict) -> int:
    """``I_format``: 1 for a well-formed completion (see :mod:`guardrl.tasks.guard.parse`), else 0."""
    return 1 if verdict.format_ok else 0


def safety_reward(
    verdict: Verdict, gold_request: str | None, gold_response: str | None
) -> tuple[float, float, float]:
    """``(r_safety, request_correct, response_correct)``; the correctness parts are NaN when unlabelled."""
    req_ok = NAN if gold_request is None else float(verdict.request == gold_request)
    resp_ok = NAN if gold_response is None else float(verdict.response == gold_response)
    if not verdict.format_ok:
        return 0.0, req_ok, resp_ok
    if gold_request is None:
        r = resp_ok
    elif gold_response is None:
        r = req_ok
    else:
        r = 0.5 * req_ok + 0.5 * resp_ok
    return r, req_ok, resp_ok


def verdict_matches(verdict: Verdict, gold_request: str | None, gold_response: str | None) -> bool:
    """True when ``verdict`` parsed and matches every gold label the sample has (``None`` = not labelled):
    ``r_safety == 1``, the one comparison of a verdict with the gold (rejection sampling, evaluation and
    the reward all read it from here)."""
    if gold_request is None and gold_response is None:
        return verdict.format_ok
    return safety_reward(verdict, gold_request, gold_response)[0] == 1.0


def length_aware_reward(
    r_safety: float, format_ok: bool, reasoning_tokens: int, cfg: RewardConfig = DEFAULT_CONFIG
) -> tuple[float, float, float]:
    """``(reward, l_norm, eco_cost)`` from ``r_safety`` and the reasoning length (module docstring)."""
    l_norm = min(1.0, max(0, reasoning_tokens) / cfg.max_length)
    if cfg.no_length:
        return (r_safety if format_ok else 0.0), l_norm, 0.0
    floor = cfg.reward_floor
    if not format_ok:
        return floor, l_norm, 0.0
    l_eff = min(max(l_norm, cfg.l_min), cfg.beta)
    raw = (r_safety - 1.0) / (l_eff * l_eff)
    eco = 0.0
    if cfg.eco_budget is not None and r_safety == 1.0:
        eco = cfg.eco_coef * min(1.0, max(0, reasoning_tokens - cfg.eco_budget) / cfg.max_length)
    return max(floor, raw - eco), l_norm, eco


def compute_reward(
    completion: object,
    gold_request: str | None,
    gold_response: str | None,
    cfg: RewardConfig = DEFAULT_CONFIG,
    count_tokens: TokenCounter | None = None,
) -> RewardParts:
    """Score one completion. Never raises on model output (malformed text = format failure).

    Args:
        completion: the decoded model completion (only the completion: never the prompt).
        gold_request: ``"harmful"`` / ``"unharmful"`` / ``None`` (no request label).
        gold_response: ``"harmful"`` / ``"unharmful"`` / ``None`` (no response label).
        cfg: reward parameters.
        count_tokens: reasoning-length counter (e.g. ``lambda s: len(tok(s).input_ids)``);
            default :func:`whitespace_words` (``len(s.split())``).

    Raises:
        ValueError: if both gold labels are ``None``.
    """
    if gold_request is None and gold_response is None:
        raise ValueError("a sample needs a request or a response label")
    v = parse(completion)
    r_safety, req_ok, resp_ok = safety_reward(v, gold_request, gold_response)
    n_tok = (count_tokens or whitespace_words)(v.reasoning) if v.reasoning else 0
    score, l_norm, eco = length_aware_reward(r_safety, v.format_ok, n_tok, cfg)
    return RewardParts(
        score=score,
        format=format_indicator(v),
        request_correct=req_ok,
        response_correct=resp_ok,
        reasoning_tokens=n_tok,
        l_norm=l_norm,
        r_safety=r_safety,
        eco_cost=eco,
    )
