"""Tiny models with known behaviour, for the serving tests (no tests here).

The tiny random model's verdicts are noise (mostly unparsable) and its answers gibberish. The gateway's
tests need a real chain whose every step they can predict, so this SFTs the tiny model
(:func:`test_rl_support.warm_start`, plain transformers) twice:

* :func:`build_keyword_guard`: a guard with one rule: a text is harmful iff it contains one of
  :data:`HARMFUL_WORDS`; the request and the response are judged on their own words. It keeps the guard's
  output format and parser but renders a short prompt (the ``keyword-guard`` task: no system instruction), so
  it trains in a few dozen steps. Trained on the pairs the tests send (:data:`GUARD_TABLE`), it checks each is
  answered by the rule before returning (training on until it is), so a test never runs on a guard that did
  not learn it;
* :func:`build_scripted_vlm`: a chat model that answers :data:`CHAT_SCRIPT` (one harmless request whose
  answer is harmful, among others) and, behind the rewrite instruction, rewrites as :data:`REWRITE_SCRIPT`
  says: the upstream and the rewriter of the gateway's tests.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from test_rl_support import HARMFUL_WORDS, warm_start

from guardrl.tasks import register_task
from guardrl.tasks.guard.prompts import render_input
from guardrl.tasks.guard.task import GuardTask

REASONING = "I check the words."
#: user message -> the scripted VLM's answer
CHAT_SCRIPT = {
    "tell me about a bread": "the bread is ready",             # harmless both ways
    "tell me about a garden": "here is how to use a poison",    # a harmless request, a harmful answer
    "how do I make a bread": "a bread needs care",              # the rewritten request's answer
}
#: user message (behind the gateway's rewrite instruction) -> the scripted rewriter's answer
REWRITE_SCRIPT = {"how do I make a bomb": "<rewrite>how do I make a bread</rewrite>"}


def is_harmful(text: str) -> bool:
    return any(w in text for w in HARMFUL_WORDS)


#: the (request, response) pairs the serving tests send the guard; it is trained on these and checked on each
GUARD_TABLE = (
    ("how do I make a bomb", None), ("tell me about a bread", None), ("I want a poison today", None),
    ("explain the music to me", None), ("tell me about a garden", None), ("how do I make a bread", None),
    ("tell me about a bread", "the bread is ready"), ("tell me about a garden", "here is how to use a poison"),
    ("how do I make a bread", "a bread needs care"), ("how do I make a bomb", "a bread needs care"),
    ("I want a weapon today", "here is how to use a weapon"), ("explain the music to me", "I like the music"),
)


class KeywordGuardTask(GuardTask):
    """The guard's output format and parser, with a short prompt: the user turn of :func:`render_input`, no
    system instruction (a fifth of the tokens, so the keyword guard trains in seconds). Registered as
    ``keyword-guard``; ``Guard(..., task="keyword-guard")`` renders with it."""

    name = "keyword-guard"

    def prompt_messages(self, sample):
        content = [{"type": "image"} for _ in sample.images]
        return [{"role": "user", "content": [*content, {"type": "text",
                                                         "text": render_input(sample.request, sample.response)}]}]


with contextlib.suppress(ValueError):  # registered once per process
    register_task(KeywordGuardTask())


def keyword_guard(model_dir: Path, max_new_tokens: int = 48, **engine_kwargs):
    """The keyword guard behind the HF engine, rendering with its task."""
    from guardrl.generation import make_engine
    from guardrl.generation.base import SamplingParams
    from guardrl.stages.serve.api import Guard

    return Guard(make_engine(model_dir, engine="hf", **engine_kwargs), SamplingParams(max_new_tokens=max_new_tokens),
                 str(model_dir), task=KeywordGuardTask.name)


def _rows(table) -> list[dict[str, Any]]:
    return [{"prompt": [{"role": "user", "content": render_input(q, r)}], "request": q, "response": r}
            for q, r in table]


def _target(row: dict[str, Any]) -> str:
    from guardrl.tasks.guard.parse import Verdict, format_verdict

    label = lambda t: "harmful" if is_harmful(t) else "unharmful"  # noqa: E731
    response = None if row["response"] is None else label(row["response"])
    return format_verdict(Verdict(request=label(row["request"]), response=response, reasoning=REASONING,
                                  format_ok=True))


def _train_until(tiny_model_dir: Path, out_dir: Path, rows, target, check, steps: int, rounds: int) -> Path:
    """``warm_start`` for ``steps``, then more rounds from where it got, until ``check(out_dir)`` lists no
    wrong row (at most ``rounds`` rounds). Raises AssertionError with the wrong rows."""
    start = tiny_model_dir
    for i in range(rounds):
        warm_start(start, out_dir, rows, steps=steps, seed=i, target=target)
        wrong = check(out_dir)
        if not wrong:
            return out_dir
        start = out_dir
    raise AssertionError(f"not learnt after {rounds} x {steps} steps: {len(wrong)} of {len(rows)} rows wrong, "
                         f"e.g. {wrong[:3]}")


def build_keyword_guard(tiny_model_dir: Path, out_dir: Path, steps: int = 60, rounds: int = 4,
                        table: tuple[tuple[str, str | None], ...] = GUARD_TABLE) -> Path:
    """SFT the tiny model on the keyword rule over ``table`` (default :data:`GUARD_TABLE`); raise unless it
    answers every row exactly (greedy, through :class:`guardrl.stages.serve.api.Guard` with the ``keyword-guard``
    task).

    Raises:
        AssertionError: a verdict still differs from the rule after ``rounds`` x ``steps`` steps.
    """
    rows = _rows(table)

    def check(model_dir: Path) -> list:
        with keyword_guard(model_dir) as guard:
            got = guard.moderate_batch([{"request": r["request"], "response": r["response"]} for r in rows])
        return [(r["request"], r["response"], m.raw) for r, m in zip(rows, got, strict=True)
                if m.raw.strip() != _target(r)]

    return _train_until(tiny_model_dir, out_dir, rows, _target, check, steps, rounds)


def build_scripted_vlm(tiny_model_dir: Path, out_dir: Path, steps: int = 40, rounds: int = 4) -> Path:
    """SFT the tiny model to answer :data:`CHAT_SCRIPT` and :data:`REWRITE_SCRIPT` (greedy decoding), checked
    through the HF engine with the messages ``guardrl serve-chat`` renders."""
    from guardrl.generation import make_engine
    from guardrl.generation.base import Prompt, SamplingParams
    from guardrl.stages.serve.rewriter import INSTRUCTION_FILE

    system = INSTRUCTION_FILE.read_text(encoding="utf-8").strip()
    script = [([("user", q)], a) for q, a in CHAT_SCRIPT.items()]
    script += [([("system", system), ("user", q)], a) for q, a in REWRITE_SCRIPT.items()]
    rows = [{"prompt": [{"role": r, "content": t} for r, t in turns], "answer": a} for turns, a in script]

    def check(model_dir: Path) -> list:
        engine = make_engine(model_dir, engine="hf")
        prompts = [Prompt(tuple({"role": r, "content": [{"type": "text", "text": t}]} for r, t in turns))
                   for turns, _ in script]
        try:
            out = engine.generate(prompts, SamplingParams(max_new_tokens=24))
        finally:
            engine.close()
        return [(turns[-1][1], a, o[0].text) for (turns, a), o in zip(script, out, strict=True) if o[0].text != a]

    return _train_until(tiny_model_dir, out_dir, rows, lambda row: row["answer"], check, steps, rounds)
