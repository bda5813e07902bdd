"""Rejection sampling (GuardReasoner-VL, stage 2): keep the SFT prompts the SFT model gets wrong.

Each prompt gets ``k`` sampled completions (paper: 4, temperature 1.0, top-p
0.95), rendered and judged by the recipe's task (``reject.task``, :func:`guardrl.tasks.get_task`):
a completion is *correct* when ``task.judge`` says so (the guard: it parses and every gold label
the sample has is predicted exactly; a sample without a response label is judged on the request
alone; ``Response: None`` against a gold response label is wrong -- the same rule as the RL
reward's ``r_safety == 1``). The keep rule (:class:`KeepRule`) defaults to the paper's
"all k wrong"; "any wrong" and "accuracy <= x" are the alternatives.

Not counted as wrong (each reported separately, per reason, in the manifest, the table and the summary):

* ``truncated``: a completion that stopped at ``max_new_tokens`` (finish reason ``length``) before a
  parseable answer; the keep rule sees only the other (*judged*) completions, and a prompt with none
  judged is not kept (``undecided``);
* ``prompt_too_long``: a prompt that leaves no room for ``max_new_tokens`` (the engine refuses it with
  :class:`~guardrl.generation.base.PromptTooLongError`); it is skipped, never kept as hard;
* ``errors``: any other generation failure of a prompt (skipped).

How it runs (:func:`run_reject`):

* the input (a verified shard dir, or one split of a split dir) is cut into
  *work shards* of ``shard_size`` rows (row ranges of the input files, so the
  driver never loads the data);
* Ray actors -- one per GPU (``tensor_parallel_size`` GPUs each) on a cluster
  with GPUs, ``num_actors`` CPU actors otherwise -- each load one engine
  (:func:`guardrl.generation.make_engine`) and take work shards one at a time;
* every work shard's judged rows (all rows, not only kept ones: the keep rule
  is applied at the end, so changing it costs no sampling) are written
  atomically to ``.<out>.reject-work/shard-NNNNN.parquet``; a rerun with the
  same fingerprint (model, data, sampling, engine settings) skips finished
  shards, so a run killed with ``kill -9`` resumes where it stopped. A work
  shard's sampling seed depends only on the base seed and its index, so a
  resumed run keeps exactly the set an uninterrupted run keeps;
* the kept rows are published as a shard dir (:class:`guardrl.core.shards.ShardWriter`)
  whose manifest carries ``reject.stats``: seen, kept, format failures and
  correct completions per source x modality x label (``request/response``),
  also printed as a table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from guardrl.core.atomic import atomic_file, atomic_write_text
from guardrl.core.schema import ARROW_SCHEMA, Sample
from guardrl.core.shards import ShardWriter, read_manifest, resolve, shard_files, split_names
from guardrl.generation.base import PromptTooLongError, SamplingParams, isolate_failures, render_prompts
from guardrl.integrations.ray import init_ray
from guardrl.stages.reject.stats import Stats, label_key, print_stats  # noqa: F401  (re-exported: guardrl.stages.reject.runner.*)
from guardrl.tasks import DEFAULT_TASK, Task, check_task, get_task, task_modules

log = logging.getLogger(__name__)

KEEP_RULES: tuple[str, ...] = ("all_wrong", "any_wrong", "max_accuracy")
WORK_SUFFIX = ".reject-work"
FINGERPRINT = "fingerprint.json"
STAGE = "reject"


# ------------------------------------------------------------------------------------- judging (pure)
@dataclass(frozen=True)
class KeepRule:
    """Which prompts to keep, from ``correct`` of ``k`` completions.

    Attributes:
        rule: ``all_wrong`` (paper: no completion correct), ``any_wrong`` (at least
            one wrong), or ``max_accuracy`` (``correct / k <= max_accuracy``).
        max_accuracy: the threshold for ``max_accuracy``, in [0, 1].
    """

    rule: str = "all_wrong"
    max_accuracy: float | None = None

    def __post_init__(self) -> None:
        if self.rule not in KEEP_RULES:
            raise ValueError(f"unknown keep rule {self.rule!r}; valid: {list(KEEP_RULES)}")
        if self.rule == "max_accuracy" and (self.max_accuracy is None or not 0 <= self.max_accuracy <= 1):
            raise ValueError(f"keep rule max_accuracy needs max_accuracy in [0, 1], got {self.max_accuracy}")

    def keep(self, correct: int, k: int) -> bool:
        if self.rule == "all_wrong":
            return correct == 0
        if self.rule == "any_wrong":
            return correct < k
        return correct / k <= self.max_accuracy  # type: ignore[operator]


def judge(samples: Sequence[Sample], completions: Sequence[Sequence[Any]], task: Task | None = None
          ) -> list[dict[str, Any]]:
    """Per sample: ``k``, correct, format-failed and truncated completions, predictions, a hash of the texts.

    Each completion is read by ``task.judge`` (default: the guard). A completion is *truncated* when it did
    not parse and stopped at ``max_new_tokens`` (``finish_reason == "length"``): it is neither correct nor a
    format failure (the model was cut off, not wrong). ``k - truncated`` completions are judged.
    """
    task = task or get_task(DEFAULT_TASK)
    out = []
    for s, comps in zip(samples, completions, strict=True):
        verdicts = [task.judge(s, c.text) for c in comps]
        cut = [not v.format_ok and getattr(c, "finish_reason", "stop") == "length"
               for v, c in zip(verdicts, comps, strict=True)]
        out.append(
            {
                "k": len(comps),
                "correct": sum(v.correct for v in verdicts),
                "format_failures": sum(not v.format_ok and not t for v, t in zip(verdicts, cut, strict=True)),
                "truncated": sum(cut),
                "predictions": ["truncated" if t else v.prediction for v, t in zip(verdicts, cut, strict=True)],
                "completions_sha256": hashlib.sha256("\0".join(c.text for c in comps).encode()).hexdigest(),
                "tokens": sum(c.num_tokens for c in comps),
            }
        )
    return out


def keep_decision(rule: KeepRule, j: Mapping[str, Any]) -> str:
    """``"kept"``, ``"not_hard"`` or why the prompt is neither: ``"prompt_too_long"``, ``"error"``,
    ``"undecided"`` (every completion truncated). The rule sees the judged completions only."""
    if j.get("error"):
        return "prompt_too_long" if j.get("error_kind") == "prompt_too_long" else "error"
    judged = j["k"] - j.get("truncated", 0)
    if judged < 1:
        return "undecided"
    return "kept" if rule.keep(j["correct"], judged) else "not_hard"


# ------------------------------------------------------------------------------------- config
def flat_options(section: Mapping[str, Any], fields: Iterable[str], stage: str,
                 nested: tuple[str, ...] = ("sampling", "workers")) -> dict[str, Any]:
    """A recipe section with its ``nested`` blocks (``sampling:``, ``workers:``) flattened into one level.

    Raises:
        ValueError: a key that is not one of ``fields``, naming ``stage`` and listing the valid ones.
    """
    flat: dict[str, Any] = {}
    for key, value in section.items():
        if key in nested and isinstance(value, Mapping):
            flat.update(value)
        else:
            flat[key] = value
    valid = set(fields)
    unknown = sorted(set(flat) - valid)
    if unknown:
        raise ValueError(f"unknown {stage} option(s) {unknown}; valid: {sorted(valid)}")
    return flat


@dataclass
class RejectConfig:
    """The ``reject:`` section of a recipe (see ``recipes/*/reject.yaml`` for each field's help)."""

    data: str
    model: str
    out: str
    split: str | None = "train"
    engine: str = "auto"
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    k: int = 4
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 1024
    seed: int = 0
    keep: str = "all_wrong"
    max_accuracy: float | None = None
    shard_size: int = 256
    num_actors: int | None = None
    cpus_per_actor: float = 1.0
    limit: int | None = None
    keep_work: bool = False
    task: str = DEFAULT_TASK
    task_modules: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, section: Mapping[str, Any]) -> RejectConfig:
        """Build from a recipe section (``sampling`` / ``keep`` / ``workers`` sub-blocks flattened).

        Raises:
            ValueError: unknown keys (listing the valid ones) or invalid values.
        """
        section = dict(section)
        keep = section.get("keep")
        if isinstance(keep, Mapping):
            section["keep"] = keep.get("rule", "all_wrong")
            section["max_accuracy"] = keep.get("max_accuracy")
        cfg = cls(**flat_options(section, cls.__dataclass_fields__, "reject"))
        cfg.keep_rule()  # validates
        cfg.task_modules = task_modules(cfg.task_modules)
        check_task(cfg.task, cfg.task_modules, where="reject")
        if cfg.k < 1 or cfg.shard_size < 1:
            raise ValueError(f"k and shard_size must be >= 1 (k={cfg.k}, shard_size={cfg.shard_size})")
        return cfg

    def keep_rule(self) -> KeepRule:
        return KeepRule(self.keep, self.max_accuracy)

    def sampling(self) -> SamplingParams:
        return SamplingParams(n=self.k, temperature=self.temperature, top_p=self.top_p,
                              max_new_tokens=self.max_new_tokens, seed=self.seed)


# ------------------------------------------------------------------------------------- work shards
@dataclass(frozen=True)
class WorkShard:
    """Rows ``[start, stop)`` of one input Parquet file."""

    index: int
    file: str
    start: int
    stop: int


def plan_shards(files: Sequence[tuple[str, int]], shard_size: int, limit: int | None = None) -> list[WorkShard]:
    """Cut input files (path, rows) into work shards of at most ``shard_size`` rows, in order."""
    shards, left = [], limit if limit is not None else float("inf")
    for path, rows in files:
        for start in range(0, rows, shard_size):
            if left <= 0:
                return shards
            stop = int(min(start + shard_size, rows, start + left))
            shards.append(WorkShard(len(shards), path, start, stop))
            left -= stop - start
    return shards


def read_rows(path: str, start: int, stop: int) -> pa.Table:
    """Rows ``[start, stop)`` of a Parquet file, reading only the row groups that hold them."""
    pf = pq.ParquetFile(path)
    try:
        groups, first, offset = [], None, 0
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if offset + n > start and offset < stop:
                groups.append(g)
                first = offset if first is None else first
            offset += n
        table = pf.read_row_groups(groups) if groups else ARROW_SCHEMA.empty_table()
    finally:
        pf.close()
    return table.slice(start - (first or 0), stop - start)


def shard_seed(seed: int, index: int) -> int:
    """The sampling seed of work shard ``index`` (independent of which actor runs it)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{index}".encode()).digest()[:4], "little")


def work_dir_for(out: str | Path) -> Path:
    out = Path(out)
    return out.parent / f".{out.name}{WORK_SUFFIX}"


def run_shard(engine: Any, shard: WorkShard, params: SamplingParams, path: str | Path, task: Task | None = None
              ) -> dict[str, Any]:
    """Sample, judge and write one work shard atomically (all rows, judgement in provenance); prompts are
    rendered and completions judged by ``task`` (default: the guard)."""
    t0 = time.perf_counter()
    task = task or get_task(DEFAULT_TASK)
    samples = [Sample.from_row(r) for r in read_rows(shard.file, shard.start, shard.stop).to_pylist()]
    inputs = render_prompts(task.prompt_messages, samples)
    params = SamplingParams(**{**asdict(params), "seed": shard_seed(params.seed, shard.index)})
    completions, failures = isolate_failures(lambda xs: engine.generate(xs, params), inputs)
    errors = [None if e is None else (" ".join(str(e).split())[:300] or type(e).__name__) for e in failures]
    kinds = ["prompt_too_long" if isinstance(e, PromptTooLongError) else "error" for e in failures]
    ok = [i for i, e in enumerate(errors) if e is None]
    judged = dict(zip(ok, judge([samples[i] for i in ok], [completions[i] for i in ok], task), strict=True))
    rows = []
    for i, s in enumerate(samples):
        j = judged.get(i) or {"k": 0, "correct": 0, "format_failures": 0, "truncated": 0, "predictions": [],
                              "completions_sha256": None, "tokens": 0, "error": errors[i], "error_kind": kinds[i]}
        row = s.to_row()
        row["provenance"] = json.dumps({**s.provenance, "reject": j}, sort_keys=True, ensure_ascii=False)
        rows.append(row)
    with atomic_file(path, "wb") as fh:
        pq.write_table(pa.Table.from_pylist(rows, schema=ARROW_SCHEMA), fh)
    return {"index": shard.index, "rows": len(rows), "seconds": time.perf_counter() - t0,
            "tokens": sum(json.loads(r["provenance"])["reject"]["tokens"] for r in rows)}


class RejectWorker:
    """One engine per actor; runs work shards handed to it (see :func:`run_reject`)."""

    def __init__(self, model: str, engine: str, engine_kwargs: Mapping[str, Any], task: str = DEFAULT_TASK,
                 modules: Sequence[str] = ()) -> None:
        from guardrl.generation import make_engine

        logging.basicConfig(level=logging.INFO)
        self.task = get_task(task, modules)  # imported in this process: a task defined outside guardrl works
        self.engine = make_engine(model, engine=engine, **dict(engine_kwargs))

    def run(self, shard: WorkShard, params: SamplingParams, path: str) -> dict[str, Any]:
        return run_shard(self.engine, shard, params, path, self.task)


# ------------------------------------------------------------------------------------- driver
def input_files(cfg: Any) -> tuple[Path, list[tuple[str, int]], dict[str, Any]]:
    """``(folder, [(shard file, rows)], manifest)`` of the input set ``cfg.data`` (its ``cfg.split`` when the set
    has splits), every shard verified (size, hash, schema); any config with ``data`` and ``split`` (reject, synth)."""
    split = cfg.split if split_names(cfg.data) else None
    d = resolve(cfg.data, split)
    manifest = read_manifest(d)
    files = [str(p) for p in shard_files(d)]  # verifies sizes, hashes, schema
    rows = {s["name"]: s["rows"] for s in manifest["shards"]}
    return d, [(f, rows[Path(f).name]) for f in files], manifest


def fingerprint(cfg: RejectConfig, manifest: Mapping[str, Any]) -> str:
    """Hash of everything the sampled completions depend on (not the keep rule or the output path)."""
    key = {
        "data": [s["sha256"] for s in manifest["shards"]],
        "model": model_hash(cfg.model),
        "engine": cfg.engine,
        "engine_kwargs": {k: v for k, v in sorted(cfg.engine_kwargs.items()) if k != "num_threads"},
        "sampling": asdict(cfg.sampling()),
        "shard_size": cfg.shard_size,
        "limit": cfg.limit,
    }
    if cfg.task != DEFAULT_TASK or cfg.task_modules:  # the judgements in the work shards are the task's
        key["task"] = [cfg.task, *cfg.task_modules]
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def model_hash(model: str) -> str:
    """Hash of a model folder's config and weight file sizes/mtimes (cheap; a new checkpoint changes it)."""
    p = Path(model)
    if not p.is_dir():
        return model
    h = hashlib.sha256()
    for f in sorted(p.glob("*")):
        if f.is_file() and (f.suffix in (".json", ".safetensors", ".bin")):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _actor_plan(cfg: RejectConfig, pending: int) -> tuple[int, dict[str, float]]:
    """How many actors, and each one's Ray resources: one per GPU group on a GPU cluster, else CPU actors."""
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus >= 1:
        per = int(cfg.engine_kwargs.get("tensor_parallel_size", 1))
        n = cfg.num_actors or max(1, int(gpus // per))
        return max(1, min(n, pending)), {"num_gpus": per, "num_cpus": cfg.cpus_per_actor}
    n = cfg.num_actors or 2
    return max(1, min(n, pending)), {"num_cpus": cfg.cpus_per_actor}


def run_reject(cfg: RejectConfig, *, show_table: bool = True) -> dict[str, Any]:
    """Run rejection sampling (see the module docstring); resumes from finished work shards.

    Returns:
        A summary: :class:`Stats` totals (``seen``, ``kept``, ``format_failures``, ``truncated``,
        ``undecided``, ``prompt_too_long``, ``errors``, ...), ``shards``, ``resumed_shards``, ``out``.
    """
    out = Path(cfg.out)
    data_dir, files, in_manifest = input_files(cfg)
    fp = fingerprint(cfg, in_manifest)
    shards = plan_shards(files, cfg.shard_size, cfg.limit)
    work = work_dir_for(out)
    fp_file = work / FINGERPRINT
    if work.exists() and (not fp_file.is_file() or json.loads(fp_file.read_text()).get("fingerprint") != fp):
        log.warning("reject: %s holds work from a different run (model, data or sampling changed); removing it", work)
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(fp_file, json.dumps({"fingerprint": fp, "config": asdict(cfg)}, indent=2, default=str))
    paths = {s.index: work / f"shard-{s.index:05d}.parquet" for s in shards}
    pending = [s for s in shards if not paths[s.index].is_file()]
    resumed = len(shards) - len(pending)
    log.info("reject: %d prompts from %s in %d work shards (%d already done), k=%d",
             sum(s.stop - s.start for s in shards), data_dir, len(shards), resumed, cfg.k)
    if pending:
        _sample_pending(cfg, pending, paths)
    summary = _finalize(cfg, shards, paths, fp, show_table)
    summary.update(shards=len(shards), resumed_shards=resumed)
    if not cfg.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def _sample_pending(cfg: RejectConfig, pending: Sequence[WorkShard], paths: Mapping[int, Path]) -> None:
    import ray

    n_cpu = (cfg.num_actors or 2) * cfg.cpus_per_actor
    started = init_ray(num_cpus=n_cpu)
    try:
        n_actors, resources = _actor_plan(cfg, len(pending))
        engine = cfg.engine
        if "num_gpus" not in resources and engine == "auto":
            engine = "hf"  # CPU actors: never start vLLM
        log.info("reject: %d actor(s) %s, engine %s", n_actors, resources,
                 engine if engine != "auto" else "auto (each actor logs its choice)")
        actor_cls = ray.remote(RejectWorker)
        actors = [actor_cls.options(**resources).remote(cfg.model, engine, cfg.engine_kwargs, cfg.task,
                                                         cfg.task_modules) for _ in range(n_actors)]
        try:
            dispatch_shards(actors, pending, cfg.sampling(), paths)
        finally:
            for a in actors:
                ray.kill(a)
    finally:
        if started:
            ray.shutdown()


def dispatch_shards(actors: Sequence[Any], pending: Sequence[WorkShard], params: Any,
                    paths: Mapping[int, Path], label: str = STAGE) -> None:
    """Hand work shards to actors one at a time until all are written (any actor with
    ``run(shard, params, path) -> {"index", "rows", "seconds", "tokens"}``; ``label`` names the stage in logs)."""
    import ray
    from rich.progress import Progress

    queue = list(pending)
    running: dict[Any, Any] = {}
    t0, tokens = time.perf_counter(), 0

    def submit(actor: Any) -> None:
        if queue:
            s = queue.pop(0)
            running[actor.run.remote(s, params, str(paths[s.index]))] = actor

    with Progress(transient=False) as bar:
        task = bar.add_task(f"{label} (shards)", total=len(pending))
        for a in actors:
            submit(a)
        while running:
            (ready,), _ = ray.wait(list(running), num_returns=1)
            actor = running.pop(ready)
            info = ray.get(ready)
            tokens += info["tokens"]
            bar.advance(task)
            log.info("%s: shard %d done (%d prompts, %.1fs)", label, info["index"], info["rows"], info["seconds"])
            submit(actor)
    dt = time.perf_counter() - t0
    log.info("%s: %d shards in %.1fs (%.1f tokens/s)", label, len(pending), dt, tokens / max(dt, 1e-9))


def _iter_judged(shards: Iterable[WorkShard], paths: Mapping[int, Path]) -> Iterable[tuple[Sample, dict]]:
    for s in shards:
        for row in pq.read_table(paths[s.index]).to_pylist():
            sample = Sample.from_row(row)
            yield sample, sample.provenance["reject"]


def _finalize(cfg: RejectConfig, shards: Sequence[WorkShard], paths: Mapping[int, Path], fp: str,
              show_table: bool) -> dict[str, Any]:
    rule = cfg.keep_rule()
    stats = Stats()
    writer = ShardWriter(cfg.out, stage=STAGE, config={**asdict(cfg), "fingerprint": fp})
    with writer as w:
        for sample, j in _iter_judged(shards, paths):
            decision = keep_decision(rule, j)
            stats.add(sample, j, decision)
            if decision == "kept":
                w.write(sample)
            elif decision == "prompt_too_long":
                w.skip(sample.id, f"prompt too long: {j['error']}")
            elif decision == "error":
                w.skip(sample.id, f"generation failed: {j['error']}")
            elif decision == "undecided":
                w.skip(sample.id, f"all {j['k']} completions stopped at max_new_tokens={cfg.max_new_tokens}")
        w.report = {"keep_rule": asdict(rule), "totals": stats.totals(), "stats": stats.rows()}
    if show_table:
        print_stats(stats.rows())
    totals = stats.totals()
    log.info("reject: kept %d of %d prompts -> %s", totals["kept"], totals["seen"], cfg.out)
    return {**totals, "out": str(cfg.out)}
