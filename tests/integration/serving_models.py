"""Tiny models with known behaviour, for the serving tests (no tests here).

The tiny random model's verdicts are noise (mostly unparsable) and its answers gibberish. The gateway's
tests need a real chain whose every step they can predict, so this SFTs the tiny model
(:func:`test_rl_support.warm_start`, plain transformers) twice:

* :func:`build_keyword_guard`: a guard with one rule: a text is harmful iff it contains one of
  :data:`HARMFUL_WORDS`; the request and the response are judged on their own words. It checks the rule was
  learnt (16 rows drawn with another seed) before returning, so a test never runs on a guard that did not
  learn it;
* :func:`build_scripted_vlm`: a chat model that answers :data:`CHAT_SCRIPT` (one harmless request whose
  answer is harmful, among others) and, behind the rewrite instruction, rewrites as :data:`REWRITE_SCRIPT`
  says: the upstream and the rewriter of the gateway's tests.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from test_rl_support import HARMFUL_WORDS, SAFE_WORDS, TEMPLATES, warm_start

REASONING = "I check the words."
#: user message -> the scripted VLM's answer
CHAT_SCRIPT = {
    "tell me about a bread": "the bread is ready",             # harmless both ways
    "tell me about a garden": "here is how to use a poison",    # a harmless request, a harmful answer
    "how do I make a bread": "a bread needs care",              # the rewritten request's answer
}
#: user message (behind the gateway's rewrite instruction) -> the scripted rewriter's answer
REWRITE_SCRIPT = {"how do I make a bomb": "<rewrite>how do I make a bread</rewrite>"}
RESPONSES = ("here is how to use a {}", "a {} needs care", "the {} is ready", "I like the {}")


def is_harmful(text: str) -> bool:
    return any(w in text for w in HARMFUL_WORDS)


def _rows(n: int, seed: int) -> list[dict[str, Any]]:
    from guardrl.prompts import build_verl_prompt

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        request = rng.choice(TEMPLATES).format(rng.choice(HARMFUL_WORDS if i % 2 else SAFE_WORDS))
        response = None
        if i % 4 >= 2:  # half the rows carry a response, harmful or not independently of the request
            response = rng.choice(RESPONSES).format(rng.choice(HARMFUL_WORDS if rng.random() < 0.5 else SAFE_WORDS))
        rows.append({"prompt": build_verl_prompt(request, response), "request": request, "response": response})
    return rows


def _target(row: dict[str, Any]) -> str:
    from guardrl.parse import Verdict, format_verdict

    label = lambda t: "harmful" if is_harmful(t) else "unharmful"  # noqa: E731
    response = None if row["response"] is None else label(row["response"])
    return format_verdict(Verdict(request=label(row["request"]), response=response, reasoning=REASONING,
                                  format_ok=True))


def build_keyword_guard(tiny_model_dir: Path, out_dir: Path, steps: int = 240) -> Path:
    """SFT the tiny model on the keyword rule; raise if it does not follow the rule on fresh rows.

    Raises:
        AssertionError: a verdict on the check rows differs from the rule (the guard did not learn it).
    """
    from guardrl.guard import Guard

    warm_start(tiny_model_dir, out_dir, _rows(256, seed=0), steps=steps, seed=0, target=_target)
    check = _rows(16, seed=1)
    with Guard.from_pretrained(out_dir, engine="hf", max_new_tokens=40) as guard:
        got = guard.moderate_batch([{"request": r["request"], "response": r["response"]} for r in check])
    wrong = [(r["request"], r["response"], m.raw) for r, m in zip(check, got, strict=True)
             if m.raw.strip() != _target(r)]
    assert not wrong, f"the keyword guard did not learn its rule on {len(wrong)} of {len(check)} rows: {wrong[:3]}"
    return out_dir


def build_scripted_vlm(tiny_model_dir: Path, out_dir: Path, steps: int = 60) -> Path:
    """SFT the tiny model to answer :data:`CHAT_SCRIPT` and :data:`REWRITE_SCRIPT` (greedy decoding).
    The serving tests check each line through the served model before they rely on it."""
    from guardrl.stages.serve.rewriter import INSTRUCTION_FILE

    rows = [{"prompt": [{"role": "user", "content": q}], "answer": a} for q, a in CHAT_SCRIPT.items()]
    system = INSTRUCTION_FILE.read_text(encoding="utf-8").strip()
    rows += [{"prompt": [{"role": "system", "content": system}, {"role": "user", "content": q}], "answer": a}
             for q, a in REWRITE_SCRIPT.items()]
    return warm_start(tiny_model_dir, out_dir, rows, steps=steps, seed=0, target=lambda row: row["answer"])
