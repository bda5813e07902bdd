"""``guardrl augment``: safety-aware concatenation -> the RL set (guardrl shards + verl Parquet)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Build the RL set: hard samples + joined samples.")


@app.command("run")
def run(
    overrides: list[str] = typer.Argument(None, help="Recipe overrides key.path=value (e.g. augment.share=0.3)."),
    recipe: Path = typer.Option(..., "--recipe", "-r", help="Augment recipe (recipes/<size>/augment.yaml)."),
) -> None:
    """Join random pairs (Ray tasks) until they are `share` of the set; write guardrl + verl formats."""
    from guardrl.recipe import RecipeError, load_recipe, to_container
    from guardrl.rlset import AugmentConfig, build_rl_set

    try:
        section = to_container(load_recipe(recipe, overrides or []))
        if not isinstance(section.get("augment"), dict):
            raise RecipeError(f"{recipe}: missing the `augment:` section")
        task = {k: section[k] for k in ("task", "task_modules") if k in section}  # the recipe's task (top level)
        cfg = AugmentConfig.from_dict({**task, **section["augment"]})
    except (RecipeError, ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    s = build_rl_set(cfg)
    typer.echo(
        f"RL set: {s['base']} hard + {s['augmented']} joined ({100 * s['share']:.1f}%), "
        f"train {s['train']} / dev {s['dev']} -> {s['out']} (verl files in {s['out']}/verl/)"
    )
