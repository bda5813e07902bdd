"""Run guardrl's stages in order, each as a Ray task, skipping stages whose inputs and config are unchanged.

A stage is a function registered with :func:`register_stage`. It receives a
:class:`StageContext` (its config section, the output folders of the stages it
needs, and the folder it must produce) and returns a summary dict (samples,
key metrics) for the final table.

Skipping uses content hashes, never timestamps: a stage's *fingerprint* is the
sha256 of its name, its resolved config section and the *output hashes* of the
stages it reads; when a stage finishes, the runner hashes its output folder
and writes ``<out>/.guardrl_stage.json`` (atomically, last). A stage whose
marker carries the current fingerprint is skipped; a killed stage has no marker
and runs again (stages resume from their own checkpoints). The runner also records
a stage's fingerprint in ``<run_dir>/.started/<stage>.json`` before it runs: output left
by another config, finished or killed, or a ``--force``d stage's, is removed first,
so SFT / RL never resume a checkpoint that another config wrote.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrl.core.atomic import atomic_write_text
from guardrl.core.registry import Registry
from guardrl.integrations.ray import init_ray

log = logging.getLogger(__name__)

#: the guard's recipe (GuardReasoner-VL), in order
STAGE_ORDER: tuple[str, ...] = ("data", "sft", "reject", "augment", "rl", "export", "eval")
#: the rewriter's (VLMGuard-R1): it reads the guard pipeline's data and SFT guard (the judge)
REWRITE_STAGES: tuple[str, ...] = ("rewrite_synth", "rewrite_sft", "rewrite_eval")
#: every stage a pipeline may name, in the one order stages run; a recipe runs the ones its ``stages:`` lists
STAGES: tuple[str, ...] = STAGE_ORDER + REWRITE_STAGES
MARKER = ".guardrl_stage.json"
STARTED_DIR = ".started"  # <run_dir>/.started/<stage>.json: the fingerprint of the run that last started a stage


@dataclass
class StageContext:
    """What a stage gets: its config, its inputs and where to write."""

    name: str
    config: dict[str, Any]  # this stage's section of the pipeline recipe (resolved)
    pipeline: dict[str, Any]  # the whole pipeline recipe (resolved)
    out_dir: Path  # the folder this stage must leave complete (write atomically)
    inputs: dict[str, Path]  # upstream stage name -> its output folder
    run_dir: Path  # the pipeline's root folder


@dataclass(frozen=True)
class StageSpec:
    name: str
    fn: Callable[[StageContext], dict[str, Any]]
    needs: tuple[str, ...]
    num_cpus: float = 0  # the stage task itself only orchestrates; its workers ask for resources


@dataclass
class StageResult:
    name: str
    status: str  # "ran" | "skipped" | "failed"
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None


_REGISTRY: Registry[StageSpec] = Registry("stage")


def register_stage(name: str, needs: Sequence[str] = ()) -> Callable:
    """Decorator registering a stage function under ``name`` (a duplicate name raises)."""

    def deco(fn: Callable[[StageContext], dict[str, Any]]) -> Callable[[StageContext], dict[str, Any]]:
        unknown = [n for n in (name, *needs) if n not in STAGES]
        if unknown and name not in _REGISTRY:
            raise ValueError(f"unknown stage(s) {unknown}; valid: {list(STAGES)}")
        _REGISTRY.add(name, StageSpec(name=name, fn=fn, needs=tuple(needs)))
        return fn

    return deco


def get_stage(name: str) -> StageSpec:
    _load_builtin_stages()
    return _REGISTRY.get(name)


def _load_builtin_stages() -> None:
    import guardrl.stages.pipeline.commands  # noqa: F401  (registers the guard's stages)
    import guardrl.stages.pipeline.rewrite_stages  # noqa: F401  (and the rewriter's)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def hash_tree(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 over every file under ``path`` (relative name, size, content), the marker excluded."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != MARKER)
    for p in files:
        rel = p.relative_to(path).as_posix()
        if any(part.startswith(".") and part.endswith(".tmp") for part in rel.split("/")):
            continue
        h.update(rel.encode())
        h.update(str(p.stat().st_size).encode())
        with p.open("rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def fingerprint(name: str, config: dict[str, Any], input_hashes: dict[str, str]) -> str:
    """sha256 of the stage name, its config, its inputs' output hashes and guardrl's version.

    Code changes within one guardrl version are not detected: rerun a stage with ``--force STAGE``.
    """
    from guardrl import __version__

    payload = {"stage": name, "config": config, "inputs": input_hashes, "guardrl": __version__, "format": 1}
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


def _referenced_files(cfg: dict[str, Any]) -> dict[str, str]:
    """Content hashes of the files a stage section names (its recipe, a source folder's files)."""
    out: dict[str, str] = {}
    for key in ("recipe", "src"):
        value = cfg.get(key)
        if not value:
            continue
        path = Path(str(value))
        if path.is_file():
            out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            out[key] = hash_tree(path)
    return out


def read_marker(out_dir: Path) -> dict[str, Any] | None:
    return _read_json(out_dir / MARKER)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _clear_other_runs(out_dir: Path, started: Path, fp: str, *, forced: bool) -> None:
    """Before a stage runs: remove what another config (or, ``forced``, any run) left in ``out_dir``, keep a
    killed run of this very config (it resumes from its checkpoints), then record ``fp`` in ``started``.

    Output with neither marker (written before the started record existed) is kept, as it was before.
    """
    written_by = (read_marker(out_dir) or _read_json(started) or {}).get("fingerprint")
    if out_dir.exists() and (forced or (written_by is not None and written_by != fp)):
        why = "--force" if forced else f"written by another config ({written_by[:12]})"
        log.info("[%s] removing its earlier output in %s: %s", out_dir.name, out_dir, why)
        shutil.rmtree(out_dir)
    (out_dir / MARKER).unlink(missing_ok=True)
    started.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(started, json.dumps({"stage": out_dir.name, "fingerprint": fp}, indent=2))


def recipe_stages(recipe: dict[str, Any]) -> list[str]:
    """The stages a pipeline recipe runs: its ``stages:`` entries, in :data:`STAGES` order.

    Raises:
        ValueError: the recipe names an unknown stage, or none.
    """
    listed = list(recipe.get("stages") or {})
    unknown = [n for n in listed if n not in STAGES]
    if unknown:
        raise ValueError(f"pipeline recipe: unknown stage(s) {unknown} under stages:; valid: {list(STAGES)}")
    if not listed:
        raise ValueError("pipeline recipe: `stages:` lists no stage")
    return [n for n in STAGES if n in listed]


def _select(stages: list[str], start: str | None, stop: str | None) -> list[str]:
    start, stop = start or stages[0], stop or stages[-1]
    for s in (start, stop):
        if s not in stages:
            raise ValueError(f"unknown stage {s!r} for --from/--to; this recipe's stages: {stages}")
    i, j = stages.index(start), stages.index(stop)
    if i > j:
        raise ValueError(f"--from {start} comes after --to {stop}")
    return stages[i : j + 1]


def _execute(spec: StageSpec, ctx: StageContext) -> dict[str, Any]:
    return spec.fn(ctx)


TICK_S = 0.5


def _wait_ray(ref: Any, tick: Callable[[], None]) -> dict[str, Any]:
    """The stage task's result, calling ``tick`` about every ``TICK_S`` seconds until it is ready (and once after)."""
    import ray

    while not ray.wait([ref], timeout=TICK_S)[0]:
        tick()
    tick()
    return ray.get(ref)


def _wait_thread(spec: StageSpec, ctx: StageContext, tick: Callable[[], None]) -> dict[str, Any]:
    """In-process run (``use_ray=False``) on a thread, so the console still ticks; exceptions are re-raised."""
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(max_workers=1) as pool:
        fut = pool.submit(_execute, spec, ctx)
        while True:
            try:
                result = fut.result(timeout=TICK_S)
                break
            except cf.TimeoutError:
                tick()
    tick()
    return result


def run_pipeline(
    recipe: dict[str, Any],
    run_dir: str | Path,
    start: str | None = None,
    stop: str | None = None,
    force: Sequence[str] = (),
    use_ray: bool = True,
    on_stage: Callable[[StageResult], None] | None = None,
    registry: dict[str, StageSpec] | None = None,
    on_start: Callable[[str], None] | None = None,
    on_tick: Callable[[str], None] | None = None,
    ray_init: dict[str, Any] | None = None,
) -> list[StageResult]:
    """Run stages ``start``..``stop`` (default: the recipe's first..last, :func:`recipe_stages`) of ``recipe``
    under ``run_dir``.

    Stages before ``start`` must already be complete (their markers are read for
    their output hashes). Each stage runs as a Ray task (``use_ray``) or in-process.
    ``registry`` replaces the built-in stages (name -> :class:`StageSpec`), e.g. for tests.
    ``on_start(name)`` is called when a stage starts running, ``on_tick(name)`` about every
    ``TICK_S`` seconds while it runs (the console reads the stage's log then), ``on_stage(result)``
    when it is done or skipped. ``ray_init`` adds keyword arguments to :func:`guardrl.integrations.ray.init_ray`.

    Raises:
        ValueError: an unknown or unregistered stage, or ``start`` after ``stop``.
        RuntimeError: a needed upstream stage has no completed output.
    """
    if registry is None:
        _load_builtin_stages()
        registry = _REGISTRY
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    selected = _select(recipe_stages(recipe), start, stop)
    stages_cfg = recipe.get("stages", {})
    results: list[StageResult] = []
    remote = None
    if use_ray:
        import ray

        init_ray(**(ray_init or {}))
        remote = ray.remote(_execute)

    for name in selected:
        if name not in registry:
            raise ValueError(f"stage {name!r} is not registered; registered: {sorted(registry)}")
        spec = registry[name]
        out_dir = run_dir / name
        inputs, input_hashes = {}, {}
        for need in spec.needs:
            up = run_dir / need
            marker = read_marker(up)
            if marker is None:
                raise RuntimeError(
                    f"stage {name!r} needs {need!r}, which has no completed output in {up}; "
                    f"run with --from {need} (or earlier)"
                )
            inputs[need] = up
            input_hashes[need] = marker["output_hash"]
        cfg = dict(stages_cfg.get(name, {}) or {})
        fp = fingerprint(name, {**cfg, "_files": _referenced_files(cfg)}, input_hashes)
        marker = read_marker(out_dir)
        if marker and marker.get("fingerprint") == fp and name not in force:
            res = StageResult(name, "skipped", 0.0, marker.get("summary", {}), out_dir)
            log.debug("[%s] unchanged (fingerprint %s) - skipped", name, fp[:12])
            results.append(res)
            if on_stage:
                on_stage(res)
            continue
        _clear_other_runs(out_dir, run_dir / STARTED_DIR / f"{name}.json", fp, forced=name in force)
        ctx = StageContext(name, cfg, recipe, out_dir, inputs, run_dir)
        log.debug("[%s] running", name)  # the console shows it
        t0 = time.perf_counter()
        if on_start:
            on_start(name)
        tick = functools.partial(on_tick, name) if on_tick else lambda: None
        if remote is not None:
            summary = _wait_ray(remote.options(num_cpus=spec.num_cpus, name=f"guardrl:{name}").remote(spec, ctx), tick)
        else:
            summary = _wait_thread(spec, ctx, tick)
        seconds = time.perf_counter() - t0
        if not out_dir.exists():
            raise RuntimeError(f"stage {name!r} finished but wrote nothing to {out_dir}")
        out_hash = hash_tree(out_dir)
        atomic_write_text(
            out_dir / MARKER,
            json.dumps(
                {"stage": name, "fingerprint": fp, "output_hash": out_hash, "inputs": input_hashes,
                 "seconds": round(seconds, 2), "summary": summary},
                indent=2, sort_keys=True, default=str,
            ),
        )
        res = StageResult(name, "ran", seconds, summary or {}, out_dir)
        results.append(res)
        if on_stage:
            on_stage(res)
    return results
