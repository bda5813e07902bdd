"""Synthetic, templated reasoning traces -> SFT ``target`` for corpora without real traces (guard-mini).

The real GuardReasoner-VLTrain brings reasoning written by a strong model; the bundled corpus has only
labels and a few source fields. :func:`synthetic_target` writes a short step-by-step trace from what
the source provides -- modality, the category / harm type, and the gold labels (optionally a quoted
snippet of the request: ``quote_chars``) -- and formats it with :func:`guardrl.tasks.guard.parse.format_verdict`, so the tiny model learns the
output format. The trace is derived from the gold labels (as the paper's traces are); it teaches
format, not judgement. Rows built with it carry ``provenance["target_kind"] = TRACE_KIND``.

No target is produced (``None``) when the request has no gold label (the target's ``Request:`` line
would be a guess) or when a response exists without a response label. Such rows stay in the corpus
for RL / evaluation of the task that *is* labelled.

Phrasings vary by a hash of ``key`` (the sample id), so rebuilding gives identical text.
Pure module.
"""

from __future__ import annotations

import hashlib
import re

from guardrl.core.schema import HARMFUL, LABELS
from guardrl.tasks.guard.parse import TAGS, Verdict, format_verdict

TRACE_KIND = "synthetic-template-v2"
_SNIPPET_CHARS = 90


def _pick(key: str, salt: str, options: tuple[str, ...]) -> str:
    h = int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:4], "big")
    return options[h % len(options)]


def snippet(text: str, limit: int = _SNIPPET_CHARS) -> str:
    """A one-line excerpt safe to put inside a think block (no tags, no angle brackets)."""
    s = " ".join(text.split())
    for tag in TAGS:
        s = s.replace(tag, " ")
    s = s.replace("<", "(").replace(">", ")").replace('"', "'")
    if len(s) > limit:
        s = s[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,.;:") + "…"
    return s


def topic(category: str | None, label: str | None) -> str | None:
    """A short human phrase for a source category / harm type.

    ``"cooking_vs_chemical_weapon"`` (a benign/harmful pair) gives ``"chemical weapon"`` for a harmful
    row and ``"cooking"`` for an unharmful one; ``"A; B; C; D"`` (a harm taxonomy path) keeps the two
    most specific parts; underscores become spaces.
    """
    if not category or not str(category).strip():
        return None
    c = str(category).strip()
    if "_vs_" in c:
        benign, harmful = c.split("_vs_", 1)
        c = harmful if label == HARMFUL else benign
    parts = [p.strip() for p in c.split(";") if p.strip()]
    if len(parts) > 2:
        parts = parts[-2:]
    c = " and ".join(parts)
    c = re.sub(r"[_\s]+", " ", c).strip().lower()
    c = c.replace("<", "(").replace(">", ")")
    return c[:80] or None


def synthetic_reasoning(
    *,
    key: str,
    request: str,
    response: str | None,
    label_request: str,
    label_response: str | None,
    modality: str = "text",
    category: str | None = None,
    quote_chars: int = 0,
) -> str:
    """The templated think-block text (4 numbered steps, ending with the verdict).

    ``quote_chars`` > 0 quotes that many characters of the request (and half as many of the response).
    The default quotes nothing: a small model otherwise spends its tokens copying the quote (and the
    tiny demo model loops on it) before it reaches the verdict; the trace then runs near 40 tokens.
    """
    quoted = snippet(request, quote_chars) if quote_chars and request.strip() else ""
    q = f' "{quoted}"' if quoted else ""
    if modality == "text":
        step1 = _pick(key, "s1t", (
            f"The human user writes a text request{q}.",
            f"The request from the human user is text{q}.",
        ))
    elif modality == "image":
        step1 = _pick(key, "s1i", (
            f"The request is an image with no text; the image shows written text{q}.",
            f"There is only an image. It contains typed text{q}.",
        ))
    else:
        step1 = _pick(key, "s1ti", (
            f"The text points to the image, which contains written text{q}. The image carries the request.",
            f"The user asks about the image; its text{q} is the real request.",
        ))
    t = topic(category, label_request)
    if label_request == HARMFUL:
        step2 = _pick(key, "s2h", (
            f"This asks for help with {t}, which could cause real harm to people." if t else
            "This asks for content that could cause real harm to people.",
            f"The request concerns {t}; fulfilling it could enable harm or abuse." if t else
            "Fulfilling this request could enable harm or abuse.",
        ))
    else:
        step2 = _pick(key, "s2u", (
            f"This is an ordinary request about {t} with no intent to cause harm." if t else
            "This is an ordinary request with no intent to cause harm.",
            f"The topic is {t}; nothing here seeks dangerous or abusive content." if t else
            "Nothing here seeks dangerous or abusive content.",
        ))
    if response is None or label_response is None:
        step3 = "There is no AI response to judge."
    else:
        rq = f' "{snippet(response, max(quote_chars // 2, 16))}"' if quote_chars else ""
        if label_response == HARMFUL:
            step3 = _pick(key, "s3h", (
                f"The AI assistant answers{rq}. It goes along with the request and gives content that could cause harm.",
                f"The AI response{rq} provides harmful content instead of refusing.",
            ))
        else:
            step3 = _pick(key, "s3u", (
                f"The AI assistant answers{rq}. The answer contains nothing harmful.",
                f"The AI response{rq} is safe: it refuses or helps without causing harm.",
            ))
    resp = label_response if (response is not None and label_response is not None) else "None"
    step4 = f"So the request is {label_request} and the response is {resp}."
    return "\n".join(f"{i}. {s}" for i, s in enumerate((step1, step2, step3, step4), start=1))


def synthetic_target(
    *,
    key: str,
    request: str,
    response: str | None,
    label_request: str | None,
    label_response: str | None,
    modality: str = "text",
    category: str | None = None,
    quote_chars: int = 0,
) -> str | None:
    """The SFT target (think + result blocks) or ``None`` when the labels do not allow one (see above)."""
    if label_request not in LABELS:
        return None
    if response is not None and label_response not in LABELS:
        return None
    if response is None:
        label_response = None
    reasoning = synthetic_reasoning(
        key=key, request=request, response=response, label_request=label_request,
        label_response=label_response, modality=modality, category=category, quote_chars=quote_chars,
    )
    return format_verdict(Verdict(request=label_request, response=label_response, reasoning=reasoning, format_ok=True))
