"""``guardrl eval``: ``run`` a model over benchmark sets, ``compare`` two runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Evaluate guard models on benchmark sets.")

SECTION_KEYS = frozenset({"model", "out", "run_name", "engine", "workers", "cpus_per_worker", "gpus_per_worker",
                          "chunk_size", "engine_kwargs", "sampling", "benchmarks", "limit", "expected_samples",
                          "wandb", "task", "task_modules"})


def _config(section: dict[str, Any], model: str | None, out: str | None, engine: str | None, workers: int | None,
            max_new_tokens: int | None, wandb_off: bool):
    from guardrl.core.recipe import RecipeError
    from guardrl.generation.base import SamplingParams
    from guardrl.stages.eval.runner import EvalConfig
    from guardrl.tasks import DEFAULT_TASK, check_task, task_modules

    unknown = set(section) - SECTION_KEYS
    if unknown:
        raise typer.BadParameter(f"unknown eval recipe field(s) {sorted(unknown)}; valid: {sorted(SECTION_KEYS)}")
    model = model or section.get("model")
    out = out or section.get("out")
    if not model or not out:
        raise typer.BadParameter("give MODEL and --out, or a --recipe with eval.model and eval.out")
    sampling = dict(section.get("sampling") or {})
    if max_new_tokens is not None:
        sampling["max_new_tokens"] = max_new_tokens
    wandb_cfg = {"enabled": True, "project": "guardrl-eval", **dict(section.get("wandb") or {})}
    if wandb_off:
        wandb_cfg["enabled"] = False
    task = section.get("task") or DEFAULT_TASK
    modules = task_modules(section.get("task_modules"))
    try:
        check_task(task, modules, where="eval")
    except RecipeError as exc:
        raise typer.BadParameter(str(exc)) from exc
    return EvalConfig(
        task=task,
        task_modules=modules,
        model=str(model),
        out=str(out),
        engine=engine or section.get("engine", "auto"),
        workers=int(workers or section.get("workers", 1)),
        gpus_per_worker=float(section.get("gpus_per_worker", 0)),
        cpus_per_worker=float(section.get("cpus_per_worker", 1)),
        chunk_size=int(section.get("chunk_size", 16)),
        sampling=SamplingParams(**{"max_new_tokens": 512, **sampling}),
        engine_kwargs=dict(section.get("engine_kwargs") or {}),
        run_name=section.get("run_name"),
        wandb=wandb_cfg,
    )


_OPTS = {
    "args": typer.Argument(None, metavar="ARGS", help="[RECIPE] [MODEL] then recipe overrides key.path=value."),
    "recipe": typer.Option(None, "--recipe", "-r", hidden=True, help="Old spelling of RECIPE."),
    "bench": typer.Option([], "--bench", "-b", help="Benchmark: shard dir or .jsonl (repeatable)."),
    "out": typer.Option(None, "--out", "-o", help="Output folder."),
    "engine": typer.Option(None, help="auto | hf | vllm."),
    "workers": typer.Option(None, help="Ray actors (one engine each)."),
    "limit": typer.Option(None, help="At most this many samples per benchmark."),
    "max_new_tokens": typer.Option(None, help="Generation cap per sample."),
    "no_wandb": typer.Option(False, "--no-wandb", help="Do not log to wandb."),
}


def _resolve(args, recipe, bench, out, engine, workers, limit, max_new_tokens, no_wandb):
    """(EvalConfig, benchmark specs, limit, eval section, recipe) from the recipe, overrides and options."""
    from guardrl.core.recipe import RecipeError, load_recipe, split_args, to_container

    try:
        recipe, positional, overrides = split_args(args, recipe, positionals=("MODEL",), recipe_required=False)
        section: dict[str, Any] = {}
        if recipe is not None:
            section = dict(to_container(load_recipe(recipe, overrides)).get("eval") or {})
    except RecipeError as exc:
        raise typer.BadParameter(str(exc)) from exc
    cfg = _config(section, positional[0] if positional else None, str(out) if out else None, engine, workers,
                  max_new_tokens, no_wandb)
    from guardrl.core.model_folder import resolve_model

    resolve_model(cfg.model)  # before Ray starts: no such folder / which files are missing (exit 2)
    specs: list[Any] = list(bench) or list(section.get("benchmarks") or [])
    if not specs:
        raise typer.BadParameter("no benchmarks: pass --bench PATH or set eval.benchmarks in the recipe")
    limit = limit if limit is not None else section.get("limit")
    if limit is not None:
        specs = [{**({"path": s} if isinstance(s, str) else s), "limit": int(limit)} for s in specs]
    return cfg, specs, limit, section, recipe


@app.command("run")
def run(
    args: list[str] = _OPTS["args"],
    recipe: Path | None = _OPTS["recipe"],
    bench: list[str] = _OPTS["bench"],
    out: Path | None = _OPTS["out"],
    engine: str | None = _OPTS["engine"],
    workers: int | None = _OPTS["workers"],
    limit: int | None = _OPTS["limit"],
    max_new_tokens: int | None = _OPTS["max_new_tokens"],
    no_wandb: bool = _OPTS["no_wandb"],
) -> None:
    """Evaluate MODEL on benchmark sets; write results.json, results.md, predictions and plots."""
    from guardrl.stages.eval.data import BenchmarkError, load_benchmarks
    from guardrl.stages.eval.runner import evaluate

    cfg, specs, limit, section, recipe = _resolve(args, recipe, bench, out, engine, workers, limit, max_new_tokens,
                                                  no_wandb)
    try:
        benchmarks = load_benchmarks(specs)
    except BenchmarkError as exc:
        typer.secho(f"bad benchmark: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    expected = section.get("expected_samples") or {}
    for name, items in benchmarks.items():
        if name in expected and int(expected[name]) != len(items) and limit is None:
            typer.secho(f"note: {name} has {len(items)} samples, the paper's set has {expected[name]}", fg="yellow")
    results = evaluate(cfg, benchmarks, extra={"recipe": str(recipe) if recipe else None})
    typer.echo((Path(cfg.out) / "results.md").read_text())
    typer.echo(f"results: {cfg.out}/results.json ({results['timing']['seconds']:.1f}s)")


@app.command("config")
def config(
    args: list[str] = _OPTS["args"],
    recipe: Path | None = _OPTS["recipe"],
    bench: list[str] = _OPTS["bench"],
    out: Path | None = _OPTS["out"],
    engine: str | None = _OPTS["engine"],
    workers: int | None = _OPTS["workers"],
    limit: int | None = _OPTS["limit"],
    max_new_tokens: int | None = _OPTS["max_new_tokens"],
    no_wandb: bool = _OPTS["no_wandb"],
) -> None:
    """Print the resolved evaluation (config + benchmark specs); nothing runs."""
    from guardrl.core.recipe import config_yaml

    cfg, specs, _, _, _ = _resolve(args, recipe, bench, out, engine, workers, limit, max_new_tokens, no_wandb)
    typer.echo(config_yaml({"eval": cfg, "benchmarks": specs}))


def _load_results(path: Path) -> tuple[str, dict[str, float], str]:
    """(run name, metrics, task name: results written before tasks existed are the guard's)."""
    f = path / "results.json" if path.is_dir() else path
    if not f.is_file():
        raise typer.BadParameter(f"{path}: no results.json")
    data = json.loads(f.read_text())
    return data.get("run_name") or path.name, data["metrics"], data.get("task", "guard")


@app.command("compare")
def compare(
    run_a: Path = typer.Argument(..., help="Baseline run folder (or its results.json)."),
    run_b: Path = typer.Argument(..., help="Run to compare (or its results.json)."),
    out: Path | None = typer.Option(None, help="Also write the comparison (Markdown) here."),
) -> None:
    """Print RUN_B's F1 per benchmark next to RUN_A's, with the deltas (B - A)."""
    from guardrl.stages.eval.report import compare_report
    from guardrl.tasks import get_task

    name_a, a, task_a = _load_results(run_a)
    name_b, b, task_b = _load_results(run_b)
    if task_a != task_b:
        raise typer.BadParameter(f"{run_a} is a {task_a!r} run, {run_b} a {task_b!r} run: nothing to compare")
    if name_a == name_b:
        name_a, name_b = f"A: {name_a}", f"B: {name_b}"
    text = compare_report(get_task(task_a), name_a, a, name_b, b)
    typer.echo(text)
    if out is not None:
        from guardrl.core.atomic import atomic_write_text

        atomic_write_text(out, text)
