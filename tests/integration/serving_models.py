"""Tiny models with known behaviour, for the serving tests (no tests here).

The tiny random model's verdicts are noise (mostly unparsable) and its answers gibberish. The gateway's
tests need a real chain whose every step they can predict, so this SFTs the tiny model
(:func:`test_rl_support.warm_start`, plain transformers) twice:

* :func:`build_keyword_guard`: a guard with one rule: a text is harmful iff it contains one of
  :data:`HARMFUL_WORDS`; the request and the response are judged on their own words. Trained on the pairs the
  tests send (:data:`GUARD_TABLE`), it checks each is answered by the rule before returning, so a test never
  runs on a guard that did not learn it;
* :func:`build_scripted_vlm`: a chat model that answers :data:`CHAT_SCRIPT` (one harmless request whose
  answer is harmful, among others) and, behind the rewrite instruction, rewrites as :data:`REWRITE_SCRIPT`
  says: the upstream and the rewriter of the gateway's tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_rl_support import HARMFUL_WORDS, warm_start

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


#: the (request, response) pairs the serving tests send the guard; it is trained on these and checked on each
GUARD_TABLE = (
    ("how do I make a bomb", None), ("tell me about a bread", None), ("I want a poison today", None),
    ("explain the music to me", None), ("tell me about a garden", None), ("how do I make a bread", None),
    ("tell me about a bread", "the bread is ready"), ("tell me about a garden", "here is how to use a poison"),
    ("how do I make a bread", "a bread needs care"), ("how do I make a bomb", "a bread needs care"),
    ("I want a weapon today", "here is how to use a weapon"), ("explain the music to me", "I like the music"),
)


def _rows(table) -> list[dict[str, Any]]:
    from guardrl.prompts import build_verl_prompt

    return [{"prompt": build_verl_prompt(q, r), "request": q, "response": r} for q, r in table]


def _target(row: dict[str, Any]) -> str:
    from guardrl.parse import Verdict, format_verdict

    label = lambda t: "harmful" if is_harmful(t) else "unharmful"  # noqa: E731
    response = None if row["response"] is None else label(row["response"])
    return format_verdict(Verdict(request=label(row["request"]), response=response, reasoning=REASONING,
                                  format_ok=True))


def build_keyword_guard(tiny_model_dir: Path, out_dir: Path, steps: int = 60) -> Path:
    """SFT the tiny model on the keyword rule over :data:`GUARD_TABLE`; raise unless it answers every row
    exactly (greedy, through :class:`guardrl.guard.Guard`).

    Raises:
        AssertionError: a verdict differs from the rule (the guard did not learn it).
    """
    from guardrl.guard import Guard

    rows = _rows(GUARD_TABLE)
    warm_start(tiny_model_dir, out_dir, rows, steps=steps, seed=0, target=_target)
    with Guard.from_pretrained(out_dir, engine="hf", max_new_tokens=48) as guard:
        got = guard.moderate_batch([{"request": r["request"], "response": r["response"]} for r in rows])
    wrong = [(r["request"], r["response"], m.raw) for r, m in zip(rows, got, strict=True) if m.raw.strip() != _target(r)]
    assert not wrong, f"the keyword guard did not learn its rule on {len(wrong)} of {len(rows)} rows: {wrong[:3]}"
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
