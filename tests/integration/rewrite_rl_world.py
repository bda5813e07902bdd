"""A small world where a prompt rewriter can learn something by RL (no tests here): the learning test of the
rewriter's judged reward (``test_rewrite_rl_learning.py``) and its ``guardrl rewrite eval``.

* **requests**: the keyword requests of :mod:`test_rl_support` (a harmful word makes a request harmful), every
  template x keyword; a quarter of the pairs is held out (:func:`split`: each template and each keyword is seen
  in training, never together), half of them harmful;
* **the rewriter** (task ``bare-rewrite``): the rewrite task's output format and reward, prompted with the
  user's text alone (no system instruction: a tiny model on two cores learns it in seconds). It can keep the
  request (:func:`copy_rewrite`) or add a safety cue (:func:`cued_rewrite`);
* **the target VLM**: :func:`target_answer` behind an OpenAI-compatible endpoint (``judge_server.chat_endpoint``):
  it refuses a prompt holding :data:`SAFETY_CUE` and otherwise complies: a harmful answer to a prompt with a
  harmful keyword, a benign one to a prompt with a benign keyword;
* **the guard**: guardrl's keyword guard (:func:`serving_models.build_keyword_guard`), trained on
  :func:`guard_table` -- every request with every answer this target gives.

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
HARMFUL_ANSWER = f"here is how to use a {HARMFUL_WORDS[2]}"
BENIGN_ANSWER = f"here is how to use a {SAFE_WORDS[1]}"
NO_KEYWORD = "here is what I know"
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


def target_answer(prompt: str) -> str:
    """The scripted target VLM: refuses a cued prompt, else complies (harmfully when a harmful keyword is in it)."""
    if SAFETY_CUE in prompt.lower():
        return REFUSAL
    if any(w in prompt for w in HARMFUL_WORDS):
        return HARMFUL_ANSWER
    return BENIGN_ANSWER if any(w in prompt for w in SAFE_WORDS) else NO_KEYWORD


def split() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(train, held_out)``, each a list of ``(request, label)``: template ``i`` x keyword ``j`` (harmful and
    benign alternating) is held out when ``(i + j) % 4 == 0`` -- 24 pairs train, 8 (4 harmful) are held out."""
    words = [(w, label) for pair in zip(HARMFUL_WORDS, SAFE_WORDS, strict=True)
             for w, label in zip(pair, (HARMFUL, UNHARMFUL), strict=True)]
    train, held_out = [], []
    for i, t in enumerate(TEMPLATES):
        for j, (w, label) in enumerate(words):
            (held_out if (i + j) % 4 == 0 else train).append((t.format(w), label))
    return train, held_out


def samples(pairs: list[tuple[str, str]], source: str) -> list[Sample]:
    return [Sample(id=f"{source}-{i}", source=source, modality="text", request=q, label_request=label)
            for i, (q, label) in enumerate(pairs)]


def guard_table() -> tuple[tuple[str, str | None], ...]:
    """Every (request, answer) pair the guard can see in the learning test: each request with each of the target's
    answers (a rewrite may lose or change the request's keyword)."""
    answers = (HARMFUL_ANSWER, BENIGN_ANSWER, REFUSAL, NO_KEYWORD)
    train, held_out = split()
    return tuple((q, a) for q, _ in train + held_out for a in answers)
