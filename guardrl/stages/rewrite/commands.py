"""``guardrl rewrite eval run|config`` and ``guardrl rewrite prompt`` (attached to the ``guardrl rewrite`` group by
:func:`register`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

_EVAL_HELP = "RECIPE (recipes/<size>/rewrite_eval.yaml) then overrides key.path=value (e.g. rewrite_eval.max_samples=8)."


def _eval_config(args: list[str] | None):
    from guardrl.core.recipe import RecipeError, split_args, stage_section
    from guardrl.stages.rewrite.evaluate import config_from_section
    from guardrl.tasks import check_task, task_modules

    try:
        recipe, _, overrides = split_args(args)
        cfg = config_from_section(stage_section(recipe, overrides, "rewrite_eval"), where=f"{recipe}: rewrite_eval")
        check_task(cfg.task, task_modules(cfg.task_modules), where=f"{recipe}: rewrite_eval")
    except (RecipeError, ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    return cfg


def eval_run(args: list[str] = typer.Argument(None, metavar="RECIPE [KEY=VALUE]", help=_EVAL_HELP)) -> None:
    """Original vs rewritten prompt -> each target VLM -> the guard (and the benchmarks' judges): safety and
    helpfulness with and without the rewriter; writes results.md/json, predictions.jsonl, plots/ (resumable)."""
    from guardrl.stages.rewrite.evaluate import run_rewrite_eval

    cfg = _eval_config(args)
    results = run_rewrite_eval(cfg)
    typer.echo((Path(cfg.out) / "results.md").read_text())
    typer.echo(f"results: {cfg.out}/results.json ({results['timing']['seconds']:.1f}s)")


def eval_config(args: list[str] = typer.Argument(None, metavar="RECIPE [KEY=VALUE]", help=_EVAL_HELP)) -> None:
    """Print the resolved rewrite_eval config (recipe + overrides, validated); nothing runs."""
    from guardrl.core.recipe import config_yaml

    typer.echo(config_yaml({"rewrite_eval": _eval_config(args)}))


def prompt_command(
    model: Path = typer.Argument(..., help="Rewriter model folder (an SFT run's hf/ or an export)."),
    text: str | None = typer.Argument(None, help="The user's request text."),
    image: list[Path] = typer.Option([], "--image", "-i", help="Image file(s) of the request (repeatable)."),
    jsonl: Path | None = typer.Option(None, "--jsonl", help="Batch: JSONL with text (or prompt/request), image(s)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write JSON lines here instead of stdout."),
    engine: str = typer.Option("auto", help="auto | hf | vllm."),
    max_new_tokens: int = typer.Option(512, help="Generation cap."),
    batch_size: int = typer.Option(8, help="Requests per batched generation (--jsonl)."),
    task: str = typer.Option("rewrite", help="The task the rewriter was trained with."),
    task_module: list[str] = typer.Option([], "--task-module", help="Module / .py file registering that task."),
) -> None:
    """Rewrite one request (TEXT, --image) or a JSONL file of them; prints one JSON line each
    (original, rewrite, prompt = what to send, format_ok, analysis). A row that cannot be rewritten (unreadable
    image, too long) gets ``{"id", "error"}`` and the exit status is 1."""
    from guardrl.core.images import ImageError
    from guardrl.generation.base import isolate_failures
    from guardrl.stages.rewrite.api import Rewriter

    if jsonl is None and text is None and not image:
        raise typer.BadParameter("give TEXT and/or --image, or --jsonl FILE")
    if jsonl is not None and (text is not None or image):
        raise typer.BadParameter("--jsonl cannot be combined with TEXT/--image")
    items: list[dict] = []
    if jsonl is not None:
        for lineno, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"{jsonl}:{lineno}: invalid JSON: {exc}") from exc
            if not isinstance(row, dict):
                raise typer.BadParameter(f"{jsonl}:{lineno}: expected a JSON object")
            imgs = row.get("image") or row.get("images") or []
            imgs = [imgs] if isinstance(imgs, str) else imgs
            items.append({"id": row.get("id", f"{jsonl.name}:{lineno}"),
                          "text": row.get("text", row.get("prompt", row.get("request"))) or "",
                          "images": [jsonl.parent / p for p in imgs]})
    else:
        items.append({"id": "cli", "text": text or "", "images": list(image)})
    from guardrl.tasks import task_modules

    rewriter = Rewriter.from_pretrained(model, engine=engine, max_new_tokens=max_new_tokens, task=task,
                                        task_modules=task_modules(task_module))
    sink = out.open("w", encoding="utf-8") if out else sys.stdout
    failed = 0
    try:
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            results, errors = isolate_failures(rewriter.rewrite_batch, chunk, (ImageError, ValueError))
            for item, r, exc in zip(chunk, results, errors, strict=True):
                if exc is not None:
                    failed += 1
                    typer.secho(f"{item['id']}: {exc}", fg="red", err=True)
                    row = {"id": item["id"], "error": str(exc)}
                else:
                    row = {"id": item["id"], **r.to_dict()}
                sink.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if out:
            sink.close()
        rewriter.close()
    if failed:
        typer.secho(f"{failed} of {len(items)} input(s) could not be rewritten (rows with 'error')", fg="red", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Attach ``eval run|config`` and ``prompt`` to the ``guardrl rewrite`` group."""
    eval_app = typer.Typer(add_completion=False, no_args_is_help=True,
                           help="Original vs rewritten prompt -> target VLMs -> judges (safety, helpfulness).")
    eval_app.command("run")(eval_run)
    eval_app.command("config")(eval_config)
    app.add_typer(eval_app, name="eval")
    app.command("prompt")(prompt_command)
