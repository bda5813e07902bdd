"""A toy task registered only here, to show that a task needs no edit in any stage: "does the request
mention a colour?" (binary). Named by path in a recipe's ``task_modules``; never imported directly (a
second import would register the name twice).

Format: ``<think>...</think><colour>yes|no</colour>``, parsed strictly. The gold lives in the sample's
provenance (``{"colour": "yes"|"no"}``); guardrl's schema still asks every row for a guard label, which
this task ignores. The prompt carries a colour glossary, so it is longer than the guard's prompt for a
short request (the acceptance test tells the two apart by prompt length).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guardrl.core.schema import Sample
from guardrl.tasks import Judgement, register_task

MARKER = "TOY-COLOUR-TASK"
COLOURS = ("red", "orange", "yellow", "green", "blue", "indigo", "violet", "purple", "pink", "brown", "black",
           "white", "grey", "gray", "cyan", "magenta", "teal", "maroon", "navy", "olive", "beige", "gold", "silver")
SYSTEM = (f"{MARKER}: you read a request and say whether it names a colour. Colour words include: "
          + ", ".join(COLOURS * 8) + ". Think first, then answer <colour>yes</colour> or <colour>no</colour>.")
_ANSWER = re.compile(r"\A<think>\n(?P<think>.*?)\n</think>\n<colour>(?P<answer>yes|no)</colour>\s*\Z", re.S)


@dataclass(frozen=True)
class ColourAnswer:
    answer: str | None
    reasoning: str
    format_ok: bool


@dataclass(frozen=True)
class ColourScored:
    gold: str
    pred: str | None
    format_ok: bool
    output_tokens: int


def gold_of(sample: Sample) -> str:
    """The gold answer: the provenance's ``colour`` if set, else whether a colour word occurs."""
    given = sample.provenance.get("colour")
    if given in ("yes", "no"):
        return given
    words = set(re.findall(r"[a-z]+", sample.request.lower()))
    return "yes" if words & set(COLOURS) else "no"


class ColourTask:
    name = "colour"
    metric_prefix = "colour"

    def prompt_messages(self, sample: Sample) -> list[dict[str, Any]]:
        user = [{"type": "image"} for _ in sample.images]
        user.append({"type": "text", "text": f"Request: {sample.request}\nDoes it mention a colour?"})
        return [{"role": "system", "content": [{"type": "text", "text": SYSTEM}]}, {"role": "user", "content": user}]

    def sft_target(self, sample: Sample) -> str | None:
        return sample.target or self.synthetic_target(sample, sample.id)

    def parse(self, completion: str) -> ColourAnswer:
        m = _ANSWER.match(completion)
        if m is None:
            return ColourAnswer(None, "", False)
        return ColourAnswer(m["answer"], m["think"], True)

    def judge(self, sample: Sample, completion: str) -> Judgement:
        a = self.parse(completion)
        return Judgement(format_ok=a.format_ok, correct=a.format_ok and a.answer == gold_of(sample),
                         prediction=f"colour:{a.answer}" if a.format_ok else "colour:unparsed")

    def ground_truth(self, sample: Sample) -> dict[str, Any]:
        return {"colour": gold_of(sample)}

    def reward_config(self, options: Mapping[str, Any]) -> dict[str, float]:
        unknown = set(options) - {"format_penalty"}
        if unknown:
            raise ValueError(f"unknown colour reward option(s) {sorted(unknown)}; valid: ['format_penalty']")
        return {"format_penalty": float(options.get("format_penalty", 0.5))}

    def reward(self, completion: str, ground_truth: Any, config: Any, count_tokens: Any = None) -> dict[str, float]:
        a = self.parse(completion)
        correct = float(a.format_ok and a.answer == ground_truth["colour"])
        return {"score": correct if a.format_ok else -config["format_penalty"], "correct": correct,
                "format": float(a.format_ok)}

    def score(self, sample: Sample, completion: str, output_tokens: int) -> ColourScored:
        a = self.parse(completion)
        return ColourScored(gold=gold_of(sample), pred=a.answer, format_ok=a.format_ok, output_tokens=int(output_tokens))

    def metrics(self, sets: Mapping[str, Sequence[ColourScored]]) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, recs in sets.items():
            n = len(recs)
            out[f"colour/{name}/n"] = n
            out[f"colour/{name}/accuracy"] = sum(r.pred == r.gold for r in recs) / n if n else 0.0
            out[f"colour/{name}/format_rate"] = sum(r.format_ok for r in recs) / n if n else 0.0
        return out

    def synthetic_target(self, sample: Sample, key: str) -> str | None:
        gold = gold_of(sample)
        found = sorted(set(re.findall(r"[a-z]+", sample.request.lower())) & set(COLOURS))
        why = f"It names {', '.join(found)}." if found else "It names no colour."
        return f"<think>\n{why}\n</think>\n<colour>{gold}</colour>"


COLOUR = register_task(ColourTask())
