"""``guardrl moderate`` and ``guardrl serve``: use a trained guard from the command line or over HTTP."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer


def moderate(
    model: Path = typer.Argument(..., help="Exported guard folder."),
    text: str | None = typer.Option(None, "--text", "-t", help="The request text."),
    image: list[Path] = typer.Option([], "--image", "-i", help="Image file(s) of the request (repeatable)."),
    response: str | None = typer.Option(None, "--response", help="The AI response to judge, if any."),
    jsonl: Path | None = typer.Option(None, "--jsonl", help="Batch: JSONL with prompt/request, response, image."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write JSON lines here instead of stdout."),
    engine: str = typer.Option("auto", help="auto | hf | vllm."),
    max_new_tokens: int = typer.Option(512, help="Generation cap."),
    batch_size: int = typer.Option(16, help="Samples per batched generation (--jsonl)."),
    show_reasoning: bool = typer.Option(True, help="Include the reasoning in the output."),
) -> None:
    """Judge one interaction (--text/--image/--response) or a JSONL file of them; prints one JSON line each.

    An input that cannot be judged (unreadable image, prompt too long for the model) gets a row
    ``{"id", "error"}``; the others are still judged, and the exit status is then 1.
    """
    from guardrl.core.images import ImageError
    from guardrl.generation.base import isolate_failures
    from guardrl.stages.serve.api import Guard

    if jsonl is None and text is None and not image:
        raise typer.BadParameter("give --text and/or --image, or --jsonl FILE")
    if jsonl is not None and (text is not None or image or response is not None):
        raise typer.BadParameter("--jsonl cannot be combined with --text/--image/--response")
    items: list[dict] = []
    if jsonl is not None:
        for lineno, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"{jsonl}:{lineno}: invalid JSON: {exc}") from exc
            imgs = row.get("image") or row.get("images") or []
            imgs = [imgs] if isinstance(imgs, str) else imgs
            items.append({"id": row.get("id", f"{jsonl.name}:{lineno}"),
                          "request": row.get("request", row.get("prompt")) or "",
                          "response": row.get("response"), "images": [jsonl.parent / p for p in imgs]})
    else:
        items.append({"id": "cli", "request": text or "", "response": response, "images": list(image)})
    guard = Guard.from_pretrained(model, engine=engine, max_new_tokens=max_new_tokens)
    sink = out.open("w", encoding="utf-8") if out else sys.stdout
    failed = 0
    try:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            # a bad item (image, too long) is judged alone and reported alone
            results, errors = isolate_failures(guard.moderate_batch, chunk, (ImageError, ValueError))
            for item, m, exc in zip(chunk, results, errors, strict=True):
                if exc is not None:
                    failed += 1
                    typer.secho(f"{item['id']}: {exc}", fg="red", err=True)
                    row = {"id": item["id"], "error": str(exc)}
                else:
                    row = {"id": item["id"], **m.to_dict(), "harmful": m.harmful}
                    row.pop("raw")
                    if not show_reasoning:
                        row.pop("reasoning")
                sink.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if out:
            sink.close()
        guard.close()
    if failed:
        typer.secho(f"{failed} of {len(items)} input(s) could not be judged (rows with 'error')", fg="red", err=True)
        raise typer.Exit(1)


def serve(
    model: Path = typer.Argument(..., help="Exported guard folder."),
    host: str = typer.Option("127.0.0.1", help="Bind address (127.0.0.1 keeps it local)."),
    port: int = typer.Option(8000, help="Port."),
    engine: str = typer.Option("auto", help="auto | hf | vllm."),
    max_new_tokens: int = typer.Option(512, help="Generation cap per request."),
    max_body_mb: float = typer.Option(16.0, help="Largest request body (MiB)."),
    max_image_pixels: int = typer.Option(4_000_000, help="Largest image (width x height)."),
    max_images: int = typer.Option(4, help="Most images per request."),
    max_text_chars: int = typer.Option(32_000, help="Longest request / response text."),
    timeout: float = typer.Option(60.0, help="Seconds before a request gets 504."),
    max_batch: int = typer.Option(16, help="Requests per batched generation."),
    batch_size: int = typer.Option(16, help="HF engine micro-batch (sequences per forward)."),
    allow_image_urls: bool = typer.Option(False, help="/v1/moderations: fetch remote http(s) image URLs."),
    model_name: str | None = typer.Option(None, help="/v1/moderations: the model name answered (default: folder)."),
) -> None:
    """Serve the guard over HTTP: POST /v1/moderate, POST /v1/moderations (OpenAI's API), GET /health."""
    from guardrl.stages.serve.api import Guard
    from guardrl.stages.serve.openai_moderation import ModerationOptions
    from guardrl.stages.serve.server import ServeLimits
    from guardrl.stages.serve.server import serve as run_server

    limits = ServeLimits(max_body_bytes=int(max_body_mb * (1 << 20)), max_images=max_images,
                         max_image_pixels=max_image_pixels, max_text_chars=max_text_chars, timeout_s=timeout,
                         max_batch=max_batch)
    guard = Guard.from_pretrained(model, engine=engine, max_new_tokens=max_new_tokens, batch_size=batch_size)
    try:
        run_server(guard, host=host, port=port, limits=limits,
                   moderations=ModerationOptions(model_name=model_name, allow_image_urls=allow_image_urls))
    finally:
        guard.close()
