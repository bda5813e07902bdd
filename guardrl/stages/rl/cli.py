"""``guardrl rl ...``: online GRPO through verl (attached by guardrl/cli.py)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Online GRPO through verl's PPO trainer.")


@app.command("run")
def run_cmd(
    recipe: Path = typer.Argument(..., help="An RL recipe (recipes/*/rl*.yaml)."),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides: clip.schedule=constant verl.trainer.save_freq=5"),
) -> None:
    """Compose verl's config from RECIPE, validate it with verl, and train on Ray."""
    from guardrl.integrations.verl.entry import run

    cfg = run(recipe, overrides or ())
    typer.echo(f"checkpoints: {cfg.trainer.default_local_dir}")


@app.command("config")
def config_cmd(
    recipe: Path = typer.Argument(..., help="An RL recipe."),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides of the recipe."),
    validate: bool = typer.Option(True, help="Run verl's own config validation."),
) -> None:
    """Print the verl config a recipe composes into (nothing is trained)."""
    from omegaconf import OmegaConf

    from guardrl.core.recipe import load_recipe
    from guardrl.integrations.verl import entry

    rec = load_recipe(recipe, entry.verl_plus_overrides(overrides or ()))
    entry.set_process_env(rec)
    for mod in entry.external_modules(rec):
        __import__(mod)
    cfg = entry.compose_config(rec)
    if validate:
        entry.validate(cfg)
    typer.echo(OmegaConf.to_yaml(cfg))
