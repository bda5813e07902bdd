"""verl custom reward function: the recipe's task's reward (the guard: the length-aware safety reward).

How a verl 0.9.1 config names it (nothing in verl is patched; verl's reward loop calls it through
its ``naive`` reward manager, which puts the score on the last valid response token)::

    reward:
      reward_manager: {name: naive}              # verl's default
      custom_reward_function:
        path: pkg://guardrl.integrations.verl.reward      # or the file path of this module
        name: compute_score
        reward_kwargs:                           # the task's reward options (guard: guardrl.tasks.guard.reward.RewardConfig)
          task: guard                            # the recipe's task (guardrl.tasks); task_modules: [...] too
          max_length: ${data.max_response_length}
          beta: 1.0                              # paper default
          l_min: 0.05
          # floor: -400.0                        # default -1/l_min^2
          # no_length: true                      # ablation: plain r_safety
          # beta: 0.16276                        # Eco (guardrl.tasks.guard.reward.ECO_BETA = 500 / 3072)
          # eco_budget: 200                      # optional length cost on correct answers (with eco_coef)
          tokenizer_path: ${actor_rollout_ref.model.path}   # reasoning length in the policy's tokens

(legacy spelling ``custom_reward_function.path/name`` at the top level is migrated by verl.)
``guardrl rl`` adds ``tokenizer_path`` (the actor's tokenizer) itself, so the length term counts the
think block in the tokens of the model being trained; a recipe's ``reward.length_unit: words`` drops
it (whitespace words, the pure module's default).

Ground truth layout (:mod:`guardrl.integrations.verl.rows` writes it): each row's ``reward_model.ground_truth`` is
the JSON string of ``task.ground_truth(sample)`` (a dict is accepted too); the guard's is
``{"request": "harmful"|"unharmful"|null, "response": "harmful"|"unharmful"|null}`` with at least one
label; ``reward_model.style`` is ``"rule"``. ``data_source`` is only carried
along (verl groups validation metrics by it); the reward never branches on it.

The returned dict is ``{"score", "format", "request_correct", "response_correct",
"reasoning_tokens", "l_norm", "r_safety", "eco_cost"}``; verl copies every key into
``reward_extra_info`` (validation metrics ``val-aux/<data_source>/<key>/...``, rollout dumps).
``request_correct`` / ``response_correct`` are NaN for a task the sample has no label for.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from guardrl.tasks import get_task
from guardrl.tasks.base import TokenCounter

# keyword arguments verl itself may add to the call (reward-model routing); accepted and ignored
_VERL_KWARGS = frozenset({"reward_router_address", "reward_model_tokenizer"})


@lru_cache(maxsize=4)
def _token_counter(tokenizer_path: str) -> TokenCounter:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_path)

    def count(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False))

    return count


def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    tokenizer_path: str | None = None,
    task: str | None = None,
    task_modules: Any = (),
    **reward_kwargs: Any,
) -> dict[str, float | int]:
    """Score one decoded completion for verl with the task's reward.

    Args:
        data_source: the row's ``data_source`` (unused by the score).
        solution_str: the decoded completion (verl passes the response only, never the prompt).
        ground_truth: what ``task.ground_truth`` wrote (guard: ``{"request", "response"}``), as a dict or
            JSON string.
        extra_info: the row's ``extra_info`` (unused).
        tokenizer_path: count reasoning length in this tokenizer's tokens (``guardrl rl`` passes the
            actor's); ``None`` = whitespace words.
        task, task_modules: the recipe's task (``guardrl rl`` passes them; default the guard).
        **reward_kwargs: the task's reward options (guard: :class:`guardrl.tasks.guard.reward.RewardConfig` fields).

    Returns:
        ``{"score": reward, ...parts}`` (see the module docstring).

    Raises:
        ValueError: malformed ground truth; TypeError: unknown reward kwargs.
    """
    t = get_task(task, list(task_modules or ()))
    cfg = t.reward_config({k: v for k, v in reward_kwargs.items() if k not in _VERL_KWARGS})
    counter = _token_counter(tokenizer_path) if tokenizer_path else None
    return t.reward(solution_str, ground_truth, cfg, counter)
