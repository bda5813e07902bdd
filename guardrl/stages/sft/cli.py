"""``guardrl sft ...``: train from a recipe, evaluate the result."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Stage 1: reasoning SFT (R-SFT).")


@app.command("run")
def train_cmd(
    recipe: Path = typer.Argument(..., help="SFT recipe YAML, e.g. recipes/tiny/sft.yaml."),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides: optim.lr=1e-5 trainer.max_steps=10."),
) -> None:
    """Train (or resume) an R-SFT run; prints the Hugging Face output folder."""
    from guardrl.core.recipe import RecipeError
    from guardrl.stages.sft.api import train

    try:
        out = train(recipe, list(overrides or []))
    except RecipeError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"SFT model: {out}")


app.command("train", hidden=True)(train_cmd)  # the old spelling


@app.command("config")
def check_cmd(
    recipe: Path = typer.Argument(..., help="SFT recipe YAML."),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides."),
) -> None:
    """Validate a recipe and print the resolved configuration (no training)."""
    from guardrl.stages.sft.config import load_config

    cfg = load_config(recipe, list(overrides or []))
    typer.echo(json.dumps(cfg.to_dict(), indent=2))
    typer.echo(f"accumulation steps per rank: {cfg.grad_accum_steps}")


app.command("check", hidden=True)(check_cmd)  # the old spelling


@app.command("evaluate")
def evaluate_cmd(
    model: Path = typer.Argument(..., help="Model folder (e.g. outputs/sft/tiny/hf)."),
    data: Path = typer.Option(Path("outputs/data/guard-mini"), help="guardrl shard dir or split dir."),
    split: str = typer.Option("dev", help="Split of a split dir ('' for a plain shard dir)."),
    max_samples: int | None = typer.Option(None, help="Score at most N samples, spread over the split."),
    max_new_tokens: int = typer.Option(256, help="Generation cap per completion."),
    batch_size: int = typer.Option(16, help="Sequences per generate call."),
    engine: str = typer.Option("auto", help="auto | hf | vllm."),
    num_threads: int | None = typer.Option(None, help="torch CPU threads (HF engine)."),
    out: Path | None = typer.Option(None, help="Write the report as JSON here."),
    task: str = typer.Option("guard", help="Task that renders prompts and judges completions."),
    task_module: list[str] = typer.Option([], help="Module (dotted or .py path) registering the task (repeatable)."),
) -> None:
    """Greedy generation on a split: parse rate, accuracy vs the most-frequent-gold baseline, task metrics."""
    from guardrl.stages.sft.evaluate import evaluate_model, write_report

    report = evaluate_model(model, data, split=split or None, max_samples=max_samples, max_new_tokens=max_new_tokens,
                            batch_size=batch_size, engine=engine, num_threads=num_threads, task=task,
                            task_modules=task_module)
    typer.echo(f"samples {report.n}  parse rate {report.parse_rate:.3f}  accuracy {report.accuracy:.3f}  "
               f"majority baseline {report.majority_accuracy:.3f}  ({report.seconds:.0f}s)")
    for mod, m in report.per_modality.items():
        typer.echo(f"  {mod}: n {m['n']} parse {m['parse_rate']:.3f} accuracy {m['accuracy']:.3f} "
                   f"majority {m['majority_accuracy']:.3f}")
    if out:
        write_report(report, out)
