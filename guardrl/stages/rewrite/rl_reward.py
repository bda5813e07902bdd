"""verl custom reward function of the rewriter's judged RL reward (the rewrite task with a target and a guard).

verl 0.9.1's reward loop awaits an ``async`` ``compute_score`` (its naive manager checks
``inspect.iscoroutinefunction``) for every sample of a batch concurrently, so each call here awaits the shared
target and guard services (:mod:`guardrl.stages.rewrite.reward_services`: named Ray actors, micro-batched), and
the services see batches. How a recipe names it (``guardrl rl`` writes this for ``task: rewrite``)::

    reward:
      custom_reward_function:
        path: pkg://guardrl.stages.rewrite.rl_reward
        name: compute_score
        reward_kwargs:
          task: rewrite
          w_safety: 1.0                 # guardrl.tasks.rewrite.reward.RewriteRewardConfig fields
          w_helpfulness: 1.0
          w_faithfulness: 0.5
          target: {model: ..., engine: hf, sampling: {temperature: 0.7, max_new_tokens: 128},
                   max_batch: 16, timeout_s: 300, retries: 1}
          guard: {model: ..., engine: hf, task: guard, sampling: {max_new_tokens: 256}}

Text prompts only today: the RL row's images do not reach the reward function (verl passes the decoded response,
the ground truth and ``extra_info``), so the target and the guard see the text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from omegaconf import Container, OmegaConf

from guardrl.integrations.verl.reward import _VERL_KWARGS
from guardrl.tasks import get_task

SERVICE_KEYS = frozenset({"max_batch", "max_wait_s", "timeout_s", "retries"})
_JUDGES: dict[str, Any] = {}


def service_config(d: Mapping[str, Any], where: str) -> Any:
    """A ``target:`` / ``guard:`` mapping -> :class:`~guardrl.stages.rewrite.reward_services.ServiceConfig`."""
    from guardrl.stages.rewrite.evaluate import model_spec
    from guardrl.stages.rewrite.reward_services import ServiceConfig

    d = dict(d)
    extra = {k: d.pop(k) for k in list(d) if k in SERVICE_KEYS}
    d.pop("task", None)
    return ServiceConfig(spec=model_spec(d, where, where, 256), **extra)


def _plain(x: Any) -> Any:
    """verl's reward_kwargs values (OmegaConf containers) -> plain dicts and lists."""
    return OmegaConf.to_container(x, resolve=True) if isinstance(x, Container) else x


def _judge(target: Mapping[str, Any], guard: Mapping[str, Any], task_modules: Any = ()) -> Any:
    target, guard, task_modules = _plain(target), _plain(guard), list(_plain(task_modules or ()))
    key = json.dumps([target, guard, task_modules], sort_keys=True, default=str)
    if key not in _JUDGES:
        from guardrl.stages.rewrite.reward_services import RewriteJudge, actor_client, service_actor

        tcfg, gcfg = service_config(target, "reward.target"), service_config(guard, "reward.guard")
        tag = hashlib.sha256(key.encode()).hexdigest()[:10]  # the same name in every reward worker
        _JUDGES[key] = RewriteJudge(actor_client(service_actor(f"rewrite-target-{tag}", tcfg)),
                                    actor_client(service_actor(f"rewrite-guard-{tag}", gcfg)), tcfg, gcfg,
                                    guard_task=str(guard.get("task") or "guard"), task_modules=task_modules)
    return _JUDGES[key]


async def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    task: str = "rewrite",
    task_modules: Any = (),
    target: Mapping[str, Any] | None = None,
    guard: Mapping[str, Any] | None = None,
    **reward_kwargs: Any,
) -> dict[str, float]:
    """The task's reward of one rewrite, judged by the target and the guard when the config weights them.

    Raises:
        ValueError: a judged config without ``target`` and ``guard``; bad reward options.
    """
    t = get_task(task, list(task_modules or ()))
    cfg = t.reward_config({k: v for k, v in reward_kwargs.items() if k not in _VERL_KWARGS})
    unjudged = t.reward(solution_str, ground_truth, cfg)
    if not getattr(cfg, "judged", False) or not unjudged["format"]:  # a format failure calls no model
        return unjudged
    if not target or not guard:
        raise ValueError("reward: w_safety / w_helpfulness need `target:` and `guard:` services")
    gt = json.loads(ground_truth) if isinstance(ground_truth, str) else dict(ground_truth or {})
    rewrite = t.rewritten_prompt(solution_str) or ""
    judgement = await _judge(target, guard, task_modules).judge(str(gt.get("request") or ""), rewrite)
    return t.reward(solution_str, ground_truth, cfg, judgement=judgement)
