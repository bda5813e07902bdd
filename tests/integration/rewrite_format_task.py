"""A task with the rewrite format's target (the guard's prompts), for the synthesis tests: named by path in
``task_modules``, never imported directly (a second import would register the name twice)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from guardrl.tasks import get_task, register_task

HEADINGS = ("Hindsight analysis:", "Multimodal risk analysis:", "Prompt optimisation:")
_FORMAT = re.compile(r"\A<think>\nHindsight analysis: (?P<h>.+?)\nMultimodal risk analysis: (?P<r>.+?)\n"
                     r"Prompt optimisation: (?P<o>.+?)\n</think>\n<rewrite>\n(?P<w>.+?)\n</rewrite>\Z", re.S)


@dataclass(frozen=True)
class Parsed:
    format_ok: bool
    parts: dict | None
    error: str | None = None


class RewriteFormatTask(type(get_task("guard"))):  # the guard's prompts; the rewrite format's target
    name = "rewrite_format_test"

    def assemble_target(self, parts: Mapping[str, str]) -> str:
        return (f"<think>\nHindsight analysis: {parts['hindsight']}\nMultimodal risk analysis: {parts['risk']}\n"
                f"Prompt optimisation: {parts['optimise']}\n</think>\n<rewrite>\n{parts['rewrite']}\n</rewrite>")

    def parse(self, completion: str) -> Parsed:
        m = _FORMAT.match(completion)
        if m is None or any(h in m[g] for g in "hrow" for h in HEADINGS):
            return Parsed(False, None, "not the rewrite format")
        return Parsed(True, {"hindsight": m["h"], "risk": m["r"], "optimise": m["o"], "rewrite": m["w"]})


register_task(RewriteFormatTask())
