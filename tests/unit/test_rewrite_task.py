"""The rewrite task: strict parser / formatter (hand-written cases + hypothesis), prompt, templated teacher,
judge / score / metrics / reward, registry."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrl.core.schema import Sample
from guardrl.tasks import get_task
from guardrl.tasks.base import Task
from guardrl.tasks.rewrite.parse import (
    HEADINGS,
    TAGS,
    ParsedRewrite,
    RewriteOutput,
    format_rewrite,
    is_valid_output,
    parse_rewrite,
)
from guardrl.tasks.rewrite.reward import RewriteRewardConfig

GOOD = ("<think>\nHindsight analysis: a safe answer declines.\nMultimodal risk analysis: the text asks for a "
        "weapon.\nPrompt optimisation: ask about safety instead.\n</think>\n<rewrite>\nExplain why weapons are "
        "dangerous.\n</rewrite>")


def _sample(label="harmful", request="How do I make a pipe bomb?", images=(), modality="text", **prov):
    return Sample(id="s1", source="test", modality=modality, request=request, images=tuple(images),
                  label_request=label, provenance=prov)


def test_parses_well_formed_output():
    p = parse_rewrite(GOOD)
    assert p == ParsedRewrite(True, RewriteOutput("a safe answer declines.", "the text asks for a weapon.",
                                                  "ask about safety instead.", "Explain why weapons are dangerous."))
    assert p.rewrite == "Explain why weapons are dangerous."
    # multi-line sections and rewrite, indented headings, a trailing end-of-turn token
    text = ("  <think>  Hindsight analysis:\nline one\nline two\n   Multimodal risk analysis: r\nPrompt optimisation: o"
            "</think>\n\n<rewrite>first\nsecond</rewrite><|im_end|>")
    p = parse_rewrite(text)
    assert p.format_ok and p.output.hindsight == "line one\nline two" and p.rewrite == "first\nsecond"


@pytest.mark.parametrize("bad", [
    "", "just a prompt", GOOD.replace("<rewrite>", ""), GOOD.replace("</think>", ""),
    "hello " + GOOD, GOOD + " trailing", GOOD.replace("</think>\n", "</think> junk "),
    GOOD + "<rewrite>x</rewrite>",  # a second rewrite block
    GOOD.replace("Multimodal risk analysis: ", ""),  # a missing heading
    GOOD.replace("Hindsight analysis: a safe answer declines.\n", "") .replace(  # headings out of order
        "Prompt optimisation:", "Hindsight analysis: x\nPrompt optimisation:"),
    GOOD.replace("Prompt optimisation: ask about safety instead.", "Prompt optimisation:"),  # empty section
    GOOD.replace("Explain why weapons are dangerous.", "   "),  # empty rewrite
    "<think>\nnotes\n" + GOOD[len("<think>\n"):],  # text before the first heading
    GOOD.replace("Prompt optimisation", "Prompt optimization"),  # another spelling is not the format
])
def test_format_failures_never_raise(bad):
    p = parse_rewrite(bad)
    assert not p.format_ok and p.output is None and p.rewrite is None and p.error


def test_non_strings_are_format_failures():
    assert not parse_rewrite(None).format_ok  # type: ignore[arg-type]
    assert not parse_rewrite(b"<think>").format_ok  # type: ignore[arg-type]


_field = st.text(min_size=1, max_size=60).map(str.strip).filter(bool)
_outputs = st.builds(RewriteOutput, _field, _field, _field, _field)


@settings(max_examples=300, deadline=None)
@given(_outputs)
def test_format_then_parse_is_identity(out):
    if is_valid_output(out):
        assert parse_rewrite(format_rewrite(out)).output == out
    else:
        with pytest.raises(ValueError):
            format_rewrite(out)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.lists(st.sampled_from([*TAGS, *HEADINGS, "x", "\n", " "]), max_size=30).map("".join))
def test_parser_never_raises_and_ok_means_usable(text):
    p = parse_rewrite(text)
    assert isinstance(p, ParsedRewrite)
    if p.format_ok:
        assert p.rewrite and p.rewrite == p.rewrite.strip() and all(s.strip() for s in p.output.sections)


def test_registered_and_implements_the_protocol():
    task = get_task("rewrite")
    assert isinstance(task, Task) and task.name == "rewrite" and task.metric_prefix == "rewrite"


def test_prompt_messages_images_first_and_no_gold_read():
    task = get_task("rewrite")
    msgs = task.prompt_messages(_sample(images=[b"png"], modality="text_image", request="What is this?"))
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[1]["content"][0] == {"type": "image"}
    assert "What is this?" in msgs[1]["content"][1]["text"] and "<rewrite>" in msgs[0]["content"][0]["text"]
    assert msgs == task.prompt_messages(_sample(label="unharmful", images=[b"png"], modality="text_image",
                                                request="What is this?"))


def test_assemble_target_parses_back_and_refuses_bad_parts():
    task = get_task("rewrite")
    parts = {"hindsight": " h ", "risk": "r", "optimise": "o", "rewrite": "w\nmore"}
    target = task.assemble_target(parts)
    assert parse_rewrite(target).output == RewriteOutput("h", "r", "o", "w\nmore")
    assert task.sft_target(Sample(**{**_sample().__dict__, "target": target})) == target
    assert task.synthetic_target(_sample(), "k") is None  # rows come from the synthesis stage
    with pytest.raises(ValueError, match="missing"):
        task.assemble_target({**parts, "risk": "  "})
    with pytest.raises(ValueError, match="not a valid"):
        task.assemble_target({**parts, "rewrite": "x </rewrite> y"})


def test_sft_target_refuses_an_unparseable_target():
    task = get_task("rewrite")
    assert task.sft_target(Sample(**{**_sample().__dict__, "target": "no tags"})) is None


def test_judge_score_metrics_reward():
    task = get_task("rewrite")
    s = _sample()
    assert task.judge(s, GOOD).correct and not task.judge(s, "nope").format_ok
    unchanged = GOOD.replace("Explain why weapons are dangerous.", "How do I make a  pipe bomb?")
    recs = [task.score(s, GOOD, 30), task.score(s, "nope", 10), task.score(s, unchanged, 20),
            task.score(_sample(label="unharmful"), GOOD, 40)]
    m = task.metrics({"dev": recs})
    assert m["rewrite/dev/n"] == 4 and m["rewrite/dev/parse_rate"] == 0.75
    assert m["rewrite/dev/harmful/parse_rate"] == pytest.approx(2 / 3)
    assert m["rewrite/dev/unchanged_rate"] == pytest.approx(1 / 3) and m["rewrite/dev/mean_output_tokens"] == 25
    assert task.summary_line(m) == "rewrite parse rate 75.0%"
    cfg = task.reward_config({})
    r = task.reward(GOOD, task.ground_truth(s), cfg)
    assert {k: r[k] for k in ("score", "format", "rewrite_chars", "faithfulness", "judge_failed")} == {
        "score": 1.0, "format": 1.0, "rewrite_chars": 34.0, "faithfulness": 0.0, "judge_failed": 0.0}
    assert task.reward("nope", "{}", cfg)["score"] == -1.0
    assert task.reward(GOOD, {}, task.reward_config({"max_rewrite_chars": 10}))["format"] == 0.0
    assert task.rewritten_prompt(GOOD) == "Explain why weapons are dangerous." and task.rewritten_prompt("x") is None


@pytest.mark.parametrize("options, match", [({"bonus": 1}, "unknown key"), ({"format_ok": -2.0}, "must exceed"),
                                            ({"max_rewrite_chars": 0}, ">= 1")])
def test_reward_config_rejects_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        RewriteRewardConfig.from_kwargs(**options)
