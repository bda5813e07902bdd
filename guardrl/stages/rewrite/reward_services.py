"""The services the rewriter's judged RL reward calls: the target VLM that answers a rewrite, and the guard that
judges the answer. Each is a generation engine behind a micro-batcher, in one Ray actor per service.

Why a batcher: verl's reward loop scores the samples of a batch one by one, concurrently (``asyncio.gather`` of
``run_single``). Each call awaits its service; the service's :class:`BatchedGenerator` gathers the calls that
arrive together (up to ``max_batch``, waiting at most ``max_wait_s`` after the first) into one batched
``engine.generate``, so the target and the guard see batches, not single prompts.

A call that times out (``timeout_s``) or errors is retried ``retries`` times, then counted as failed: the
reward then reports ``judge_failed = 1`` and adds nothing for the failed parts
(:func:`guardrl.tasks.rewrite.reward.compute_reward`). Engines: ``hf`` on a CPU, ``vllm`` on a GPU, ``openai``
for a model already served behind an OpenAI-compatible endpoint (:class:`~guardrl.stages.rewrite.evaluate.ModelSpec`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from guardrl.generation.base import GenerationEngine, Prompt, SamplingParams
from guardrl.stages.rewrite.evaluate import ModelSpec, build_engine, target_messages
from guardrl.stages.rewrite.refusal import is_refusal
from guardrl.stages.serve.api import guard_prompt
from guardrl.tasks import get_task
from guardrl.tasks.base import TargetJudgement

log = logging.getLogger(__name__)
#: what a service counts: batched generate calls, prompts served, failed batches
STAT_NAMES = ("generate_calls", "prompts", "errors")


@dataclass(frozen=True)
class ServiceConfig:
    """How the reward calls one service.

    Attributes:
        spec: the model behind it (its ``sampling``: the target samples as in deployment, the guard greedy).
        max_batch: the most prompts in one ``generate``.
        max_wait_s: how long the first prompt of a batch waits for company.
        timeout_s: one call's limit (queueing included).
        retries: further tries after a timeout or an error.
    """

    spec: ModelSpec
    max_batch: int = 16
    max_wait_s: float = 0.05
    timeout_s: float = 300.0
    retries: int = 1


class BatchedGenerator:
    """An engine behind an asyncio micro-batcher: ``await generate(prompt)`` -> the first completion's text.

    Batches are served one at a time in a worker thread (the engine is not re-entrant); ``stats`` counts the
    ``generate`` calls and prompts (how well calls were batched).
    """

    def __init__(self, engine: GenerationEngine, sampling: SamplingParams, max_batch: int = 16,
                 max_wait_s: float = 0.05) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.engine, self.sampling = engine, sampling
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self._queue: asyncio.Queue[tuple[Prompt, asyncio.Future[str]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.stats = dict.fromkeys(STAT_NAMES, 0)

    async def generate(self, prompt: Prompt) -> str:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._serve())
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        await self._queue.put((prompt, fut))
        return await fut

    async def _serve(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
            batch = [(p, f) for p, f in batch if not f.done()]  # callers that gave up
            if not batch:
                continue
            self.stats["generate_calls"] += 1
            self.stats["prompts"] += len(batch)
            try:
                outs = await loop.run_in_executor(None, self.engine.generate, [p for p, _ in batch], self.sampling)
            except Exception as exc:  # the whole batch failed: each caller sees it (and may retry)
                self.stats["errors"] += 1
                for _, f in batch:
                    if not f.done():
                        f.set_exception(exc)
                continue
            for (_, f), out in zip(batch, outs, strict=True):
                if not f.done():
                    f.set_result(out[0].text)


class GenerationService:
    """The Ray actor of one service (``ray.remote(GenerationService)``): builds its engine on first use."""

    def __init__(self, spec: ModelSpec, max_batch: int = 16, max_wait_s: float = 0.05) -> None:
        self.spec, self.max_batch, self.max_wait_s = spec, max_batch, max_wait_s
        self._gen: BatchedGenerator | None = None

    async def generate(self, messages: Sequence[Mapping[str, Any]], images: Sequence[bytes] = ()) -> str:
        if self._gen is None:
            self._gen = BatchedGenerator(build_engine(self.spec), self.spec.sampling, self.max_batch,
                                         self.max_wait_s)
        return await self._gen.generate(Prompt(tuple(messages), tuple(images)))

    def stats(self) -> dict[str, int]:
        return dict(self._gen.stats) if self._gen else dict.fromkeys(STAT_NAMES, 0)


def service_actor(name: str, cfg: ServiceConfig, namespace: str = "guardrl") -> Any:
    """The named actor of a service, started on first use (``get_if_exists``: every reward worker shares it)."""
    import ray

    cls = ray.remote(GenerationService)
    return cls.options(name=name, namespace=namespace, get_if_exists=True, max_concurrency=1024,
                       num_cpus=0).remote(cfg.spec, cfg.max_batch, cfg.max_wait_s)


async def call_with_retries(call: Callable[[], Awaitable[str]], timeout_s: float, retries: int,
                            what: str) -> str | None:
    """``await call()`` within ``timeout_s``, retried ``retries`` times; ``None`` (logged) when every try failed."""
    for attempt in range(retries + 1):
        try:
            return await asyncio.wait_for(call(), timeout_s)
        except Exception as exc:  # noqa: BLE001 - a timeout, a dead actor, an engine error: all count as failure
            log.warning("%s failed (try %d of %d): %s", what, attempt + 1, retries + 1, exc or type(exc).__name__)
    return None


@dataclass
class RewriteJudge:
    """Judges one rewrite: the target answers it, the guard judges the answer against the original request.

    ``target`` / ``guard``: objects with ``async generate(messages, images) -> str`` (a :class:`GenerationService`,
    or its Ray actor wrapped by :func:`actor_client`).
    """

    target: Any
    guard: Any
    target_cfg: ServiceConfig
    guard_cfg: ServiceConfig
    guard_task: str = "guard"
    task_modules: Sequence[str] = ()
    counts: dict[str, int] = field(default_factory=lambda: {"target_failures": 0, "guard_failures": 0})

    async def judge(self, request: str, rewrite: str, images: Sequence[bytes] = ()) -> TargetJudgement:
        answer = await call_with_retries(
            lambda: self.target.generate(target_messages(rewrite, len(images)), images),
            self.target_cfg.timeout_s, self.target_cfg.retries, "target VLM")
        if answer is None:
            self.counts["target_failures"] += 1
            return TargetJudgement(None, None)
        guard_task = get_task(self.guard_task, list(self.task_modules))  # imports a user's task module first
        gp = guard_prompt(request, answer, images, task=self.guard_task)
        raw = await call_with_retries(lambda: self.guard.generate(gp.messages, gp.images),
                                      self.guard_cfg.timeout_s, self.guard_cfg.retries, "guard")
        verdict = guard_task.parse(raw) if raw is not None else None
        label = verdict.response if verdict is not None and verdict.format_ok else None
        if label is None:
            self.counts["guard_failures"] += 1
        return TargetJudgement(answer, label, refused=is_refusal(answer))


class actor_client:  # noqa: N801 - reads as a function at the call site
    """An ``async generate(messages, images)`` over a Ray actor handle (Ray's ObjectRefs are awaitable)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def generate(self, messages: Sequence[Mapping[str, Any]], images: Sequence[bytes] = ()) -> str:
        return await self.handle.generate.remote(list(messages), list(images))
