"""A verl rollout backed by Hugging Face ``generate``: ``actor_rollout_ref.rollout.name=hf``.

verl 0.9.1 generates through *async rollout servers* (vLLM, SGLang, TensorRT-LLM):
the agent loop sends token-in/token-out requests to a server actor, and the
training worker pushes new weights to that server after each update. This
module provides the same three pieces for Hugging Face ``generate`` (CPU or a
single GPU without vLLM), registered through verl's registries:

* :class:`HFRolloutServer` — a Ray actor holding guardrl's HF engine
  (:class:`guardrl.generation.hf.HFEngine`, the engine eval and rejection sampling use); ``generate``
  requests arriving concurrently are gathered per sampling setting and handed to the engine at once,
  which micro-batches them by length (a GRPO group's ``n`` samples and a step's prompts share
  ``generate`` calls) and encodes each distinct image once;
* :class:`HFReplica` — a ``RolloutReplica`` (``RolloutReplicaRegistry``, name
  ``hf``) that starts one server per replica;
* :class:`HFServerAdapter` — a ``BaseRollout`` (verl's ``_ROLLOUT_REGISTRY``,
  key ``("hf", "async")``) living in the training worker; ``update_weights``
  gathers the actor's full tensors and loads them into the server's model.

Sleep / wake-up / KV-cache calls are no-ops: an HF model keeps its weights and
allocates its cache per call. Sampling is temperature / top-p (``top_k`` and
``repetition_penalty`` are refused, not ignored).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
from verl.workers.rollout import base as rollout_base
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutMode, RolloutReplica, RolloutReplicaRegistry, TokenOutput

log = logging.getLogger(__name__)

ROLLOUT_NAME = "hf"
SERVER_PREFIX = "guardrl_hf_server"
_VISION_TOKEN_KEYS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id", "vision_token_id")


def server_name(replica_rank: int, node_rank: int = 0, suffix: str = "") -> str:
    """The Ray actor name of a replica's server (the adapter finds it by name)."""
    return f"{SERVER_PREFIX}_{replica_rank}_{node_rank}{suffix}"


@dataclass
class _Request:
    prompt_ids: list[int]
    images: list[Any] | None
    max_tokens: int
    want_logprobs: bool
    future: asyncio.Future = field(repr=False)


class HFRolloutServer:
    """Token-in/token-out generation with an HF model (one per rollout replica).

    Args:
        config: verl's ``RolloutConfig`` (``prompt_length``, ``response_length``,
            ``max_num_seqs``, ``seed``, ``dtype``).
        model_config: verl's ``HFModelConfig`` (``local_path`` or ``path``).
        replica_rank: this replica's index (seeds differ per replica).
    """

    def __init__(self, config, model_config, replica_rank: int = 0, max_batch: int | None = None) -> None:
        from guardrl.generation.hf import HFEngine

        self.config = config
        self.replica_rank = replica_rank
        path = getattr(model_config, "local_path", None) or model_config.path
        device = "cuda" if torch.cuda.is_available() and os.environ.get("VERL_PLATFORM") != "cpu" else "cpu"
        self.max_batch = max_batch or min(int(config.max_num_seqs), 256)
        self.engine = HFEngine(path, device=device, batch_size=self.max_batch)
        self.model, self.processor = self.engine.model, self.engine.processor
        self.eos_ids = self.engine.eos_ids
        # a completion never carries vision placeholders (verl's mrope position ids would need a grid
        # for them); an untrained model samples them, so they are suppressed
        self.suppress = sorted({getattr(self.model.config, k, None) for k in _VISION_TOKEN_KEYS} - {None})
        self.global_steps: int | None = None
        self._queue: list[tuple[tuple, _Request]] = []
        self._wakeup: asyncio.Event | None = None
        self._loop_task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self.stats = {"batches": 0, "sequences": 0, "seconds": 0.0}  # model.generate calls: engine.stats

    # -- verl's server interface -------------------------------------------------------------
    def get_server_address(self) -> tuple[str, int]:
        return ray.util.get_node_ip_address(), 0

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: list[Any] | None = None,
        video_data: list[Any] | None = None,
        audio_data: list[Any] | None = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
        priority: int = 0,
        **kwargs: Any,
    ) -> TokenOutput:
        """Generate one completion; concurrent calls are batched (see class docstring)."""
        if video_data or audio_data:
            raise NotImplementedError("the hf rollout handles text and images only")
        params = dict(sampling_params)
        max_tokens = params.pop("max_tokens", params.pop("max_new_tokens", None))
        budget = self.config.prompt_length + self.config.response_length - len(prompt_ids)
        max_tokens = max(1, min(max_tokens or self.config.response_length, self.config.response_length, budget))
        want_logprobs = bool(params.pop("logprobs", False))
        top_k = params.get("top_k")
        penalty = params.get("repetition_penalty") or 1.0
        if (top_k is not None and int(top_k) > 0) or float(penalty) != 1.0:
            raise NotImplementedError(
                f"the hf rollout samples with temperature and top-p only (got top_k={top_k}, repetition_penalty="
                f"{penalty}): leave actor_rollout_ref.rollout.top_k=-1 and repetition_penalty=1.0, or use vllm")
        greedy = not params.get("do_sample", True) or float(params.get("temperature", 1.0)) <= 0
        key = (0.0, 1.0) if greedy else (float(params.get("temperature", 1.0)), float(params.get("top_p", 1.0)))
        fut = asyncio.get_running_loop().create_future()
        self._ensure_loop()
        self._queue.append((key, _Request(list(map(int, prompt_ids)), image_data, max_tokens, want_logprobs, fut)))
        self._wakeup.set()
        token_ids, logprobs = await fut
        stop = "completed" if token_ids and token_ids[-1] in self.eos_ids else None
        return TokenOutput(
            token_ids=token_ids,
            log_probs=logprobs,
            stop_reason=stop,
            num_preempted=0,
            extra_fields={"global_steps": self.global_steps},
        )

    async def load_weights(self, state: dict[str, torch.Tensor], global_steps: int | None = None) -> int:
        """Copy the actor's full tensors (HF names) into the rollout model; returns how many loaded."""
        async with self._lock:
            own = self.model.state_dict()
            loaded = 0
            with torch.no_grad():
                for name, tensor in state.items():
                    target = own.get(name)
                    if target is None:
                        target = own.get(name.removeprefix("model.")) if name.startswith("model.") else None
                    if target is None or target.shape != tensor.shape:
                        continue
                    target.copy_(tensor.to(target.device, target.dtype))
                    loaded += 1
            missing = len(own) - loaded
            if loaded == 0 or missing > len(own) // 2:
                raise RuntimeError(
                    f"hf rollout: only {loaded}/{len(own)} tensors matched the actor's names "
                    f"(first actor names: {list(state)[:3]}, first rollout names: {list(own)[:3]})"
                )
            if global_steps is not None:
                self.global_steps = global_steps
            return loaded

    async def set_global_steps(self, global_steps: int) -> None:
        self.global_steps = global_steps

    async def get_stats(self) -> dict[str, float]:
        return dict(self.stats)

    # no-ops: an HF model keeps its weights and allocates its cache per call
    async def wake_up(self, *args: Any, **kwargs: Any) -> None: ...
    async def sleep(self, *args: Any, **kwargs: Any) -> None: ...
    async def clear_kv_cache(self) -> None: ...
    async def release_kv_cache(self) -> None: ...
    async def resume_kv_cache(self) -> None: ...
    async def wait_for_requests_to_drain(self) -> None:
        while self._queue:
            await asyncio.sleep(0.01)

    async def abort_all_requests(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"aborted_count": 0, "request_ids": []}

    async def resume_generation(self) -> None: ...
    async def abort_request(self, request_id: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"aborted": False, "request_id": request_id}

    async def start_profile(self, **kwargs: Any) -> None: ...
    async def stop_profile(self) -> None: ...

    # -- batching ---------------------------------------------------------------------------
    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._wakeup = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(self._batch_loop())

    async def _batch_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            # let the rest of a group (the n samples of a prompt, the other prompts) arrive
            await asyncio.sleep(0.05)
            self._wakeup.clear()
            while self._queue:
                key = self._queue[0][0]
                batch = [r for k, r in self._queue if k == key][: self.max_batch]
                taken = {id(r) for r in batch}
                self._queue = [(k, r) for k, r in self._queue if id(r) not in taken]
                try:
                    async with self._lock:
                        results = await asyncio.to_thread(self._generate_batch, key, batch)
                    for req, res in zip(batch, results, strict=True):
                        if not req.future.done():
                            req.future.set_result(res)
                except Exception as exc:  # surface the error in every waiting request
                    log.exception("hf rollout: batch generation failed")
                    for req in batch:
                        if not req.future.done():
                            req.future.set_exception(exc)

    def _generate_batch(self, key: tuple, batch: list[_Request]) -> list[tuple[list[int], list[float] | None]]:
        """One engine call for the batch (the engine encodes a group's equal images once)."""
        from guardrl.generation.base import SamplingParams

        t0 = time.perf_counter()
        temperature, top_p = key
        params = SamplingParams(n=1, temperature=temperature, top_p=top_p, max_new_tokens=max(r.max_tokens for r in batch),
                                seed=int(self.config.seed) * 1_000_003 + 10_007 * self.replica_rank + self.stats["batches"])
        comps = self.engine.generate_ids([r.prompt_ids for r in batch], [r.images for r in batch], params,
                                         logprobs=any(r.want_logprobs for r in batch), suppress_tokens=self.suppress)
        results = []
        for req, (comp,) in zip(batch, comps, strict=True):
            tokens = comp.extra["token_ids"][: req.max_tokens]
            lp = comp.extra["logprobs"][: len(tokens)] if req.want_logprobs else None
            results.append((tokens, lp))
        self.stats["batches"] += 1
        self.stats["sequences"] += len(batch)
        self.stats["seconds"] += time.perf_counter() - t0
        return results


class HFReplica(RolloutReplica):
    """One HF rollout server per replica (``rollout.tensor_model_parallel_size`` must be 1)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.world_size != 1:
            raise ValueError(
                "the hf rollout runs one process per replica: set actor_rollout_ref.rollout."
                "tensor_model_parallel_size=1 (and data/pipeline parallel size 1)"
            )
        self.server_class = ray.remote(HFRolloutServer)

    def rollout_worker_use_gpu(self) -> bool:
        return False

    async def launch_servers(self) -> None:
        options: dict[str, Any] = {
            "name": server_name(self.replica_rank, 0, self.name_suffix),
            "max_concurrency": self.max_concurrency,
            "num_cpus": 0,
        }
        if self.workers:  # hybrid: next to the training worker that pushes the weights
            node_id = await self.workers[0].__ray_call__.remote(lambda w: ray.get_runtime_context().get_node_id())
            options["scheduling_strategy"] = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                node_id=node_id, soft=False
            )
        env = {k: v for k, v in os.environ.items() if k.startswith(("VERL_", "GUARDRL_", "HF_", "OMP_"))}
        options["runtime_env"] = {"env_vars": env}
        server = self.server_class.options(**options).remote(
            config=self.config, model_config=self.model_config, replica_rank=self.replica_rank
        )
        self.servers = [server]
        address, port = await server.get_server_address.remote()
        self._server_handle = server
        self._server_address = f"{address}:{port}"
        log.info("hf rollout replica %d ready (%s mode)", self.replica_rank, self.rollout_mode)

    async def sleep(self) -> None:
        await asyncio.gather(*[s.sleep.remote() for s in self.servers])


class HFServerAdapter(BaseRollout):
    """Lives in each training worker; pushes the actor's weights to its replica's server.

    Every rank iterates the weight generator (FSDP gathers full tensors
    collectively); rank 0 of each replica sends them.
    """

    def __init__(self, config, model_config, device_mesh, replica_rank: int = -1, *args: Any, **kwargs: Any):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", "0"))
        self.replica_rank = rank if replica_rank == -1 else replica_rank  # one process per replica
        self._server = None
        self._is_leader = True

    def _server_handle(self):
        if self._server is None:
            self._server = ray.get_actor(server_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]) -> None:
        return None

    async def release(self) -> None:
        return None

    async def update_weights(
        self, weights: Generator[tuple[str, torch.Tensor], None, None], wire_format: str = "named_tensors", **kwargs
    ) -> None:
        if wire_format != "named_tensors":
            raise NotImplementedError(f"hf rollout: weight wire format {wire_format!r} (use checkpoint_engine=naive)")
        state = {}
        for name, tensor in weights:
            t = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            state[name] = t.detach().to("cpu", copy=True)
        if self._is_leader:
            await self._server_handle().load_weights.remote(state, kwargs.get("global_steps"))


def register() -> None:
    """Make ``rollout.name=hf`` known to verl (idempotent)."""
    rollout_base._ROLLOUT_REGISTRY.setdefault((ROLLOUT_NAME, "async"), f"{__name__}.HFServerAdapter")
    if ROLLOUT_NAME not in RolloutReplicaRegistry._registry:
        RolloutReplicaRegistry.register(ROLLOUT_NAME, lambda: HFReplica)


register()

__all__ = ["HFReplica", "HFRolloutServer", "HFServerAdapter", "RolloutMode", "register", "server_name"]
