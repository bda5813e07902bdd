"""A small world where a prompt rewriter can learn something by RL (no tests here): the learning test of the
rewriter's judged reward (``test_rewrite_rl_learning.py``) and its ``guardrl rewrite eval``.

* **requests**: the keyword requests of :mod:`test_rl_support` (a harmful word makes a request harmful);
  :data:`TRAIN_TEMPLATES` train, :data:`HELD_OUT_TEMPLATE` is held out;
* **the rewriter** (task ``bare-rewrite``): the rewrite task's output format and reward, prompted with the
  user's text alone (no system instruction: a tiny model on two cores learns it in seconds). It can keep the
  request (:func:`copy_rewrite`) or add a safety cue (:func:`cued_rewrite`);
* **the target VLM**: :func:`target_answer` behind an OpenAI-compatible endpoint (``judge_server.chat_endpoint``):
  it refuses a prompt holding :data:`SAFETY_CUE` and otherwise complies, naming the request's keyword
  ("here is how to use a bomb");
* **the guard**: guardrl's keyword guard (:func:`serving_models.build_keyword_guard`), trained on
  :func:`guard_table` -- every (request, answer) pair this target can give.

So the best rewriter cues harmful requests (the target refuses: safe) and copies benign ones (the target answers:
helpful); cueing a benign request costs helpfulness. The warm start does either at random, whatever the request.
"""

from __future__ import annotations

import contextlib
from typing import Any

from test_rl_support import HARMFUL_WORDS, SAFE_WORDS, TEMPLATES

from guardrl.core.schema import HARMFUL, UNHARMFUL, Sample
from guardrl.tasks import register_task
from guardrl.tasks.rewrite.parse import RewriteOutput, format_rewrite
from guardrl.tasks.rewrite.task import RewriteTask

SAFETY_CUE = "answer safely"
REFUSAL = "I'm sorry, but I can't help with that."
NO_KEYWORD = "here is what I know"
TRAIN_TEMPLATES = TEMPLATES[:3]
HELD_OUT_TEMPLATE = TEMPLATES[3]
THINK = ("I read the request.", "I weigh its risk.", "I keep its words.")


class BareRewriteTask(RewriteTask):
    """The rewrite task prompted with the user's text only (one user turn, images first). ``bare-rewrite``."""

    name = "bare-rewrite"

    def prompt_messages(self, sample: Sample) -> list[dict[str, Any]]:
        content = [{"type": "image"} for _ in sample.images]
        return [{"role": "user", "content": [*content, {"type": "text", "text": sample.request}]}]


with contextlib.suppress(ValueError):  # registered once per process
    register_task(BareRewriteTask())


def copy_rewrite(request: str) -> str:
    return format_rewrite(RewriteOutput(*THINK, request))


def cued_rewrite(request: str) -> str:
    return format_rewrite(RewriteOutput(*THINK, f"{request} ({SAFETY_CUE})"))


def keyword_of(text: str) -> str | None:
    """The first keyword of ``text`` (harmful or safe), else None."""
    found = [(text.find(w), w) for w in (*HARMFUL_WORDS, *SAFE_WORDS) if w in text]
    return min(found)[1] if found else None


def target_answer(prompt: str) -> str:
    """The scripted target VLM: refuses a cued prompt, else complies with the prompt's keyword."""
    if SAFETY_CUE in prompt.lower():
        return REFUSAL
    word = keyword_of(prompt)
    return f"here is how to use a {word}" if word else NO_KEYWORD


def requests(templates: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(request, label)`` for every template x keyword, harmful and benign alternating."""
    out = []
    for t in templates:
        for h, s in zip(HARMFUL_WORDS, SAFE_WORDS, strict=True):
            out += [(t.format(h), HARMFUL), (t.format(s), UNHARMFUL)]
    return out


def samples(templates: tuple[str, ...], source: str) -> list[Sample]:
    return [Sample(id=f"{source}-{i}", source=source, modality="text", request=q, label_request=label)
            for i, (q, label) in enumerate(requests(templates))]


def guard_table() -> tuple[tuple[str, str | None], ...]:
    """Every (request, answer) pair the guard sees in the learning test: each request with the target's answer
    to its copy and to its cued rewrite, and with the answer to a rewrite that lost the keyword."""
    rows = []
    for q, _ in requests((*TRAIN_TEMPLATES, HELD_OUT_TEMPLATE)):
        rows += [(q, target_answer(q)), (q, REFUSAL), (q, NO_KEYWORD)]
    return tuple(rows)
