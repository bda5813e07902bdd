"""``guardrl pipeline run RECIPE --from STAGE --to STAGE``: the whole recipe, stage by stage."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from guardrl.stages.pipeline.runner import STAGES

app = typer.Typer(no_args_is_help=True, help="Run a recipe's stages in order: the guard's data -> sft -> reject -> "
                  "augment -> rl -> export -> eval, or the rewriter's data -> sft -> rewrite_synth -> rewrite_sft -> "
                  "rewrite_eval.")


def _device(cfg: dict) -> str:
    """Where the pipeline trained: the RL stage's recipe ``device`` (``cpu`` -> "a CPU"); a pipeline without an
    RL stage (the rewriter's) trained here, so this machine's (a CPU unless CUDA is available)."""
    recipe = ((cfg.get("stages") or {}).get("rl") or {}).get("recipe")
    if recipe is None:
        import torch

        return "GPUs" if torch.cuda.is_available() else "a CPU"
    try:
        import yaml

        device = str((yaml.safe_load(Path(str(recipe)).read_text()) or {}).get("device", "cuda"))
    except (OSError, TypeError, ValueError, AttributeError):
        device = "cuda"
    return "a CPU" if device == "cpu" else "GPUs"


@app.command("run")
def run(
    recipe: Path = typer.Argument(..., help="Pipeline recipe (e.g. recipes/tiny/pipeline.yaml)."),
    from_stage: str | None = typer.Option(None, "--from", help=f"First stage (default: the recipe's first), one of "
                                                             f"{', '.join(STAGES)}."),
    to_stage: str | None = typer.Option(None, "--to", help="Last stage (default: the recipe's last)."),
    run_dir: Path | None = typer.Option(None, help="Output root (default: the recipe's run_dir)."),
    force: list[str] = typer.Option([], help="Re-run this stage even if unchanged (repeatable)."),
    no_ray: bool = typer.Option(False, help="Run stages in-process instead of as Ray tasks (debugging)."),
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="Stream every stage's full output (always written to <run_dir>/logs/)."),
    overrides: list[str] = typer.Argument(None, help="Recipe overrides key.path=value."),
) -> None:
    """Run (or resume) the pipeline; unchanged stages are skipped. One live line per stage, then the table."""
    from rich.console import Console
    from rich.table import Table

    from guardrl.core.recipe import RecipeError, load_recipe, to_container
    from guardrl.stages.pipeline.console import (
        StageConsole,
        demo_note,
        fmt_summary,
        quiet_driver_env,
        rewrite_demo_note,
    )
    from guardrl.stages.pipeline.runner import run_pipeline

    console = Console()
    overrides = list(overrides or [])
    if run_dir is not None:
        overrides.append(f"run_dir={run_dir}")  # before resolving: stage paths may interpolate ${run_dir}
    try:
        cfg = to_container(load_recipe(recipe, overrides))
    except RecipeError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    root = Path(cfg.get("run_dir", "outputs/pipeline"))
    view = StageConsole(console, root, verbose=verbose)
    quiet_driver_env()
    console.print(f"guardrl pipeline: {recipe} -> {root}; logs in {root / 'logs'}"
                  f"{'' if verbose else ' (--verbose streams them)'}", highlight=False)
    try:
        results = run_pipeline(cfg, root, from_stage, to_stage, force=force, use_ray=not no_ray, on_stage=view.done,
                               on_start=view.start, on_tick=view.tick,
                               ray_init={"log_to_driver": verbose,
                                         "logging_level": logging.INFO if verbose else logging.WARNING})
    except (ValueError, RuntimeError) as exc:
        view.failed(exc)
        raise typer.Exit(1) from exc
    except BaseException:
        view._stop()
        raise
    table = Table(title=f"guardrl pipeline - {root}")
    for col in ("stage", "status", "time (s)", "summary"):
        table.add_column(col)
    for res in results:
        table.add_row(res.name, res.status, f"{res.seconds:.1f}", fmt_summary(res.summary))
    console.print(table)
    last = results[-1].name if results else None
    note = None
    if last == "eval":
        note = demo_note(root, _device(cfg))
    elif last == "rewrite_eval":
        from guardrl.stages.pipeline.rewrite_stages import eval_results_dir

        table_md = eval_results_dir(root / "rewrite_eval") / "results.md"
        if table_md.is_file():
            console.print(table_md.read_text(), highlight=False, markup=False)
        note = rewrite_demo_note(root, _device(cfg))
    if note:
        console.print(note, highlight=False)


@app.command("config")
def config(
    recipe: Path = typer.Argument(..., help="Pipeline recipe (e.g. recipes/tiny/pipeline.yaml)."),
    overrides: list[str] = typer.Argument(None, help="Recipe overrides key.path=value."),
) -> None:
    """Print the resolved pipeline recipe (overrides applied, interpolations resolved); nothing runs."""
    from guardrl.core.recipe import RecipeError, config_yaml, load_recipe

    try:
        typer.echo(config_yaml(load_recipe(recipe, list(overrides or []))))
    except RecipeError as exc:
        raise typer.BadParameter(str(exc)) from exc
