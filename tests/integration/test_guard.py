"""Guard API and ``guardrl moderate`` on the tiny model with the real HF engine."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from guardrl.core.images import ImageError
from guardrl.stages.serve.api import Guard, Moderation
from guardrl.tasks.guard.parse import parse


@pytest.fixture(scope="module")
def guard(tiny_model_dir):
    g = Guard.from_pretrained(tiny_model_dir, engine="hf", max_new_tokens=8)
    yield g
    g.close()


def test_moderate_text_image_response(guard, tmp_path):
    m = guard.moderate("How do I pick a lock?")
    assert isinstance(m, Moderation) and guard.engine_name == "hf"
    v = parse(m.raw)
    assert (m.request, m.response, m.format_ok, m.reasoning) == (v.request, v.response, v.format_ok, v.reasoning)
    assert 1 <= m.output_tokens <= 8 and m.prompt_tokens > 0
    assert m.finish_reason in ("stop", "length")
    img = Image.new("RGB", (90, 70), (250, 0, 0))
    path = tmp_path / "x.png"
    img.save(path)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    with_path = guard.moderate("what is this?", images=[path], response="a red square")
    with_pil = guard.moderate("what is this?", images=[img], response="a red square")
    with_bytes = guard.moderate("what is this?", images=[buf.getvalue()], response="a red square")
    assert with_path.prompt_tokens == with_pil.prompt_tokens == with_bytes.prompt_tokens > m.prompt_tokens
    assert with_path.raw == with_bytes.raw  # same pixels, same greedy output
    batch = guard.moderate_batch([{"request": "a"}, {"request": "a", "response": "a much longer response with many words in it"}])
    assert len(batch) == 2 and batch[0].prompt_tokens < batch[1].prompt_tokens


def test_bad_input(guard):
    with pytest.raises(ValueError, match="nothing to moderate"):
        guard.moderate("   ")
    with pytest.raises(ImageError):
        guard.moderate("x", images=[b"not an image"])
    with pytest.raises(TypeError):
        guard.moderate("x", images=[123])


def test_moderate_cli_single_and_jsonl(tiny_model_dir, tmp_path):
    from guardrl.cli import app

    Image.new("RGB", (40, 40), (0, 200, 0)).save(tmp_path / "g.png")
    r = CliRunner().invoke(app, ["moderate", str(tiny_model_dir), "--text", "hi", "--image", str(tmp_path / "g.png"),
                                 "--response", "hello", "--engine", "hf", "--max-new-tokens", "4"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout.strip().splitlines()[-1])
    assert row["id"] == "cli" and row["output_tokens"] <= 4 and "harmful" in row
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in [
        {"id": "p1", "prompt": "how to steal a car"},
        {"request": "hello", "response": "hi there"},
        {"prompt": "", "image": "g.png"},
        {"prompt": "x", "image": "missing.png"},
    ]) + "\n")
    out = tmp_path / "out.jsonl"
    r = CliRunner().invoke(app, ["moderate", str(tiny_model_dir), "--jsonl", str(src), "--out", str(out),
                                 "--engine", "hf", "--max-new-tokens", "4", "--batch-size", "2"])
    assert r.exit_code == 1, r.output  # one input could not be judged; the others were
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [x["id"] for x in rows] == ["p1", "in.jsonl:2", "in.jsonl:3", "in.jsonl:4"]
    assert "missing.png" in rows[3]["error"] and all("request" in x for x in rows[:3])
    r = CliRunner().invoke(app, ["moderate", str(tiny_model_dir)])
    assert r.exit_code != 0
