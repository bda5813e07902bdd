"""The guard prompt: instruction + input, rendered from template files.

The instruction and the input layout live in ``guardrl/tasks/guard/templates/*.j2``; data
rows hold only data. Two renderings of the same prompt:

* :func:`build_messages` -> Hugging Face chat messages (content lists with
  ``{"type": "image"}`` items) for a processor's ``apply_chat_template``;
* :func:`build_verl_prompt` -> verl's RL dataset layout (string content with
  one ``<image>`` placeholder per image, which verl's dataset fills from the
  row's ``images`` column).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATE_DIR = Path(__file__).parent / "templates"
IMAGE_PLACEHOLDER = "<image>"


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )


@cache
def instruction() -> str:
    """The system instruction: a classifier of human/AI interactions with two tasks."""
    return _env().get_template("guard_instruction.j2").render().strip()


def render_input(request: str, response: str | None) -> str:
    """The user turn's text: the request and the response (``None`` when absent)."""
    return _env().get_template("guard_input.j2").render(request=request, response=response).strip()


def build_messages(request: str, response: str | None = None, num_images: int = 0) -> list[dict[str, Any]]:
    """Chat messages for one interaction, images first in the user turn (as Qwen2.5-VL is trained).

    Args:
        request: the human request text (may be empty for image-only requests).
        response: the AI response, or ``None`` when there is none to judge.
        num_images: how many images the request carries; each becomes an
            ``{"type": "image"}`` item the processor expands into vision tokens.

    Returns:
        ``[system, user]`` messages in the content-list format.
    """
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(num_images)]
    content.append({"type": "text", "text": render_input(request, response)})
    return [
        {"role": "system", "content": [{"type": "text", "text": instruction()}]},
        {"role": "user", "content": content},
    ]


def build_verl_prompt(request: str, response: str | None = None, num_images: int = 0) -> list[dict[str, str]]:
    """The same prompt in verl's RL dataset layout (string content, ``<image>`` placeholders)."""
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    text = IMAGE_PLACEHOLDER * num_images + render_input(request, response)
    return [
        {"role": "system", "content": instruction()},
        {"role": "user", "content": text},
    ]


def build_sft_messages(
    request: str, response: str | None, num_images: int, target: str
) -> list[dict[str, Any]]:
    """Prompt messages plus the assistant's target turn (reasoning + result) for SFT."""
    return [*build_messages(request, response, num_images), {"role": "assistant", "content": [{"type": "text", "text": target}]}]
