"""``guardrl rewrite``: the prompt rewriter (VLMGuard-R1): ``synth run|config`` (training data from a teacher),
``eval`` and ``prompt`` (:mod:`.commands`)."""

from __future__ import annotations

import typer

from guardrl.stages.rewrite.commands import register

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The reasoning prompt rewriter (VLMGuard-R1): synthesise its data, evaluate it, rewrite prompts.")
register(app)
synth_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Synthesise the rewriter's SFT data with a teacher (3 stages, Ray actors, resumable).")
app.add_typer(synth_app, name="synth")

_SYNTH_HELP = "RECIPE (recipes/<size>/rewrite_synth.yaml) then overrides key.path=value (e.g. rewrite_synth.limit=8)."


def _synth_config(args: list[str] | None):
    from guardrl.core.recipe import RecipeError, split_args, stage_section
    from guardrl.stages.rewrite.synth import SynthConfig

    try:
        path, _, overrides = split_args(args, None)
        return SynthConfig.from_dict(stage_section(path, overrides, "rewrite_synth"))
    except (RecipeError, ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc)) from exc


@synth_app.command("run")
def synth_run(args: list[str] = typer.Argument(None, metavar="RECIPE [KEY=VALUE]", help=_SYNTH_HELP)) -> None:
    """Hindsight analysis -> multimodal risk analysis -> prompt optimisation per sample; resumes a killed run."""
    from guardrl.stages.rewrite.synth import run_synth

    s = run_synth(_synth_config(args))
    typer.echo(f"synthesised {s['written']} of {s['seen']} samples ({s['skipped']} skipped, refused answers "
               f"{s['refused_answers'] or 'none'}) -> {s['out']}")


@synth_app.command("config")
def synth_config(args: list[str] = typer.Argument(None, metavar="RECIPE [KEY=VALUE]", help=_SYNTH_HELP)) -> None:
    """Print the resolved rewrite_synth config (recipe + overrides, validated); nothing runs."""
    from guardrl.core.recipe import config_yaml

    typer.echo(config_yaml(_synth_config(args)))
