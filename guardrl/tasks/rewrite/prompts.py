"""The rewriter's prompt: instruction + the user's prompt, rendered from ``templates/*.j2`` (rows hold data)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATE_DIR = Path(__file__).parent / "templates"


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=False, autoescape=False)


def render(template: str, **values: Any) -> str:
    """Render ``templates/<template>`` (strict: a missing value raises)."""
    return _env().get_template(template).render(**values).strip()


@cache
def instruction() -> str:
    """The system instruction of the rewriter."""
    return render("rewrite_instruction.j2")


def build_messages(request: str, num_images: int = 0) -> list[dict[str, Any]]:
    """``[system, user]`` chat messages in the content-list format, images first in the user turn.

    Raises:
        ValueError: ``num_images`` < 0.
    """
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(num_images)]
    content.append({"type": "text", "text": render("rewrite_input.j2", request=request)})
    return [{"role": "system", "content": [{"type": "text", "text": instruction()}]},
            {"role": "user", "content": content}]
