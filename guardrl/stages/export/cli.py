"""``guardrl export``: checkpoint (SFT HF folder or verl FSDP) -> Hugging Face folder."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Export SFT / RL checkpoints as HF folders.")

SECTION_KEYS = frozenset({"checkpoint", "out", "base_model", "dtype", "allow_pickle", "processor",
                          "expected_parameters", "manifests", "recipes", "eval_results", "generation"})


_ARGS_HELP = ("[RECIPE] [CHECKPOINT [OUT]] then recipe overrides key.path=value (default: the recipe's "
              "export.checkpoint/out).")


def _resolve(args, recipe, allow_pickle, dtype, processor, manifest, eval_results):
    """(checkpoint, out, ExportOptions) from the recipe, its overrides and the options."""
    from guardrl.core.recipe import RecipeError, load_recipe, split_args, to_container
    from guardrl.stages.export.runner import ExportOptions

    section: dict = {}
    recipe_files: list[str] = []
    try:
        recipe, positional, override = split_args(args, recipe, positionals=("CHECKPOINT", "OUT"),
                                                  recipe_required=False)
        if recipe is not None:
            cfg = to_container(load_recipe(recipe, override))
            section = dict(cfg.get("export") or {})
            unknown = set(section) - SECTION_KEYS
            if unknown:
                raise RecipeError(f"{recipe}: unknown export field(s) {sorted(unknown)}; valid: {sorted(SECTION_KEYS)}")
            recipe_files = [str(recipe), *[str(r) for r in section.get("recipes", []) if Path(r).is_file()]]
    except RecipeError as exc:
        raise typer.BadParameter(str(exc)) from exc
    checkpoint, out = (positional + [None, None])[:2]
    ckpt = checkpoint or section.get("checkpoint")
    dest = out or section.get("out")
    if not ckpt or not dest:
        raise typer.BadParameter("give CHECKPOINT and OUT, or a RECIPE with export.checkpoint and export.out")
    if not Path(ckpt).expanduser().is_dir():
        raise typer.BadParameter(f"{ckpt}: no such checkpoint folder (not a directory)")
    opts = ExportOptions(
        dtype=dtype or section.get("dtype", "auto"),
        allow_pickle=allow_pickle or bool(section.get("allow_pickle", False)),
        processor=str(processor) if processor else section.get("processor"),
        base_model=section.get("base_model"),
        recipe=recipe_files,
        manifests=[str(m) for m in manifest] or [m for m in section.get("manifests", []) if Path(m).exists()],
        eval_results=str(eval_results) if eval_results else section.get("eval_results"),
        expected_parameters=section.get("expected_parameters"),
        generation=dict(section.get("generation") or {}),
    )
    return ckpt, dest, opts


_OPTS = {
    "args": typer.Argument(None, metavar="ARGS", help=_ARGS_HELP),
    "recipe": typer.Option(None, "--recipe", "-r", hidden=True, help="Old spelling of RECIPE."),
    "allow_pickle": typer.Option(False, "--allow-pickle", help="Accept .bin/.pt weights (read weights_only=True)."),
    "dtype": typer.Option(None, help="auto | float32 | bfloat16 | float16."),
    "processor": typer.Option(None, help="Take processor + chat template from this folder."),
    "manifest": typer.Option([], help="Data manifest.json (or its folder) to hash into the card."),
    "eval_results": typer.Option(None, help="results.json from `guardrl eval run`."),
}


@app.command("run")
def run(
    args: list[str] = _OPTS["args"],
    recipe: Path | None = _OPTS["recipe"],
    allow_pickle: bool = _OPTS["allow_pickle"],
    dtype: str | None = _OPTS["dtype"],
    processor: Path | None = _OPTS["processor"],
    manifest: list[Path] = _OPTS["manifest"],
    eval_results: Path | None = _OPTS["eval_results"],
) -> None:
    """Export CHECKPOINT into OUT: safetensors, config, processor, generation config, model card."""
    from guardrl.stages.export.runner import ExportError, export_checkpoint

    ckpt, dest, opts = _resolve(args, recipe, allow_pickle, dtype, processor, manifest, eval_results)
    try:
        meta = export_checkpoint(ckpt, dest, opts)
    except ExportError as exc:
        typer.secho(f"export failed: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"exported {meta['architecture']} ({meta['parameters']:,} parameters, {meta['dtype']}) to {dest}")


@app.command("config")
def config(
    args: list[str] = _OPTS["args"],
    recipe: Path | None = _OPTS["recipe"],
    allow_pickle: bool = _OPTS["allow_pickle"],
    dtype: str | None = _OPTS["dtype"],
    processor: Path | None = _OPTS["processor"],
    manifest: list[Path] = _OPTS["manifest"],
    eval_results: Path | None = _OPTS["eval_results"],
) -> None:
    """Print the resolved export (checkpoint, out, options); nothing is written."""
    from guardrl.core.recipe import config_yaml

    ckpt, dest, opts = _resolve(args, recipe, allow_pickle, dtype, processor, manifest, eval_results)
    typer.echo(config_yaml({"checkpoint": ckpt, "out": dest, "options": opts}))


@app.command("check")
def check(
    folder: Path = typer.Argument(..., help="An exported folder."),
    expected_parameters: int | None = typer.Option(None, help="Fail unless the model has exactly this many."),
) -> None:
    """Reload an exported folder with transformers' Auto classes and check its files."""
    from guardrl.core.model_folder import resolve_model
    from guardrl.stages.export.runner import ExportError, check_folder

    resolve_model(folder, what="exported model")  # no such folder / which files are missing (exit 2)
    try:
        info = check_folder(folder, expected_parameters)
    except ExportError as exc:
        typer.secho(f"check failed: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"ok: {info['architecture']}, {info['parameters']:,} parameters")


@app.command("card")
def card(
    folder: Path = typer.Argument(..., help="An exported folder."),
    eval_results: Path = typer.Option(..., help="results.json from `guardrl eval run` (or its run folder)."),
) -> None:
    """Add an evaluation summary to an exported folder's model card (README.md) and guardrl_export.json."""
    from guardrl.stages.export.model_card import update_card

    results = eval_results / "results.json" if eval_results.is_dir() else eval_results
    try:
        meta = update_card(folder, results)
    except (OSError, ValueError) as exc:  # CardError is a ValueError
        typer.secho(f"card update failed: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    m = meta["evaluation"]["metrics"]
    typer.echo(f"{folder}/README.md: request F1 {100 * m.get('guard/avg/request/f1', float('nan')):.2f}, "
               f"response F1 {100 * m.get('guard/avg/response/f1', float('nan')):.2f}")
