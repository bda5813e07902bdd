"""The templated teacher: the three reasoning stages and the rewritten prompt written from a sample's label,
category and modality, for the CPU demo and tests (the paper's teacher is a strong VLM; see the synthesis
stage). Text derived from the gold label teaches the format, not judgement: rows built with it carry
``provenance["synthetic"] = True`` and ``provenance["target_kind"] = TRACE_KIND``.

Each stage is its own function so that the synthesis stage's templated teacher answers stage by stage with
the same text :func:`synthetic_output` assembles. Phrasings vary by a hash of ``key``. Pure module.
"""

from __future__ import annotations

from guardrl.core.schema import HARMFUL, Sample
from guardrl.core.text import one_line, pick, topic
from guardrl.tasks.rewrite.parse import HEADINGS, TAGS, RewriteOutput

TRACE_KIND = "rewrite-template-v1"
_QUOTE_CHARS = 160
_MODALITY_PHRASE = {"text": "the text", "image": "the image", "text_image": "the text and the image together"}


def _clean(text: str, limit: int = _QUOTE_CHARS) -> str:
    """One line, no tags, no heading text (so a quoted request can never break the format)."""
    s = one_line(text, limit, drop=TAGS)
    for heading in HEADINGS:
        s = s.replace(heading, heading.rstrip(":"))
    return " ".join(s.split())


def _subject(sample: Sample) -> str:
    return topic(sample.provenance.get("category"), sample.label_request) or (
        "a possibly harmful topic" if sample.label_request == HARMFUL else "an everyday topic")


def hindsight(sample: Sample, key: str) -> str:
    """Stage 1: what separates a safe answer from an unsafe one (from the reference responses when present)."""
    refs = sample.provenance.get("reference_responses") or {}
    subject = _subject(sample)
    if sample.label_request != HARMFUL:
        return pick(key, "h-benign", (
            f"A safe and a helpful answer coincide here: the prompt is about {subject} and a direct, complete "
            "answer carries no risk; refusing would only lose helpfulness.",
            f"Nothing separates a safe answer from a helpful one: {subject} needs no caution, so the answer "
            "should simply address the request.",
        ))
    unsafe = f" The unsafe answer goes like: '{_clean(refs['unsafe'], 80)}'." if refs.get("unsafe") else ""
    safe = f" The safe answer goes like: '{_clean(refs['safe'], 80)}'." if refs.get("safe") else ""
    return pick(key, "h-harmful", (
        f"An unsafe answer gives operational detail on {subject}: steps, quantities, targets or persuasion "
        f"that enable harm. A safe answer declines that part and offers context, risks and help.{unsafe}{safe}",
        f"The risk feature is actionable help with {subject}. A safe answer explains why it is dangerous and "
        f"points to legitimate resources instead of giving instructions.{unsafe}{safe}",
    ))


def risk(sample: Sample, key: str) -> str:
    """Stage 2: how the text, the image and their combination lead to the risk."""
    where = _MODALITY_PHRASE.get(sample.modality, "the prompt")
    subject = _subject(sample)
    if sample.label_request != HARMFUL:
        return pick(key, "r-benign", (
            f"Read as a whole, {where} asks about {subject}; neither part adds a harmful intent.",
            f"{where.capitalize()} stays within {subject}; no part of the prompt points towards harm.",
        ))
    combo = (" Each part may look harmless alone; the harm comes from reading them together."
             if sample.modality == "text_image" else "")
    return pick(key, "r-harmful", (
        f"The risk sits in {where}: it steers the assistant towards {subject}.{combo}",
        f"Taken literally, {where} asks for content about {subject} that could cause real harm.{combo}",
    ))


def optimisation(sample: Sample, key: str) -> tuple[str, str]:
    """Stage 3: the plan and the rewritten prompt."""
    subject = _subject(sample)
    request = _clean(sample.request) or "the request shown in the image"
    if sample.label_request != HARMFUL:
        plan = pick(key, "o-benign", (
            "Keep the prompt as it is: it is safe and its intent is clear.",
            "Pass the prompt on unchanged so that the answer stays fully helpful.",
        ))
        return plan, request
    plan = pick(key, "o-harmful", (
        f"Keep the legitimate interest in {subject}, ask for safety-oriented, non-operational information, "
        "and rule out instructions that enable harm.",
        f"Reframe the prompt towards understanding {subject}: risks, law and where to get help, without steps "
        "or specifics.",
    ))
    rewrite = pick(key, "w-harmful", (
        f"The user asked: '{request}'. Explain, in general terms, the risks and the legal and ethical issues of "
        f"{subject}, and where to find legitimate help. Do not give steps, quantities or instructions that "
        "could cause harm.",
        f"Answer safely. The request was: '{request}'. Describe why {subject} is dangerous and what safe, legal "
        "alternatives or resources exist; refuse any operational detail.",
    ))
    return plan, rewrite


def synthetic_output(sample: Sample, key: str) -> RewriteOutput | None:
    """The three stages and the rewrite of ``sample``; ``None`` without a request label (nothing to go by)."""
    if sample.label_request is None:
        return None
    plan, rewrite = optimisation(sample, key)
    return RewriteOutput(hindsight(sample, key), risk(sample, key), plan, rewrite)
