from __future__ import annotations

import pytest

from guardrl.core.schema import Sample, SchemaError, normalize_label
from guardrl.tasks.guard.prompts import build_messages, build_verl_prompt, instruction, render_input


def test_instruction_names_both_tasks():
    text = instruction()
    assert "classifier" in text and "Task 1" in text and "Task 2" in text
    assert "<think>" in text and "<result>" in text


def test_messages_place_images_before_text():
    msgs = build_messages("hi", "hello", num_images=2)
    assert [m["role"] for m in msgs] == ["system", "user"]
    kinds = [c["type"] for c in msgs[1]["content"]]
    assert kinds == ["image", "image", "text"]
    assert "Human user:\nhi" in msgs[1]["content"][-1]["text"]
    assert "AI assistant:\nhello" in msgs[1]["content"][-1]["text"]


def test_no_response_renders_none():
    assert render_input("q", None).endswith("AI assistant:\nNone")


def test_verl_prompt_has_one_placeholder_per_image():
    msgs = build_verl_prompt("q", None, num_images=3)
    assert msgs[1]["content"].count("<image>") == 3
    with pytest.raises(ValueError):
        build_verl_prompt("q", None, num_images=-1)


@pytest.mark.parametrize(
    "raw,want",
    [("Harmful ", "harmful"), ("UNHARMFUL", "unharmful"), ("safe", "unharmful"), (True, "harmful"), (0, "unharmful"),
     (None, None), ("", None)],
)
def test_normalize_label(raw, want):
    assert normalize_label(raw) == want


def test_unknown_label_names_where():
    with pytest.raises(SchemaError, match=r"data.csv:7.*'maybe'"):
        normalize_label("maybe", where="data.csv:7")


def test_sample_validation():
    s = Sample(id="a", source="x", modality="text", request="hi", label_request="harmful")
    assert Sample.from_row(s.to_row()) == s
    with pytest.raises(SchemaError, match="needs at least one image"):
        Sample(id="b", source="x", modality="image", request="", label_request="harmful")
    with pytest.raises(SchemaError, match="response label without a response"):
        Sample(id="c", source="x", modality="text", request="q", label_request="harmful", label_response="harmful")
    with pytest.raises(SchemaError, match="label_request"):
        Sample(id="d", source="x", modality="text", request="q", label_request="Harmful")
