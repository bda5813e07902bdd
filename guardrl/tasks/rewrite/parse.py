"""Strict parser and formatter of the rewriter's output format (guardrl's choice: VLMGuard-R1 published none).

The rewriter must produce exactly::

    <think>
    Hindsight analysis: ...
    Multimodal risk analysis: ...
    Prompt optimisation: ...
    </think>
    <rewrite>
    the rewritten prompt
    </rewrite>

The three headings are the paper's three reasoning stages, in its order. Rules (anything else is a format
failure, never an exception):

* only whitespace before ``<think>``, between ``</think>`` and ``<rewrite>`` and after ``</rewrite>`` (a
  trailing ``<|im_end|>`` / ``<|endoftext|>`` is ignored);
* each of the four tags occurs exactly once, in that order;
* inside ``<think>``: the three headings, each once, each at the start of a line, in that order, nothing but
  whitespace before the first; every section and the rewrite are non-empty after stripping whitespace.

``parse_rewrite(format_rewrite(x)).output == x`` for every valid output (:func:`is_valid_output`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
REWRITE_OPEN, REWRITE_CLOSE = "<rewrite>", "</rewrite>"
TAGS = (THINK_OPEN, THINK_CLOSE, REWRITE_OPEN, REWRITE_CLOSE)
HEADINGS = ("Hindsight analysis:", "Multimodal risk analysis:", "Prompt optimisation:")
_TRAILING_SPECIAL = ("<|im_end|>", "<|endoftext|>")
_HEADING_LINE = re.compile(r"^[ \t]*(" + "|".join(re.escape(h) for h in HEADINGS) + ")", re.MULTILINE)


@dataclass(frozen=True)
class RewriteOutput:
    """The rewriter's reasoning (one text per stage) and its rewritten prompt, each stripped and non-empty."""

    hindsight: str
    risk: str
    optimisation: str
    rewrite: str

    @property
    def sections(self) -> tuple[str, str, str]:
        return self.hindsight, self.risk, self.optimisation


@dataclass(frozen=True)
class ParsedRewrite:
    """A parsed completion: ``output`` when ``format_ok``, else ``None`` and ``error`` says what broke."""

    format_ok: bool
    output: RewriteOutput | None = None
    error: str | None = None

    @property
    def rewrite(self) -> str | None:
        """The rewritten prompt, or ``None`` on a format failure."""
        return self.output.rewrite if self.output is not None else None


def _fail(error: str) -> ParsedRewrite:
    return ParsedRewrite(False, None, error)


def _strip_trailing_special(text: str) -> str:
    text = text.rstrip()
    changed = True
    while changed:
        changed = False
        for tok in _TRAILING_SPECIAL:
            if text.endswith(tok):
                text, changed = text[: -len(tok)].rstrip(), True
    return text


def _sections(body: str) -> tuple[str, str, str] | str:
    """The three stage texts of a ``<think>`` body, or an error message."""
    found = list(_HEADING_LINE.finditer(body))
    names = [m.group(1) for m in found]
    if names != list(HEADINGS):
        return f"think block headings {names} != {list(HEADINGS)}"
    if body[: found[0].start()].strip():
        return "text before the first heading"
    ends = [m.end() for m in found]
    starts = [m.start() for m in found[1:]] + [len(body)]
    texts = tuple(body[a:b].strip() for a, b in zip(ends, starts, strict=True))
    for heading, text in zip(HEADINGS, texts, strict=True):
        if not text:
            return f"empty section {heading!r}"
    return texts  # type: ignore[return-value]


def parse_rewrite(text: str) -> ParsedRewrite:
    """Parse a rewriter completion strictly; never raises (a non-string is a format failure)."""
    if not isinstance(text, str):
        return _fail(f"not a string: {type(text).__name__}")
    text = _strip_trailing_special(text)
    for tag in TAGS:
        n = text.count(tag)
        if n != 1:
            return _fail(f"{tag} occurs {n} times")
    pos = [text.index(tag) for tag in TAGS]
    if pos != sorted(pos):
        return _fail("tags out of order")
    t_open, t_close, r_open, r_close = pos
    if text[:t_open].strip():
        return _fail("text before <think>")
    if text[t_close + len(THINK_CLOSE): r_open].strip():
        return _fail("text between </think> and <rewrite>")
    if text[r_close + len(REWRITE_CLOSE):].strip():
        return _fail("text after </rewrite>")
    sections = _sections(text[t_open + len(THINK_OPEN): t_close])
    if isinstance(sections, str):
        return _fail(sections)
    rewrite = text[r_open + len(REWRITE_OPEN): r_close].strip()
    if not rewrite:
        return _fail("empty rewrite")
    return ParsedRewrite(True, RewriteOutput(*sections, rewrite=rewrite))


def is_valid_output(out: RewriteOutput) -> bool:
    """Whether ``out`` can be formatted and parsed back unchanged: every field stripped and non-empty, no tag
    anywhere, no line of any field starting with a heading."""
    for value in (*out.sections, out.rewrite):
        if not value or value != value.strip() or any(tag in value for tag in TAGS):
            return False
        if _HEADING_LINE.search(value):
            return False
        if any(value.endswith(tok) for tok in _TRAILING_SPECIAL):
            return False
    return True


def format_rewrite(out: RewriteOutput) -> str:
    """The completion text of ``out`` (the SFT target).

    Raises:
        ValueError: ``out`` would not parse back unchanged (:func:`is_valid_output`).
    """
    if not is_valid_output(out):
        raise ValueError(f"not a valid rewriter output (empty, unstripped, or holding a tag/heading): {out!r}")
    h, r, o = out.sections
    return (f"{THINK_OPEN}\n{HEADINGS[0]} {h}\n{HEADINGS[1]} {r}\n{HEADINGS[2]} {o}\n{THINK_CLOSE}\n"
            f"{REWRITE_OPEN}\n{out.rewrite}\n{REWRITE_CLOSE}")
