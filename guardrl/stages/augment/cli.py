"""``guardrl augment``: safety-aware concatenation -> the RL set (guardrl shards + verl Parquet)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Build the RL set: hard samples + joined samples.")


_ARGS_HELP = "RECIPE (recipes/<size>/augment.yaml) then overrides key.path=value (e.g. augment.share=0.3)."
_RECIPE_ALIAS = typer.Option(None, "--recipe", "-r", hidden=True, help="Old spelling of RECIPE.")


def _config(args: list[str] | None, recipe: Path | None):
    from guardrl.core.recipe import RecipeError, load_recipe, split_args, to_container
    from guardrl.stages.augment.runner import AugmentConfig

    try:
        path, _, overrides = split_args(args, recipe)
        cfg = to_container(load_recipe(path, overrides))
        if not isinstance(cfg.get("augment"), dict):
            raise RecipeError(f"{path}: missing the `augment:` section")
        task = {k: cfg[k] for k in ("task", "task_modules") if k in cfg}  # the recipe's task (top level)
        return AugmentConfig.from_dict({**task, **cfg["augment"]})
    except (RecipeError, ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command("run")
def run(args: list[str] = typer.Argument(None, metavar="RECIPE [KEY=VALUE]", help=_ARGS_HELP), recipe: Path | None = _RECIPE_ALIAS) -> None:
    """Join random pairs (Ray tasks) until they are `share` of the set; write guardrl + verl formats."""
    from guardrl.stages.augment.runner import build_rl_set

    s = build_rl_set(_config(args, recipe))
    typer.echo(
        f"RL set: {s['base']} hard + {s['augmented']} joined ({100 * s['share']:.1f}%), "
        f"train {s['train']} / dev {s['dev']} -> {s['out']} (verl files in {s['out']}/verl/)"
    )


@app.command("config")
def config(args: list[str] = typer.Argument(None, metavar="RECIPE [KEY=VALUE]", help=_ARGS_HELP), recipe: Path | None = _RECIPE_ALIAS) -> None:
    """Print the resolved augment config (recipe + overrides, validated); nothing runs."""
    from guardrl.core.recipe import config_yaml

    typer.echo(config_yaml(_config(args, recipe)))
