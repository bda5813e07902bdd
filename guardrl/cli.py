"""The ``guardrl`` command line. Each stage's command lives beside its code; this file only wires them."""

from __future__ import annotations

import logging
from pathlib import Path

import typer


class _App(typer.Typer):
    """The top-level app: a user error (bad data, recipe, files, disk full) exits 2 with one message,
    no traceback (:mod:`guardrl.core.errors`); a bug keeps its traceback."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            from guardrl.core.errors import exit_on_user_error

            exit_on_user_error(exc)
            raise


app = _App(add_completion=False, no_args_is_help=True, help="Train and run reasoning guard models for VLMs.")


def _logging(verbose: bool = False) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(show_path=False, rich_tracebacks=False)],
    )


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    _logging(verbose)


@app.command("tiny-model")
def tiny_model(
    out_dir: Path = typer.Argument(..., help="Folder to write the tiny model, tokenizer and processor into."),
    seed: int = typer.Option(0, help="Seed of the random initialisation."),
    corpus: Path | None = typer.Option(None, help="JSONL corpus to train the tokenizer on (default: bundled guard-mini)."),
) -> None:
    """Build a tiny random-initialised Qwen2.5-VL (offline) for tests and the CPU demo."""
    from guardrl.models.tiny import build_tiny_model

    path = build_tiny_model(out_dir, seed=seed, corpus=corpus)
    typer.echo(f"tiny model written to {path}")


def _register_subcommands() -> None:
    """Attach stage command groups that exist in this install (each module exposes ``app``)."""
    import importlib

    for name, module in (
        ("data", "guardrl.stages.data.cli"),
        ("sft", "guardrl.stages.sft.cli"),
        ("reject", "guardrl.stages.reject.cli"),
        ("augment", "guardrl.stages.augment.cli"),
        ("rl", "guardrl.stages.rl.cli"),
        ("export", "guardrl.stages.export.cli"),
        ("eval", "guardrl.stages.eval.cli"),
        ("pipeline", "guardrl.stages.pipeline.cli"),
        ("rewrite", "guardrl.stages.rewrite.cli"),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:  # stage not built in this checkout
            if exc.name and module.startswith(exc.name):
                continue
            raise
        app.add_typer(mod.app, name=name)


_register_subcommands()


def _register_commands() -> None:
    """Single commands that live beside their code: ``guardrl moderate``, ``guardrl serve``, ``guardrl gateway``,
    ``guardrl serve-chat``."""
    from guardrl.stages.serve import cli as serve_cli
    from guardrl.stages.serve import moderate_cli

    app.command("moderate")(moderate_cli.moderate)
    app.command("serve")(moderate_cli.serve)
    app.command("gateway")(serve_cli.gateway)
    app.command("serve-chat")(serve_cli.serve_chat)


_register_commands()

if __name__ == "__main__":  # pragma: no cover
    app()
