"""``guardrl reject``: rejection sampling of the SFT data with the SFT model (Ray actors)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Rejection sampling: keep the hard prompts.")


_ARGS_HELP = "RECIPE (recipes/<size>/reject.yaml) then overrides key.path=value (e.g. reject.sampling.k=8)."
_RECIPE_ALIAS = typer.Option(None, "--recipe", "-r", hidden=True, help="Old spelling of RECIPE.")


def _config(args: list[str] | None, recipe: Path | None):
    from guardrl.core.recipe import RecipeError, split_args, stage_section
    from guardrl.stages.reject.runner import RejectConfig

    try:
        path, _, overrides = split_args(args, recipe)
        return RejectConfig.from_dict(stage_section(path, overrides, "reject"))
    except (RecipeError, ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command("run")
def run(args: list[str] = typer.Argument(None, metavar="RECIPE [KEY=VALUE]", help=_ARGS_HELP), recipe: Path | None = _RECIPE_ALIAS) -> None:
    """Sample k completions per prompt, keep the prompts the keep rule selects; resumes a killed run."""
    from guardrl.stages.reject.runner import run_reject

    summary = run_reject(_config(args, recipe))
    typer.echo(f"kept {summary['kept']} of {summary['seen']} prompts -> {summary['out']}")


@app.command("config")
def config(args: list[str] = typer.Argument(None, metavar="RECIPE [KEY=VALUE]", help=_ARGS_HELP), recipe: Path | None = _RECIPE_ALIAS) -> None:
    """Print the resolved reject config (recipe + overrides, validated); nothing runs."""
    from guardrl.core.recipe import config_yaml

    typer.echo(config_yaml(_config(args, recipe)))


@app.command("stats")
def stats(out: Path = typer.Argument(..., help="A reject output folder.")) -> None:
    """Print the seen / kept / format-failure table from a finished run's manifest."""
    from guardrl.core.shards import read_manifest
    from guardrl.stages.reject.runner import STAGE, print_stats

    report = read_manifest(out).get(STAGE)
    if not report:
        raise typer.BadParameter(f"{out}: not a reject output (no `{STAGE}` report in its manifest)")
    print_stats(report["stats"])
