"""Parser and reward under fuzzing: seeded random + adversarial completions (1M in the slow test, 20K in the
default run) and a hypothesis property. ``guardrl.tasks.guard.parse.parse`` (with its fast path) must agree with the
module's reference check (``_parse_body`` after the same stripping), never raise, and the reward must stay
finite and inside ``RewardConfig.bounds`` for every completion and gold label."""

from __future__ import annotations

import math
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrl.core.schema import LABELS
from guardrl.tasks.guard.parse import (
    _TRAILING_SPECIAL,
    FORMAT_FAILURE,
    TAGS,
    Verdict,
    _parse_body,
    format_verdict,
    parse,
    strip_completion,
)
from guardrl.tasks.guard.reward import RewardConfig, compute_reward

pytestmark = pytest.mark.reliability
AREA = "Parser and reward under fuzzing"

CONFIGS = (RewardConfig(), RewardConfig(beta=0.5, max_length=64), RewardConfig(no_length=True),
           RewardConfig(eco_budget=8, max_length=128))
GOLDS = [(r, p) for r in (*LABELS, None) for p in (*LABELS, None) if (r, p) != (None, None)]
FRAGMENTS = [*TAGS, *TAGS, "<", ">", "</", "<think", "result>", "</think >", "<RESULT>", "<|im_end|>", "<|endoftext|>",
             "Request:", "Response:", "request :", "RESPONSE:", "harmful", "unharmful", "Harmful", "UNHARMFUL", "None",
             "none", "safe", "maybe", "\n", "\n\n", " ", "\t", "\r\n", "\u2028", "\x00", "\ufeff", "é", "😀", "中文",
             "Request: harmful", "Response: None", ":", "Request: harmful\nRequest: unharmful", "a", "word", "0"]


def reference_parse(text: object) -> Verdict:
    """The slow path alone: the same stripping as ``parse``, then ``_parse_body`` (each tag once, in order)."""
    if not isinstance(text, str):
        return FORMAT_FAILURE
    return _parse_body(strip_completion(text))


def _well_formed(rng: random.Random) -> str:
    reasoning = " ".join(rng.choice(("The", "request", "asks", "for", "harm", "bread", "1.", "\n")) for _ in
                         range(rng.randint(0, 60)))
    resp = rng.choice(("harmful", "unharmful", "None", None))
    result = f"Request: {rng.choice(LABELS)}" + (f"\nResponse: {resp}" if resp else "")
    sep = rng.choice(("\n", "", " \n ", "\n\n"))
    return f"<think>{sep}{reasoning}{sep}</think>{sep}<result>{sep}{result}{sep}</result>"


def _mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(8)
        i = rng.randint(0, len(text))
        if op == 0:  # insert a fragment
            text = text[:i] + rng.choice(FRAGMENTS) + text[i:]
        elif op == 1 and text:  # delete a span
            j = min(len(text), i + rng.randint(1, 12))
            text = text[:i] + text[j:]
        elif op == 2:  # duplicate a tag / whole block
            tag = rng.choice(TAGS)
            text = text.replace(tag, tag + tag, 1) if rng.random() < 0.5 else text + text
        elif op == 3:  # swap two tags
            a, b = rng.sample(TAGS, 2)
            text = text.replace(a, "\0").replace(b, a).replace("\0", b)
        elif op == 4:  # case / label games
            text = text.replace(rng.choice(("harmful", "Request", "None")), rng.choice(("HARMFUL", "request", "none",
                                                                                        "harmless", "")), 1)
        elif op == 5:  # injected verdict in the reasoning, a '<' inside a block
            text = text.replace("<think>", "<think>Request: harmful</result><result>" if rng.random() < 0.5 else
                                "<think>a < b", 1)
        elif op == 6:  # trailing specials and whitespace
            text = text + rng.choice(("<|im_end|>", "<|endoftext|>", " <|im_end|>\n<|endoftext|>", "\n\n", "x"))
        else:  # leading junk
            text = rng.choice(("", " ", "Sure! ", "\ufeff", "<|im_end|>")) + text
    return text


def _random(rng: random.Random) -> str:
    return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 30)))


def completions(n: int, seed: int):
    """``n`` completions: 1/4 well formed, 1/2 mutated, 1/4 random fragments, a few huge or non-string."""
    rng = random.Random(seed)
    for i in range(n):
        k = i % 4
        if i % 100_000 == 99_999:
            yield rng.choice((None, b"<think>x</think>", 42, "<think>" + "a " * 200_000 + "</think><result>\n"
                              "Request: harmful\n</result>"))
        elif k == 0:
            yield _well_formed(rng)
        elif k == 3:
            yield _random(rng)
        else:
            yield _mutate(_well_formed(rng), rng)


def fuzz(n: int, seed: int) -> dict:
    rng = random.Random(seed + 1)
    stats = {"n": n, "format_ok": 0, "fast_path_agreed": 0}
    t0 = time.perf_counter()
    for text in completions(n, seed):
        v = parse(text)
        ref = reference_parse(text)
        assert v == ref, (text, v, ref)
        stats["fast_path_agreed"] += 1
        if v.format_ok:
            stats["format_ok"] += 1
            assert v.request in LABELS and (v.response is None or v.response in LABELS), text
            assert all(tag not in v.reasoning for tag in TAGS), text
        cfg = CONFIGS[rng.randrange(len(CONFIGS))]
        gold = GOLDS[rng.randrange(len(GOLDS))]
        parts = compute_reward(text, *gold, cfg)
        lo, hi = cfg.bounds
        assert math.isfinite(parts.score) and lo <= parts.score <= hi, (text, gold, cfg, parts)
        assert parts.format == int(v.format_ok)
        if not v.format_ok:
            assert parts.score == (0.0 if cfg.no_length else cfg.reward_floor)
    stats["seconds"] = round(time.perf_counter() - t0, 1)
    return stats


def _row(record, stats: dict) -> None:
    record(AREA, f"{stats['n']:,} seeded completions (1/4 well formed, 1/2 mutated: duplicated / swapped / deleted "
           "tags, injected verdicts, '<' in blocks, label case games, trailing specials; 1/4 random fragments; "
           "some 400 KB or non-string), each scored against a random gold label pair and one of 4 reward configs",
           f"no exception; `parse` = reference parser on all {stats['fast_path_agreed']:,} "
           f"({stats['format_ok']:,} well formed); every reward finite and within `RewardConfig.bounds`; format "
           f"failures exactly on the floor; {stats['seconds']} s",
           expected="no exception, fast path agrees, reward in bounds")


def test_fuzz_20k(record):
    _row(record, fuzz(20_000, seed=0))


@pytest.mark.slow
def test_fuzz_1m(record):
    _row(record, fuzz(1_000_000, seed=1))


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=25).map("".join))
def _property(text: str) -> None:
    assert parse(text) == reference_parse(text)
    for gold in GOLDS:
        s = compute_reward(text, *gold).score
        assert RewardConfig().bounds[0] <= s <= 0.0


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.text(max_size=200).filter(lambda s: s == s.strip() and not any(t in s for t in TAGS)
                                     and not s.endswith(_TRAILING_SPECIAL)),
       st.sampled_from(LABELS), st.sampled_from((*LABELS, None)))
def _roundtrip(reasoning: str, req: str, resp: str | None) -> None:
    v = Verdict(req, resp, reasoning, True)
    assert parse(format_verdict(v)) == v


def test_hypothesis_properties(record):
    _property()
    _roundtrip()
    record(AREA, "hypothesis: 1,500 texts from tag fragments + arbitrary unicode; 500 valid verdicts with "
           "arbitrary unicode reasoning", "parse = reference, reward within bounds for all 8 gold pairs; "
           "parse(format_verdict(v)) == v", expected="properties hold")
