"""The built-in stages: each runs its stage's own CLI, pointed at the pipeline's folders.

Every stage is ``guardrl <stage> ...`` (the same command a user runs by hand)
with the stage recipe named in the pipeline recipe plus overrides that read
the previous stage's output and write into ``<run_dir>/<stage>``. It runs in a
child process of the stage's Ray task (so a stage that is a Ray driver itself,
like verl's trainer, gets a fresh driver), dies with it (``PDEATHSIG``) and
writes everything it prints to ``<run_dir>/logs/<stage>.log``; the pipeline's
console reads the log for its one line per stage (:mod:`guardrl.stages.pipeline.console`).
The child's environment silences known harmless third-party notices at their
source (:func:`guardrl.stages.pipeline.console.quiet_env`).

A pipeline recipe's ``stages.<name>`` section holds ``recipe`` (the stage
recipe), ``overrides`` (a list of ``key=value``) and stage-specific keys.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from guardrl.stages.pipeline.console import quiet_env
from guardrl.stages.pipeline.runner import StageContext, register_stage

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def run_cli(ctx: StageContext, args: list[str], env: dict[str, str] | None = None, tag: str = "") -> None:
    """Run ``python -m guardrl.cli ARGS`` for this stage; raise with the log's tail on failure."""
    logs = ctx.run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{ctx.name}{'-' + tag if tag else ''}.log"
    cmd = [sys.executable, "-m", "guardrl.cli", *args]
    # COLUMNS: rich's log handler wraps at the terminal width (80 without one); a log file wants whole lines
    child_env = quiet_env({**os.environ, "COLUMNS": "240", **(env or {})})
    with log_path.open("a", encoding="utf-8") as log_fh:
        log_fh.write(f"\n$ {' '.join(cmd)}\n")
        log_fh.flush()
        proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, env=child_env,
                                stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        rc = proc.wait()
    if rc != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        raise RuntimeError(f"stage {ctx.name!r} failed (exit {rc}); log: {log_path}\n" + "\n".join(tail))


def stage_overrides(ctx: StageContext, fixed: dict[str, Any]) -> list[str]:
    """``fixed`` (the pipeline's folders: lists/dicts as JSON) as ``key=value``, then the recipe's own ``overrides``."""
    extra = [str(o) for o in ctx.config.get("overrides") or []]
    return [f"{k}={json.dumps(v) if isinstance(v, list | dict) else v}" for k, v in fixed.items()] + extra


def stage_recipe(ctx: StageContext) -> str:
    """The stage recipe a pipeline stage names (``stages.<name>.recipe``)."""
    recipe = ctx.config.get("recipe")
    if not recipe:
        raise ValueError(f"pipeline recipe: stages.{ctx.name}.recipe is missing")
    return str(recipe)


def ray_env() -> dict[str, str]:
    """Stages that use Ray join the pipeline's cluster (or the user's RAY_ADDRESS)."""
    import ray

    addr = os.environ.get("RAY_ADDRESS") or ray.get_runtime_context().gcs_address
    return {"RAY_ADDRESS": addr}


def read_manifest(path: Path) -> dict[str, Any]:
    """``<path>/manifest.json`` ({} when absent)."""
    p = path / "manifest.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def first_last_jsonl(path: Path) -> dict[str, Any]:
    """``{"first", "last"}`` rows of a JSONL file such as a trainer's metrics.jsonl ({} when absent)."""
    if not path.is_file():
        return {}
    last: dict[str, Any] = {}
    first: dict[str, Any] | None = None
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            first = first or row
            last = row
    return {"first": first or {}, "last": last}


def data_commands(ctx: StageContext) -> list[list[str]]:
    """guard-mini (default), or ``converter: NAME`` (``guardrl data convert NAME --src SRC``, e.g.
    ``guardreasoner_vltrain`` for the 3B/7B pipelines)."""
    src = ctx.config.get("src", "data/guard-mini")
    if ctx.config.get("converter"):
        return [["data", "convert", str(ctx.config["converter"]), "--src", str(src), "--out", str(ctx.out_dir)]]
    return [["data", "guard-mini", "--src", str(src), "--out", str(ctx.out_dir)]]


def sft_commands(ctx: StageContext) -> list[list[str]]:
    fixed = {"data.path": ctx.inputs["data"], "trainer.output_dir": ctx.out_dir,
             "model.path": ctx.config.get("base_model", ctx.run_dir / "base-model")}
    return [["sft", "train", stage_recipe(ctx), *stage_overrides(ctx, fixed)]]


def reject_commands(ctx: StageContext) -> list[list[str]]:
    fixed = {"reject.data": ctx.inputs["data"], "reject.model": ctx.inputs["sft"] / "hf", "reject.out": ctx.out_dir}
    return [["reject", "run", "--recipe", stage_recipe(ctx), *stage_overrides(ctx, fixed)]]


def augment_commands(ctx: StageContext) -> list[list[str]]:
    fixed = {"augment.data": ctx.inputs["reject"], "augment.out": ctx.out_dir}
    return [["augment", "run", "--recipe", stage_recipe(ctx), *stage_overrides(ctx, fixed)]]


def rl_commands(ctx: StageContext) -> list[list[str]]:
    verl_dir = ctx.inputs["augment"] / "verl"
    fixed = {"model.path": ctx.inputs["sft"] / "hf", "data.train": verl_dir / "train.parquet",
             "data.val": verl_dir / "dev.parquet", "data.build_demo_if_missing": "false", "output_dir": ctx.out_dir}
    return [["rl", "run", stage_recipe(ctx), *stage_overrides(ctx, fixed)]]


def export_commands(ctx: StageContext) -> list[list[str]]:
    data_manifest = ctx.run_dir / "data" / "manifest.json"
    fixed = {"export.checkpoint": ctx.inputs["rl"] / "checkpoints", "export.out": ctx.out_dir,
             "export.processor": ctx.run_dir / "sft" / "hf",
             "export.manifests": [str(data_manifest)] if data_manifest.is_file() else []}
    return [["export", "run", "--recipe", stage_recipe(ctx), *stage_overrides(ctx, fixed)]]


EVAL_RUNS = ("sft", "rl")


def eval_commands(ctx: StageContext) -> list[list[str]]:
    """The SFT model and the RL model on the same sets, then the side-by-side comparison. The sets: the
    pipeline's own dev split (default), or ``benchmarks: recipe`` = the eval recipe's benchmark list."""
    runs = {"sft": ctx.inputs["sft"] / "hf", "rl": ctx.inputs["export"]}
    prefix = str(ctx.config.get("run_name", "tiny"))
    cmds = []
    for name, model in runs.items():
        fixed: dict[str, Any] = {"eval.model": model, "eval.out": ctx.out_dir / name, "eval.run_name": f"{prefix}-{name}"}
        if ctx.config.get("benchmarks") != "recipe":
            fixed["eval.benchmarks"] = [{"path": str(ctx.inputs["data"]), "split": "dev", "name": "guard-mini-dev",
                                         **({"limit": ctx.config["limit"]} if ctx.config.get("limit") else {})}]
        cmds.append(["eval", "run", "--recipe", stage_recipe(ctx), *stage_overrides(ctx, fixed)])
    cmds.append(["eval", "compare", str(ctx.out_dir / "sft"), str(ctx.out_dir / "rl"),
                 "--out", str(ctx.out_dir / "compare.md")])
    return cmds


# stage -> the guardrl commands it runs (pure: tests compose every stage of a pipeline from these)
STAGE_COMMANDS = {"data": data_commands, "sft": sft_commands, "reject": reject_commands,
                  "augment": augment_commands, "rl": rl_commands, "export": export_commands, "eval": eval_commands}


@register_stage("data")
def data_stage(ctx: StageContext) -> dict[str, Any]:
    (cmd,) = data_commands(ctx)
    run_cli(ctx, cmd)
    m = read_manifest(ctx.out_dir)
    if not m.get("splits"):
        return {"rows": m.get("num_rows")}
    return {f"{name}_rows": split.get("num_rows") for name, split in (m.get("splits") or {}).items()}


@register_stage("sft", needs=("data",))
def sft_stage(ctx: StageContext) -> dict[str, Any]:
    (cmd,) = sft_commands(ctx)
    run_cli(ctx, cmd, env=ray_env())
    return sft_summary(ctx.out_dir)


def sft_summary(out_dir: Path) -> dict[str, Any]:
    """First and last loss and the steps of an SFT run, from its ``metrics.jsonl``."""
    m = first_last_jsonl(out_dir / "metrics.jsonl")
    return {"loss_first": m.get("first", {}).get("loss"), "loss_last": m.get("last", {}).get("loss"),
            "steps": m.get("last", {}).get("step")}


@register_stage("reject", needs=("data", "sft"))
def reject_stage(ctx: StageContext) -> dict[str, Any]:
    (cmd,) = reject_commands(ctx)
    run_cli(ctx, cmd, env=ray_env())
    totals = (read_manifest(ctx.out_dir).get("reject") or {}).get("totals") or {}
    return {k: totals[k] for k in ("seen", "kept", "format_failures", "truncated", "prompt_too_long") if k in totals}


@register_stage("augment", needs=("reject",))
def augment_stage(ctx: StageContext) -> dict[str, Any]:
    (cmd,) = augment_commands(ctx)
    run_cli(ctx, cmd, env=ray_env())
    return {"rows": read_manifest(ctx.out_dir).get("num_rows")}


@register_stage("rl", needs=("sft", "augment"))
def rl_stage(ctx: StageContext) -> dict[str, Any]:
    (cmd,) = rl_commands(ctx)
    # verl's trainer is a Ray driver of its own: on a laptop it starts its own local cluster (with the
    # CPU platform's logical GPUs); on a cluster RAY_ADDRESS, if set, is passed through unchanged.
    env = {} if os.environ.get("RAY_ADDRESS") else {"RAY_ADDRESS": ""}
    run_cli(ctx, cmd, env=env)
    m = first_last_jsonl(ctx.out_dir / "metrics.jsonl")  # verl's file logger: {"step": N, "data": {...}}
    last = m.get("last", {})
    data = last.get("data", {})
    summary = {"steps": last.get("step")}
    for key, name in (("critic/score/mean", "reward"), ("actor/guard/clip_bound", "clip_bound"),
                      ("response_length/mean", "response_len"), ("guard/adv_wrong_pos_frac", "adv_wrong_pos")):
        if key in data:
            summary[name] = data[key]
    return summary


@register_stage("export", needs=("rl",))
def export_stage(ctx: StageContext) -> dict[str, Any]:
    (cmd,) = export_commands(ctx)
    run_cli(ctx, cmd)
    return {"files": len(list(ctx.out_dir.glob("*")))}


@register_stage("eval", needs=("data", "sft", "export"))
def eval_stage(ctx: StageContext) -> dict[str, Any]:
    """Evaluate the SFT model and the RL model on the same sets, then the side-by-side comparison."""
    cmds = eval_commands(ctx)
    for name, cmd in zip(EVAL_RUNS, cmds, strict=False):
        run_cli(ctx, cmd, env=ray_env(), tag=name)
    run_cli(ctx, cmds[-1], tag="compare")
    results = {name: json.loads((ctx.out_dir / name / "results.json").read_text()) for name in EVAL_RUNS}
    return eval_summary({name: res.get("metrics", res) for name, res in results.items()})


def eval_summary(runs: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per run and task the F1 beside the all-harmful F1 on the same rows, and the per-class recall (x100):
    ``{"rl_request": "F1 88.0 vs all-harmful 81.3 (+6.7); harmful/unharmful recall 97.3/58.8", ...}``."""
    summary: dict[str, Any] = {}
    for name, m in runs.items():
        for task in ("request", "response"):
            p = f"guard/avg/{task}/"
            if p + "f1" not in m:
                continue
            summary[f"{name}_{task}"] = (
                f"F1 {100 * m[p + 'f1']:.1f} vs all-harmful {100 * m.get(p + 'all_harmful_f1', 0):.1f} "
                f"({100 * m.get(p + 'f1_lift', 0):+.1f}); harmful/unharmful recall "
                f"{100 * m.get(p + 'recall', 0):.1f}/{100 * m.get(p + 'unharmful_recall', 0):.1f}")
    return summary
