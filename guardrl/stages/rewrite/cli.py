"""``guardrl rewrite``: the VLMGuard-R1 prompt rewriter's commands (``eval``, ``prompt``: :mod:`.commands`)."""

from __future__ import annotations

import typer

from guardrl.stages.rewrite.commands import register

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The prompt rewriter (VLMGuard-R1): evaluate it against target VLMs, rewrite prompts.")
register(app)
