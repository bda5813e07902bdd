"""Evaluate a guard model over benchmark sets on Ray actors.

Each actor owns one generation engine (:func:`guardrl.generation.make_engine`: vLLM on CUDA
machines with the ``[gpu]`` extra, Hugging Face ``generate`` elsewhere; one actor per GPU on a
cluster, a few CPU actors locally). The driver cuts the samples into chunks and hands the next
chunk to whichever actor is free; completions come back in input order. Prompts are rendered, completions
scored and measured by the recipe's task (``eval.task``: ``task.prompt_messages``, ``task.score``,
``task.metrics``; the guard: strict parse, :mod:`guardrl.tasks.guard.metrics`).

Output folder (written to a temporary folder, renamed into place when complete)::

    results.json       model, engine, sampling, benchmarks, every guard/... metric, timing
    results.md         the paper's two F1 tables with the all-harmful baseline, per-class tables, a detail table
                       (another task's metrics: one key/value table)
    predictions.jsonl  one line per sample: the task's scored record (guard: gold, parsed prediction), tokens,
                       completion text
    plots/f1.png (beside the all-harmful baseline), plots/per_class.png, plots/confusion.png (these three for
    metrics in the guard's layout), plots/output_length.png

then results and plots are logged to wandb (``WANDB_MODE=offline`` unless set; ``wandb sync`` later).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from guardrl.generation.base import SamplingParams, render_prompts
from guardrl.integrations.ray import init_ray
from guardrl.stages.eval import report
from guardrl.stages.eval.scoring import EvalItem
from guardrl.tasks import DEFAULT_TASK, get_task

log = logging.getLogger(__name__)
WANDB_COLUMNS = ("f1", "all_harmful_f1", "precision", "recall", "unharmful_recall")


@dataclass
class EvalConfig:
    """How to run an evaluation (the ``eval:`` section of a recipe).

    Attributes:
        model: exported HF folder (or any folder the engine loads).
        out: output folder.
        engine: ``auto`` | ``hf`` | ``vllm``.
        workers: Ray actors, each with its own engine (one per GPU on a cluster).
        gpus_per_worker / cpus_per_worker: Ray resources per actor.
        chunk_size: samples per request to an actor (the unit of load balancing).
        sampling: generation settings; greedy by default, as for reporting.
        engine_kwargs: passed to the engine (HF: ``batch_size``, ``num_threads``, ``dtype``;
            vLLM: ``tensor_parallel_size``, ``gpu_memory_utilization``, ``max_model_len``).
        run_name: name in tables and wandb (default: the model folder's name).
        wandb: ``{enabled, project, mode}``; mode defaults to ``offline``.
        task: renders the prompts, scores the completions, names the metrics (:func:`guardrl.tasks.get_task`).
        task_modules: modules (dotted names or ``.py`` paths) registering a task defined outside guardrl.
    """

    model: str
    out: str
    engine: str = "auto"
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    chunk_size: int = 16
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_new_tokens=512))
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    run_name: str | None = None
    wandb: dict[str, Any] = field(default_factory=lambda: {"enabled": True, "project": "guardrl-eval"})
    task: str = DEFAULT_TASK
    task_modules: list[str] = field(default_factory=list)


class _Worker:
    """A Ray actor holding one engine."""

    def __init__(self, model: str, engine: str, engine_kwargs: dict[str, Any]) -> None:
        logging.basicConfig(level=logging.INFO)
        from guardrl.generation import make_engine

        self.engine = make_engine(model, engine=engine, **engine_kwargs)

    def engine_name(self) -> str:
        return self.engine.name

    def generate(self, inputs: list[Any], params: SamplingParams) -> list[tuple[str, int, int, str]]:
        """(text, output tokens, prompt tokens, finish reason) per input.

        An input whose prompt does not fit the model is not truncated: it gets an empty completion with
        finish reason ``prompt_too_long`` and so counts as a format failure (scored wrong), and the run goes on.
        """
        from guardrl.generation.base import PromptTooLongError, isolate_failures

        comps, errors = isolate_failures(lambda xs: self.engine.generate(xs, params), inputs, (PromptTooLongError,))
        out = []
        for c, exc in zip(comps, errors, strict=True):
            if exc is not None:
                logging.getLogger(__name__).warning("%s", exc)
                out.append(("", 0, 0, "prompt_too_long"))
            else:
                out.append((c[0].text, c[0].num_tokens, c[0].prompt_tokens, c[0].finish_reason))
        return out


def generate_all(cfg: EvalConfig, items: Sequence[EvalItem]) -> tuple[list[tuple[str, int, int, str]], str]:
    """Completions for ``items`` in order, through ``cfg.workers`` Ray actors; returns (outputs, engine name)."""
    import ray
    from tqdm import tqdm

    if cfg.workers < 1 or cfg.chunk_size < 1:
        raise ValueError(f"workers and chunk_size must be >= 1 (got {cfg.workers}, {cfg.chunk_size})")
    started = init_ray(num_cpus=cfg.workers * cfg.cpus_per_worker)
    actors = []
    try:
        remote = ray.remote(num_cpus=cfg.cpus_per_worker, num_gpus=cfg.gpus_per_worker)(_Worker)
        actors = [remote.remote(cfg.model, cfg.engine, dict(cfg.engine_kwargs)) for _ in range(cfg.workers)]
        engine_name = ray.get(actors[0].engine_name.remote())
        task = get_task(cfg.task, cfg.task_modules)
        inputs = render_prompts(task.prompt_messages, [it.sample() for it in items])
        chunks = [(s, inputs[s : s + cfg.chunk_size]) for s in range(0, len(inputs), cfg.chunk_size)]
        outputs: list[Any] = [None] * len(inputs)
        pending: dict[Any, tuple[int, int, Any]] = {}
        free = list(actors)
        bar = tqdm(total=len(inputs), desc=f"eval ({engine_name} x{cfg.workers})", unit="sample")
        next_chunk = 0
        while next_chunk < len(chunks) or pending:
            while free and next_chunk < len(chunks):
                start, chunk = chunks[next_chunk]
                actor = free.pop()
                pending[actor.generate.remote(chunk, cfg.sampling)] = (start, len(chunk), actor)
                next_chunk += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            start, n, actor = pending.pop(done[0])
            outputs[start : start + n] = ray.get(done[0])
            free.append(actor)
            bar.update(n)
        bar.close()
        return outputs, engine_name
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()


def evaluate(cfg: EvalConfig, benchmarks: Mapping[str, Sequence[EvalItem]], *, extra: Mapping[str, Any] | None = None
             ) -> dict[str, Any]:
    """Run ``cfg.model`` over ``benchmarks``, write the output folder, log to wandb; return results.json's content."""
    from guardrl.core.atomic import atomic_dir
    from guardrl.core.plots import length_histogram

    run_name = cfg.run_name or Path(cfg.model).name
    task = get_task(cfg.task, cfg.task_modules)
    items = [it for name in benchmarks for it in benchmarks[name]]
    t0 = time.perf_counter()
    outputs, engine_name = generate_all(cfg, items)
    seconds = time.perf_counter() - t0
    scored: dict[str, list] = {name: [] for name in benchmarks}
    lengths: dict[str, list[int]] = {name: [] for name in benchmarks}
    preds = []
    for it, (text, n_tok, p_tok, finish) in zip(items, outputs, strict=True):
        rec = task.score(it.sample(), text, n_tok)
        scored[it.benchmark].append(rec)
        lengths[it.benchmark].append(n_tok)
        preds.append({"id": it.id, "benchmark": it.benchmark, **_record(rec), "output_tokens": n_tok,
                      "prompt_tokens": p_tok, "finish_reason": finish, "completion": text})
    metrics = task.metrics(scored)
    results = {
        "run_name": run_name,
        "task": task.name,
        "model": str(cfg.model),
        "engine": engine_name,
        "workers": cfg.workers,
        "sampling": asdict(cfg.sampling),
        "benchmarks": [{"name": n, "n": len(v)} for n, v in benchmarks.items()],
        "metrics": metrics,
        "timing": {"seconds": round(seconds, 3), "samples_per_s": round(len(items) / max(seconds, 1e-9), 3)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **dict(extra or {}),
    }
    out = Path(cfg.out)
    header = [f"model `{cfg.model}`, engine {engine_name} x{cfg.workers}, {len(items)} samples, "
              f"{seconds:.1f}s ({results['timing']['samples_per_s']:.2f} samples/s), "
              f"temperature {cfg.sampling.temperature}, max_new_tokens {cfg.sampling.max_new_tokens}"]
    with atomic_dir(out) as tmp:
        (tmp / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        (tmp / "results.md").write_text(report.markdown_report(task, run_name, metrics, header))
        with (tmp / "predictions.jsonl").open("w", encoding="utf-8") as fh:
            for p in preds:
                fh.write(json.dumps(p, ensure_ascii=False) + "\n")
        pdir = tmp / "plots"
        pdir.mkdir()
        report.write_plots(task, metrics, pdir, run_name)
        length_histogram(lengths, pdir / "output_length.png", run_name)
    if cfg.wandb.get("enabled", True):
        log_to_wandb(cfg, results, out)
    log.info("evaluation of %s: %s -> %s", run_name, report.summary_line(task, metrics), out)
    return results


def _record(rec: Any) -> dict[str, Any]:
    """A task's scored record as the fields of a predictions.jsonl line (a dataclass or a mapping)."""
    if is_dataclass(rec) and not isinstance(rec, type):
        return asdict(rec)
    if isinstance(rec, Mapping):
        return dict(rec)
    return {"record": rec}


def log_to_wandb(cfg: EvalConfig, results: Mapping[str, Any], out: Path) -> None:
    """Metrics, a per-benchmark table and the plots into a wandb run (offline unless WANDB_MODE says otherwise)."""
    import wandb

    mode = cfg.wandb.get("mode") or os.environ.get("WANDB_MODE") or "offline"
    run = wandb.init(project=cfg.wandb.get("project", "guardrl-eval"), name=results["run_name"], dir=str(out),
                     mode=mode, job_type="eval", config={"model": results["model"], "engine": results["engine"],
                                                         "sampling": results["sampling"]})
    try:
        m = results["metrics"]
        rows = []
        for b in results["benchmarks"]:
            for task in ("request", "response"):
                if f"guard/{b['name']}/{task}/f1" in m:
                    rows.append([b["name"], task, int(m[f"guard/{b['name']}/{task}/n"]),
                                 *(100 * m.get(f"guard/{b['name']}/{task}/{k}", 0.0) for k in WANDB_COLUMNS)])
        table = wandb.Table(columns=["benchmark", "task", "n", *WANDB_COLUMNS], data=rows)
        images = {f"plots/{p.stem}": wandb.Image(str(p)) for p in sorted((out / "plots").glob("*.png"))}
        run.log({**m, "guard/per_benchmark": table, **images})
        run.summary.update({k: v for k, v in m.items() if k.split("/")[1:2] == ["avg"]})  # <prefix>/avg/...
    finally:
        run.finish()
