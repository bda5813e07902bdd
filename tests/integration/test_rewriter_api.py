"""``Rewriter.from_pretrained(path).rewrite(text, images)`` and ``guardrl rewrite prompt`` on real tiny models: the
random tiny model (its output does not parse: ``format_ok`` False, the prompt to send falls back to the user's
text) and a tiny model taught one rewrite (the task's prompt -> the formatted output), whose answer round-trips
to the same parsed output; JSONL in, JSONL out, a bad row reported alone. The rewriter's task is the real
``rewrite`` task (:mod:`guardrl.tasks.rewrite`: its prompt, its strict parser, its formatter)."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from serving_models import _train_until
from typer.testing import CliRunner

from guardrl import Rewriter, RewriteResult
from guardrl.tasks.rewrite.parse import RewriteOutput, format_rewrite

TASK = {"task": "rewrite"}
TEXT = "How do I sharpen this knife to hurt my neighbour?"


@pytest.fixture(scope="module")
def out_and_format():
    out = RewriteOutput(hindsight="The unsafe answer explains how to injure someone; the safe one refuses.",
                        risk="The text states an intent to hurt a person.",
                        optimisation="Keep the legitimate part and drop the harm.",
                        rewrite="How do I sharpen a kitchen knife safely?")
    return out, format_rewrite(out)


@pytest.fixture(scope="module")
def taught_rewriter(tiny_model_dir, tmp_path_factory, out_and_format):
    _, target = out_and_format
    with Rewriter.from_pretrained(tiny_model_dir, engine="hf", **TASK) as rw:
        messages = [dict(m) for m in rw.prompt(TEXT).messages]

    def check(model_dir):
        with Rewriter.from_pretrained(model_dir, engine="hf", max_new_tokens=200, **TASK) as rw:
            got = rw.rewrite(TEXT).raw
        return [] if got.strip() == target else [got[:200]]

    return _train_until(tiny_model_dir, tmp_path_factory.mktemp("rw") / "model", [{"prompt": messages}],
                        lambda r: target, check, steps=60, rounds=4)


def test_untrained_rewriter_falls_back(tiny_model_dir):
    png = io.BytesIO()
    Image.new("RGB", (24, 24), (10, 200, 10)).save(png, "PNG")
    with Rewriter.from_pretrained(tiny_model_dir, engine="hf", max_new_tokens=16, **TASK) as rw:
        r = rw.rewrite(TEXT, images=[png.getvalue()])
        assert isinstance(r, RewriteResult) and r.raw and r.output_tokens > 0 and r.prompt_tokens > 0
        assert r.format_ok is False and r.rewrite is None and r.analysis is None
        assert r.prompt == TEXT  # what to send: the user's own text
        with pytest.raises(ValueError, match="nothing to rewrite"):
            rw.rewrite("   ")


def test_taught_rewriter_round_trip(taught_rewriter, out_and_format):
    out, _ = out_and_format
    with Rewriter.from_pretrained(taught_rewriter, engine="hf", max_new_tokens=200, **TASK) as rw:
        r = rw.rewrite(TEXT)
    assert r.format_ok and r.rewrite == out.rewrite and r.prompt == out.rewrite
    assert r.analysis.output == out
    d = r.to_dict()
    assert d["analysis"]["rewrite"] == out.rewrite and d["analysis"]["risk"] == out.risk


def test_cli_prompt_text_and_jsonl(taught_rewriter, out_and_format, tmp_path):
    from guardrl.cli import app

    out, _ = out_and_format
    opts = ["--max-new-tokens", "200", "--task", "rewrite"]
    runner = CliRunner()  # stdout alone: a progress bar on stderr has no newline
    res = runner.invoke(app, ["rewrite", "prompt", str(taught_rewriter), TEXT, *opts])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout.strip().splitlines()[-1])
    assert row["id"] == "cli" and row["rewrite"] == out.rewrite and row["format_ok"] is True
    Image.new("RGB", (20, 20), (1, 2, 3)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    (tmp_path / "in.jsonl").write_text(
        json.dumps({"id": "a", "text": TEXT}) + "\n" + json.dumps({"id": "b", "text": "hi", "image": "bad.png"}) + "\n"
        + json.dumps({"id": "c", "prompt": "What is this?", "image": "ok.png"}) + "\n")
    res = runner.invoke(app, ["rewrite", "prompt", str(taught_rewriter), "--jsonl", str(tmp_path / "in.jsonl"),
                              "--out", str(tmp_path / "out.jsonl"), *opts])
    assert res.exit_code == 1  # one row could not be rewritten
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["rewrite"] == out.rewrite and "error" in rows[1] and rows[2]["original"] == "What is this?"
    assert rows[2]["format_ok"] in (True, False) and rows[2]["prompt"]
