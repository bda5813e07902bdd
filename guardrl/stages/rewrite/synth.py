"""Rewriter data synthesis (VLMGuard-R1): three teacher stages per sample -> the rewriter's SFT target.

Per input sample (a guardrl shard dir; ``provenance["reference_responses"]`` where the source has them):

1. **hindsight** analysis: the safe vs the unsafe reference response -> the risk features that separate them.
   Degraded forms (recorded as ``hindsight_mode``): one reference only (``single``: the teacher contrasts it
   with the answer it would expect of the other kind), none (``inferred``: the teacher imagines both);
2. **risk**: how the text, the image and their combination lead to that risk;
3. **optimise**: the changes, then the rewritten prompt on a line starting ``Rewritten prompt:``.

Each stage's prompt is a template file (:mod:`guardrl.stages.rewrite.teachers`). Each teacher answer is
checked (:func:`check_stage`: cut at ``max_new_tokens``, too short, a reserved tag of the output format, no
rewritten prompt); a bad answer is counted and asked again with a new seed up to ``retries`` times, then the
sample is skipped with its reason (counted in the manifest), never kept. The target is assembled by the
recipe's task (``task.assemble_target``) and must parse back (``task.parse``) to the same parts.

Runs like rejection sampling (and reuses its machinery): work shards of ``shard_size`` rows handed to Ray
actors (each holding one teacher), every finished work shard written atomically to
``.<out>.synth-work/shard-NNNNN.parquet``; a rerun with the same fingerprint skips them, so a run killed
with ``kill -9`` resumes, and since a shard's seeds depend only on the base seed, its index, the stage and
the attempt, the published rows are the same as an uninterrupted run's. Output: a shard dir of SFT-ready rows
(``target`` filled; provenance ``synth`` = teacher, stage outputs, attempts, hindsight mode; ``synthetic``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from guardrl.core.atomic import atomic_file, atomic_write_text
from guardrl.core.schema import ARROW_SCHEMA, Sample
from guardrl.core.shards import ShardWriter
from guardrl.generation.base import Completion, SamplingParams
from guardrl.integrations.ray import init_ray
from guardrl.stages.reject.runner import (
    WorkShard,
    dispatch_shards,
    flat_options,
    input_files,
    model_hash,
    plan_shards,
    read_rows,
)
from guardrl.stages.rewrite.teachers import (
    REWRITE_MARKER,
    STAGES,
    Teacher,
    hindsight_mode,
    make_teacher,
    stage_prompts,
)
from guardrl.tasks import Task, check_task, get_task, task_modules

log = logging.getLogger(__name__)

STAGE = "rewrite_synth"
WORK_SUFFIX = ".synth-work"
FINGERPRINT = "fingerprint.json"
RESERVED = ("<think>", "</think>", "<rewrite>", "</rewrite>")
_LEADING_THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.S)


# ------------------------------------------------------------------------------------- checking (pure)
def check_stage(stage: str, completion: Completion, min_chars: int = 20) -> tuple[dict[str, str] | None, str | None]:
    """Read one teacher answer: the stage's parts (``{stage: text}``, for ``optimise`` also ``rewrite``) or
    why it is refused. A reasoning teacher's leading ``<think>...</think>`` is dropped first."""
    if completion.finish_reason == "length":
        return None, "cut at max_new_tokens"
    text = _LEADING_THINK.sub("", completion.text or "").strip()
    tag = next((t for t in RESERVED if t in text), None)
    if tag:
        return None, f"contains the reserved tag {tag}"
    if stage != "optimise":
        return ({stage: text}, None) if len(text) >= min_chars else (None, f"shorter than {min_chars} characters")
    at = text.rfind(REWRITE_MARKER)
    if at < 0:
        return None, f"no '{REWRITE_MARKER}' line"
    reasoning, rewrite = text[:at].strip(), text[at + len(REWRITE_MARKER):].strip()
    if len(reasoning) < min_chars:
        return None, f"optimisation shorter than {min_chars} characters"
    if not rewrite:
        return None, "empty rewritten prompt"
    return {"optimise": reasoning, "rewrite": rewrite}, None


def attempt_seed(seed: int, index: int, stage: str, attempt: int) -> int:
    """The seed of one stage's attempt on work shard ``index`` (independent of which actor runs it)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{index}:{stage}:{attempt}".encode()).digest()[:4], "little")


# ------------------------------------------------------------------------------------- config
@dataclass
class TeacherConfig:
    """The ``teacher:`` block (see ``recipes/*/rewrite_synth.yaml`` for each field's help)."""

    kind: str = "templated"
    name: str | None = None
    model: str | None = None
    engine: str = "auto"
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    base_url: str | None = None
    api_key_env: str | None = None
    timeout_s: float = 120.0
    max_retries: int = 2
    concurrency: int = 8

    def build(self) -> Teacher:
        return make_teacher(**asdict(self))


@dataclass
class SynthConfig:
    """The ``rewrite_synth:`` section of a recipe."""

    data: str
    out: str
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    split: str | None = "train"
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 512
    seed: int = 0
    retries: int = 2
    min_chars: int = 20
    shard_size: int = 64
    num_actors: int | None = None
    cpus_per_actor: float = 1.0
    limit: int | None = None
    keep_work: bool = False
    task: str = "rewrite"
    task_modules: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, section: Mapping[str, Any]) -> SynthConfig:
        """Build from a recipe section (``sampling`` / ``workers`` sub-blocks flattened).

        Raises:
            ValueError: unknown keys (listing the valid ones) or invalid values.
        """
        flat = flat_options(section, cls.__dataclass_fields__, "rewrite_synth")
        teacher = dict(flat.pop("teacher", None) or {})
        bad = sorted(set(teacher) - set(TeacherConfig.__dataclass_fields__))
        if bad:
            raise ValueError(f"unknown teacher option(s) {bad}; valid: {sorted(TeacherConfig.__dataclass_fields__)}")
        cfg = cls(teacher=TeacherConfig(**teacher), **flat)
        if cfg.teacher.kind in ("engine", "openai") and not cfg.teacher.model:
            raise ValueError(f"teacher.kind {cfg.teacher.kind} needs teacher.model")
        if cfg.teacher.kind == "openai" and not cfg.teacher.base_url:
            raise ValueError("teacher.kind openai needs teacher.base_url")
        if cfg.teacher.kind not in ("templated", "engine", "openai") and ":" not in cfg.teacher.kind:
            raise ValueError(f"unknown teacher kind {cfg.teacher.kind!r}; valid: templated, engine, openai, "
                             "or 'module:Class'")
        if cfg.retries < 0 or cfg.shard_size < 1 or cfg.min_chars < 0:
            raise ValueError("retries and min_chars must be >= 0, shard_size >= 1")
        cfg.task_modules = task_modules(cfg.task_modules)
        check_task(cfg.task, cfg.task_modules, where="rewrite_synth")
        return cfg

    def sampling(self) -> SamplingParams:
        return SamplingParams(n=1, temperature=self.temperature, top_p=self.top_p,
                              max_new_tokens=self.max_new_tokens, seed=self.seed)


# ------------------------------------------------------------------------------------- one work shard
def synth_samples(teacher: Teacher, task: Task, samples: Sequence[Sample], params: SamplingParams, index: int,
                  retries: int = 2, min_chars: int = 20) -> tuple[list[dict[str, Any]], Counter]:
    """Run the three stages over ``samples``; per sample its ``synth`` record (``parts``, ``attempts``,
    ``target`` or ``error``), and the count of refused answers per ``stage: reason``."""
    recs: list[dict[str, Any]] = [{"parts": {}, "attempts": {}, "refused": [], "hindsight_mode": hindsight_mode(s)}
                                  for s in samples]
    bad: Counter = Counter()
    for stage in STAGES:
        todo = [i for i, r in enumerate(recs) if "error" not in r]
        last: dict[int, str] = {}
        for attempt in range(retries + 1):
            if not todo:
                break
            p = SamplingParams(**{**asdict(params), "seed": attempt_seed(params.seed, index, stage, attempt)})
            subset = [samples[i] for i in todo]
            prompts = stage_prompts(stage, subset, [recs[i]["parts"] for i in todo])
            answers, errors = teacher.answer(stage, subset, prompts, p)
            again = []
            for i, ans, err in zip(todo, answers, errors, strict=True):
                recs[i]["attempts"][stage] = attempt + 1
                parts, why = (None, f"teacher failed: {' '.join(str(err).split())[:200]}") if err is not None \
                    else check_stage(stage, ans, min_chars)
                if parts is None:
                    reason = f"{stage}: {'teacher failed' if err is not None else why}"
                    bad[reason] += 1
                    recs[i]["refused"].append(reason)
                    last[i] = why
                    again.append(i)
                else:
                    recs[i]["parts"].update(parts)
            todo = again
        for i in todo:
            recs[i]["error"] = f"{stage}: {last[i]} (after {retries + 1} attempts)"
    for r in recs:
        if "error" in r:
            continue
        target = task.assemble_target(r["parts"])
        parsed = task.parse(target)
        if not getattr(parsed, "format_ok", False):
            r["error"] = f"assembled target does not parse: {getattr(parsed, 'error', '?')}"
            bad["target: does not parse"] += 1
            r["refused"].append("target: does not parse")
        else:
            r["target"] = target
    return recs, bad


def run_shard(teacher: Teacher, task: Task, shard: WorkShard, params: SamplingParams, path: str | Path,
              retries: int, min_chars: int) -> dict[str, Any]:
    """Synthesise one work shard and write all its rows atomically (``synth`` record in provenance)."""
    t0 = time.perf_counter()
    samples = [Sample.from_row(r) for r in read_rows(shard.file, shard.start, shard.stop).to_pylist()]
    recs, bad = synth_samples(teacher, task, samples, params, shard.index, retries, min_chars)
    rows = []
    for s, r in zip(samples, recs, strict=True):
        row = s.to_row()
        row["target"] = r.pop("target", None)
        prov = {**s.provenance, "synth": {**r, "teacher": teacher.name}}
        if row["target"] is not None and teacher.synthetic:
            prov["synthetic"] = True
        row["provenance"] = json.dumps(prov, sort_keys=True, ensure_ascii=False)
        rows.append(row)
    with atomic_file(path, "wb") as fh:
        pq.write_table(pa.Table.from_pylist(rows, schema=ARROW_SCHEMA), fh)
    return {"index": shard.index, "rows": len(rows), "seconds": time.perf_counter() - t0, "tokens": 0,
            "bad": dict(bad)}


class SynthWorker:
    """One teacher per actor; runs the work shards handed to it (see :func:`run_synth`)."""

    def __init__(self, teacher: Mapping[str, Any], task: str, modules: Sequence[str], retries: int,
                 min_chars: int) -> None:
        logging.basicConfig(level=logging.INFO)
        self.task = get_task(task, modules)
        self.teacher = TeacherConfig(**teacher).build()
        self.retries, self.min_chars = retries, min_chars

    def run(self, shard: WorkShard, params: SamplingParams, path: str) -> dict[str, Any]:
        return run_shard(self.teacher, self.task, shard, params, path, self.retries, self.min_chars)


# ------------------------------------------------------------------------------------- driver
def work_dir_for(out: str | Path) -> Path:
    out = Path(out)
    return out.parent / f".{out.name}{WORK_SUFFIX}"


def fingerprint(cfg: SynthConfig, manifest: Mapping[str, Any]) -> str:
    """Hash of everything the work shards depend on (not the output path, the actors or keep_work)."""
    t = asdict(cfg.teacher)
    t["model"] = model_hash(t["model"]) if t["model"] else None
    t["engine_kwargs"] = {k: v for k, v in sorted(t["engine_kwargs"].items()) if k != "num_threads"}
    key = {"data": [s["sha256"] for s in manifest["shards"]], "teacher": t, "sampling": asdict(cfg.sampling()),
           "retries": cfg.retries, "min_chars": cfg.min_chars, "shard_size": cfg.shard_size, "limit": cfg.limit,
           "task": [cfg.task, *cfg.task_modules]}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def run_synth(cfg: SynthConfig) -> dict[str, Any]:
    """Run synthesis (see the module docstring); resumes from finished work shards.

    Returns:
        ``seen``, ``written``, ``skipped``, ``bad_answers`` (per ``stage: reason``), ``hindsight_modes``,
        ``shards``, ``resumed_shards``, ``out``.
    """
    out = Path(cfg.out)
    data_dir, files, in_manifest = input_files(cfg)
    fp = fingerprint(cfg, in_manifest)
    shards = plan_shards(files, cfg.shard_size, cfg.limit)
    work = work_dir_for(out)
    fp_file = work / FINGERPRINT
    if work.exists() and (not fp_file.is_file() or json.loads(fp_file.read_text()).get("fingerprint") != fp):
        log.warning("synth: %s holds work from a different run (data, teacher or sampling changed); removing it", work)
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(fp_file, json.dumps({"fingerprint": fp, "config": asdict(cfg)}, indent=2, default=str))
    paths = {s.index: work / f"shard-{s.index:05d}.parquet" for s in shards}
    pending = [s for s in shards if not paths[s.index].is_file()]
    log.info("synth: %d samples from %s in %d work shards (%d already done), teacher %s",
             sum(s.stop - s.start for s in shards), data_dir, len(shards), len(shards) - len(pending), cfg.teacher.kind)
    if pending:
        _run_pending(cfg, pending, paths)
    summary = _finalize(cfg, shards, paths, fp)
    summary.update(shards=len(shards), resumed_shards=len(shards) - len(pending))
    if not cfg.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def _run_pending(cfg: SynthConfig, pending: Sequence[WorkShard], paths: Mapping[int, Path]) -> None:
    import ray

    started = init_ray(num_cpus=(cfg.num_actors or 2) * cfg.cpus_per_actor)
    try:
        local = cfg.teacher.kind == "engine"
        gpus = ray.cluster_resources().get("GPU", 0) if local else 0
        if gpus >= 1:
            per = int(cfg.teacher.engine_kwargs.get("tensor_parallel_size", 1))
            n, res = cfg.num_actors or max(1, int(gpus // per)), {"num_gpus": per, "num_cpus": cfg.cpus_per_actor}
        else:
            n, res = cfg.num_actors or 2, {"num_cpus": cfg.cpus_per_actor}
        teacher = asdict(cfg.teacher)
        if local and "num_gpus" not in res and teacher["engine"] == "auto":
            teacher["engine"] = "hf"  # CPU actors: never start vLLM
        n = max(1, min(n, len(pending)))
        log.info("synth: %d actor(s) %s, teacher %s", n, res, cfg.teacher.name or cfg.teacher.kind)
        actor_cls = ray.remote(SynthWorker)
        actors = [actor_cls.options(**res).remote(teacher, cfg.task, cfg.task_modules, cfg.retries, cfg.min_chars)
                  for _ in range(n)]
        try:
            dispatch_shards(actors, pending, cfg.sampling(), paths, label="synth")
        finally:
            for a in actors:
                ray.kill(a)
    finally:
        if started:
            ray.shutdown()


def _finalize(cfg: SynthConfig, shards: Sequence[WorkShard], paths: Mapping[int, Path], fp: str) -> dict[str, Any]:
    bad: Counter = Counter()
    modes: Counter = Counter()
    seen = written = 0
    with ShardWriter(cfg.out, stage=STAGE, config={**asdict(cfg), "fingerprint": fp}) as w:
        for s in shards:
            for row in pq.read_table(paths[s.index]).to_pylist():
                sample = Sample.from_row(row)
                rec = sample.provenance["synth"]
                seen += 1
                modes[rec["hindsight_mode"]] += 1
                bad.update(rec["refused"])
                if sample.target is None:
                    w.skip(sample.id, rec.get("error", "no target"))
                else:
                    w.write(sample)
                    written += 1
        report = {"seen": seen, "written": written, "skipped": seen - written,
                  "refused_answers": dict(sorted(bad.items())), "hindsight_modes": dict(sorted(modes.items())),
                  "teacher": cfg.teacher.name or cfg.teacher.kind}
        w.report = report
    log.info("synth: %d of %d samples -> %s (refused answers per stage %s)", written, seen, cfg.out, report["refused_answers"])
    return {**report, "out": str(cfg.out)}
