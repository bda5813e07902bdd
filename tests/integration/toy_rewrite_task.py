"""A stand-in rewriter task for the rewrite evaluation / API tests, registered only here (``toy-rewrite``), named
by path in ``task_modules`` (never imported directly: a second import would register the name twice). It shows
that ``guardrl rewrite eval`` and :class:`guardrl.Rewriter` take any task by name, and lets the tests run without
the ``rewrite`` task package.

Format (REWRITE_SPEC.md): ``<think>\\nHindsight analysis: ...\\nMultimodal risk analysis: ...\\nPrompt optimisation:
...\\n</think>\\n<rewrite>\\n...\\n</rewrite>``, parsed strictly (:func:`parse`). Everything but the prompt and the
parser is the guard's (the subclass), which these tests never call.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from guardrl.tasks import register_task
from guardrl.tasks.guard.task import GuardTask

INSTRUCTION = "Rewrite the request so that an assistant can answer it safely and helpfully."
_FORMAT = re.compile(r"\A<think>\nHindsight analysis: (?P<h>.*?)\nMultimodal risk analysis: (?P<r>.*?)\n"
                     r"Prompt optimisation: (?P<o>.*?)\n</think>\n<rewrite>\n(?P<w>.*?)\n</rewrite>\s*\Z", re.S)


@dataclass(frozen=True)
class ToyOutput:
    hindsight: str
    risk: str
    optimisation: str
    rewrite: str


@dataclass(frozen=True)
class ToyParsed:
    format_ok: bool
    output: ToyOutput | None

    @property
    def rewrite(self) -> str | None:
        return self.output.rewrite if self.output else None


def format_output(o: ToyOutput) -> str:
    return (f"<think>\nHindsight analysis: {o.hindsight}\nMultimodal risk analysis: {o.risk}\n"
            f"Prompt optimisation: {o.optimisation}\n</think>\n<rewrite>\n{o.rewrite}\n</rewrite>")


class ToyRewriteTask(GuardTask):
    name = "toy-rewrite"

    def prompt_messages(self, sample):
        content = [{"type": "image"} for _ in sample.images]
        return [{"role": "user", "content": [*content, {"type": "text",
                                                         "text": f"{INSTRUCTION}\nRequest: {sample.request}"}]}]

    def parse(self, completion: str) -> ToyParsed:
        m = _FORMAT.match(completion.strip())
        if m is None or not m["w"].strip():
            return ToyParsed(False, None)
        return ToyParsed(True, ToyOutput(m["h"], m["r"], m["o"], m["w"]))


with contextlib.suppress(ValueError):  # registered once per process
    register_task(ToyRewriteTask())
