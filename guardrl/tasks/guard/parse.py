"""Strict parser and formatter of the guard output format.

The model must produce exactly::

    <think>
    reasoning ...
    </think>
    <result>
    Request: harmful | unharmful
    Response: harmful | unharmful | None
    </result>

Rules (anything else is a format failure, never an exception):

* only whitespace before ``<think>``, between ``</think>`` and ``<result>`` and
  after ``</result>`` (a trailing ``<|im_end|>`` / ``<|endoftext|>`` is ignored);
* each of the four tags occurs exactly once, in that order; so a completion with
  two result blocks fails, and text a *user* wrote cannot inject a verdict: only
  the model's completion is parsed;
* inside ``<result>``: one ``Request:`` line and at most one ``Response:`` line
  (request first); labels case-insensitive; the response may be ``None`` or
  absent; no other non-empty lines.

``parse(format_verdict(v)) == v`` for every valid verdict (see :func:`is_valid_verdict`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from guardrl.core.schema import LABELS

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
RESULT_OPEN, RESULT_CLOSE = "<result>", "</result>"
TAGS = (THINK_OPEN, THINK_CLOSE, RESULT_OPEN, RESULT_CLOSE)
_TRAILING_SPECIAL = ("<|im_end|>", "<|endoftext|>")
_LINE = re.compile(r"^\s*(request|response)\s*:\s*(\S+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    """A parsed (or to-be-formatted) guard output.

    ``request``/``response`` are ``"harmful"``/``"unharmful"``; ``response`` is
    ``None`` when the model says there is no response. On a format failure both
    labels are ``None`` and ``format_ok`` is False.
    """

    request: str | None
    response: str | None
    reasoning: str
    format_ok: bool

    @property
    def reasoning_chars(self) -> int:
        return len(self.reasoning)

    def reasoning_tokens(self, count: Callable[[str], int] | None = None) -> int:
        """Reasoning length in tokens (``count`` = a tokenizer's counter; default whitespace words)."""
        return count(self.reasoning) if count else len(self.reasoning.split())


FORMAT_FAILURE = Verdict(request=None, response=None, reasoning="", format_ok=False)


def _fail(reasoning: str = "") -> Verdict:
    return Verdict(request=None, response=None, reasoning=reasoning, format_ok=False)


def strip_completion(text: str) -> str:
    """Surrounding whitespace and trailing ``<|im_end|>`` / ``<|endoftext|>`` tokens removed."""
    body = text.strip()
    stripped = True
    while stripped:
        stripped = False
        for tok in _TRAILING_SPECIAL:
            if body.endswith(tok):
                body = body[: -len(tok)].rstrip()
                stripped = True
    return body


def parse(text: object) -> Verdict:
    """Parse one model completion. Never raises; a malformed completion gives ``format_ok=False``.

    The reasoning of a failed parse is kept when a single think block is present
    (useful for length statistics), else empty.
    """
    if not isinstance(text, str):
        return FORMAT_FAILURE
    body = strip_completion(text)
    # Fast path (the reward scores every rollout with this): locate the four tags in order and
    # check that no '<' occurs between them. Every tag starts with '<' and has no other '<', so
    # with no '<' outside the four located tags each tag occurs exactly once, in order: the
    # result is then the same as _parse_body's. Anything else goes to _parse_body.
    if not (body.startswith(THINK_OPEN) and body.endswith(RESULT_CLOSE)):
        return _fail()
    i_tc = body.find(THINK_CLOSE, len(THINK_OPEN))
    i_ro = body.find(RESULT_OPEN, i_tc + len(THINK_CLOSE)) if i_tc >= 0 else -1
    i_rc = len(body) - len(RESULT_CLOSE)
    if (
        i_ro < 0
        or i_ro + len(RESULT_OPEN) > i_rc
        or body.find("<", len(THINK_OPEN), i_tc) >= 0
        or body.find("<", i_tc + len(THINK_CLOSE), i_ro) >= 0
        or body.find("<", i_ro + len(RESULT_OPEN), i_rc) >= 0
    ):
        return _parse_body(body)
    return _verdict(body, i_tc, i_ro, i_rc)


def _parse_body(body: str) -> Verdict:
    """The reference check on a stripped completion: each tag exactly once, in order."""
    if any(body.count(tag) != 1 for tag in TAGS):
        return _fail()
    i_to, i_tc = body.index(THINK_OPEN), body.index(THINK_CLOSE)
    i_ro, i_rc = body.index(RESULT_OPEN), body.index(RESULT_CLOSE)
    if not (i_to == 0 and i_to < i_tc < i_ro < i_rc and i_rc + len(RESULT_CLOSE) == len(body)):
        return _fail()
    return _verdict(body, i_tc, i_ro, i_rc)


def _verdict(body: str, i_tc: int, i_ro: int, i_rc: int) -> Verdict:
    """The verdict of a completion whose four tags sit at 0, ``i_tc``, ``i_ro``, ``i_rc`` (each once)."""
    reasoning = body[len(THINK_OPEN) : i_tc].strip()
    if body[i_tc + len(THINK_CLOSE) : i_ro].strip():
        return _fail(reasoning)
    labels = _result_labels(body[i_ro + len(RESULT_OPEN) : i_rc])
    if labels is None:
        return _fail(reasoning)
    return Verdict(request=labels[0], response=labels[1], reasoning=reasoning, format_ok=True)


@lru_cache(maxsize=4096)
def _result_labels(block: str) -> tuple[str, str | None] | None:
    """``(request, response)`` from the inside of a result block, or None when malformed."""
    labels: dict[str, str] = {}
    order: list[str] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        m = _LINE.match(line)
        if not m:
            return None
        key, value = m.group(1).lower(), m.group(2).lower()
        if key in labels:
            return None
        labels[key] = value
        order.append(key)
    if "request" not in labels or order[0] != "request":
        return None
    request = labels["request"]
    response = labels.get("response", "none")
    if request not in LABELS or (response not in LABELS and response != "none"):
        return None
    return request, (None if response == "none" else response)


def is_valid_verdict(v: Verdict) -> bool:
    """True when ``v`` can be formatted and parsed back unchanged."""
    return (
        v.format_ok
        and v.request in LABELS
        and (v.response is None or v.response in LABELS)
        and v.reasoning == v.reasoning.strip()
        and not any(tag in v.reasoning for tag in TAGS)
        and not any(v.reasoning.endswith(t) for t in _TRAILING_SPECIAL)
    )


def format_verdict(v: Verdict) -> str:
    """The target text for SFT: think block then result block.

    Raises:
        ValueError: if ``v`` is not a valid verdict (see :func:`is_valid_verdict`).
    """
    if not is_valid_verdict(v):
        raise ValueError(f"cannot format an invalid verdict: {v!r}")
    response = v.response if v.response is not None else "None"
    return (
        f"{THINK_OPEN}\n{v.reasoning}\n{THINK_CLOSE}\n"
        f"{RESULT_OPEN}\nRequest: {v.request}\nResponse: {response}\n{RESULT_CLOSE}"
    )
