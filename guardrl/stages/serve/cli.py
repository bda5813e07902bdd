"""``guardrl gateway`` and ``guardrl serve-chat``: put the guard in front of an OpenAI-compatible VLM server."""

from __future__ import annotations

from pathlib import Path

import typer


def gateway(
    guard_model: Path = typer.Argument(..., help="Exported guard folder (judges both sides)."),
    upstream: str = typer.Option(..., help="The VLM server's OpenAI base URL, e.g. http://127.0.0.1:8001/v1."),
    policy: Path | None = typer.Option(None, help="Policy YAML (guardrl/stages/serve/gateway_policy.yaml "
                                                  "lists every key; default: those defaults)."),
    rewriter: str | None = typer.Option(None, help="A rewriter model's OpenAI base URL (vllm serve / "
                                                   "guardrl serve-chat of it): used by harmful_request: rewrite."),
    rewriter_model: str = typer.Option("rewriter", help="The rewriter's served model name."),
    rewriter_output: str = typer.Option("tagged", help="tagged: <rewrite>...</rewrite>; plain: the whole answer."),
    on_guard_error: str | None = typer.Option(None, help="closed | open (overrides the policy file)."),
    harmful_request: str | None = typer.Option(None, help="block | rewrite (overrides the policy file)."),
    host: str = typer.Option("127.0.0.1", help="Bind address (127.0.0.1 keeps it local)."),
    port: int = typer.Option(8080, help="Port."),
    engine: str = typer.Option("auto", help="The guard's engine: auto | hf | vllm."),
    max_new_tokens: int = typer.Option(512, help="The guard's generation cap per verdict."),
    batch_size: int = typer.Option(16, help="HF engine micro-batch (sequences per forward)."),
) -> None:
    """OpenAI-compatible POST /v1/chat/completions that judges the request and the answer with the guard."""
    from guardrl.core.model_folder import resolve_model
    from guardrl.stages.serve.api import Guard
    from guardrl.stages.serve.gateway import run_gateway
    from guardrl.stages.serve.policy import PolicyError, load_policy
    from guardrl.stages.serve.rewriter import ChatRewriter

    if not upstream.startswith(("http://", "https://")):
        raise typer.BadParameter(f"--upstream must be an http(s):// base URL, got {upstream!r}")
    pol = load_policy(policy, on_guard_error=on_guard_error, harmful_request=harmful_request)
    if pol.needs_rewriter and rewriter is None:
        raise PolicyError(f"{policy or 'the policy'}: harmful_request: rewrite / rewrite_all need --rewriter URL")
    rw = ChatRewriter(rewriter, rewriter_model, rewriter_output) if rewriter else None
    resolve_model(guard_model, what="guard model")  # before loading anything: missing folder / files named
    guard = Guard.from_pretrained(guard_model, engine=engine, max_new_tokens=max_new_tokens, batch_size=batch_size)
    try:
        run_gateway(guard, upstream, pol, rw, host=host, port=port)
    finally:
        guard.close()


def serve_chat(
    model: Path = typer.Argument(..., help="A Hugging Face VLM folder (any, not only a guard)."),
    host: str = typer.Option("127.0.0.1", help="Bind address (127.0.0.1 keeps it local)."),
    port: int = typer.Option(8001, help="Port."),
    served_model_name: str | None = typer.Option(None, help="The model name clients use (default: the folder's)."),
    engine: str = typer.Option("hf", help="hf | vllm | auto (on GPUs prefer `vllm serve` itself)."),
    max_tokens: int = typer.Option(256, help="Largest max_tokens a request may ask for (and the default)."),
    max_batch: int = typer.Option(16, help="Requests per batched generation."),
    batch_size: int = typer.Option(16, help="HF engine micro-batch (sequences per forward)."),
    timeout: float = typer.Option(120.0, help="Seconds before a request gets 504."),
    api_key_env: str | None = typer.Option(None, help="Require 'Authorization: Bearer $VAR' (the variable's name)."),
) -> None:
    """OpenAI-compatible POST /v1/chat/completions, GET /v1/models for a VLM folder: an upstream for the gateway."""
    import os

    from guardrl.core.model_folder import resolve_model
    from guardrl.generation import make_engine
    from guardrl.stages.serve.chat_server import ChatLimits, run_chat_server
    from guardrl.stages.serve.server import ServeLimits

    path = resolve_model(model, what="model")
    api_key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not api_key:
        raise typer.BadParameter(f"--api-key-env {api_key_env}: the variable is not set")
    limits = ChatLimits(max_tokens=max_tokens, max_batch=max_batch, request=ServeLimits(timeout_s=timeout))
    eng = make_engine(path, engine=engine, batch_size=batch_size)
    try:
        run_chat_server(eng, served_model_name or Path(path).name, limits, host=host, port=port, api_key=api_key)
    finally:
        eng.close()
