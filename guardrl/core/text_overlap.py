"""How much of a request a rewrite keeps: content-word recall (pure; the rewriter's RL reward and its evaluation).

Lexical on purpose: cheap, deterministic, the same on every machine. A rewrite that swaps the question ("What
is 2+2?") keeps none of the request's content words; one that adds a safety instruction keeps them all.
"""

from __future__ import annotations

import re

_STOPWORDS_TEXT = (
    "a an the and or but if then else of to in on at by for with from into onto about as is are was were be been "
    "being am do does did doing have has had having i me my we our you your he she it its they them their this "
    "that these those what which who whom whose when where why how can could would should will shall may might "
    "must not no yes so than too very just also please tell give show explain describe write make let us any "
    "some all each every there here up down out over under again more most such own same"
)
#: words that carry no intent: left out of the faithfulness recall
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_WORD = re.compile(r"[a-z0-9]+")


def content_words(text: str, min_chars: int = 3) -> set[str]:
    """Lower-cased alphanumeric words of ``text`` of at least ``min_chars`` characters, stopwords dropped."""
    return {w for w in _WORD.findall(text.lower()) if len(w) >= min_chars and w not in STOPWORDS}


def faithfulness(original: str, rewrite: str, min_chars: int = 3) -> float:
    """The share of the original request's content words the rewrite keeps (1.0 when it has none)."""
    words = content_words(original, min_chars)
    if not words:
        return 1.0
    return len(words & content_words(rewrite, min_chars)) / len(words)
