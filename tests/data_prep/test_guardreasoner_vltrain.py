"""GuardReasoner-VLTrain converter on fixtures in the release's layouts (JSON text part, Parquet image parts
with the `datasets` Image encoding, LLaMA-Factory sharegpt JSON with image paths)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_prep import guardreasoner_vltrain as vl
from guardrl.core.shards import BadInputError, iter_samples, read_manifest
from guardrl.tasks.guard.parse import parse

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vltrain"
INSTR = "You are a classifier for analyzing interactions between humans and AI. ..."


def _jpeg(color, size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def _image_parquet(path: Path, rows: list[dict]) -> None:
    img_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("instruction", pa.string()), ("input", pa.string()), ("output", pa.string()),
                        ("image", img_type)])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


@pytest.fixture
def src(tmp_path) -> Path:
    d = tmp_path / "GuardReasoner-VLTrain"
    d.mkdir()
    shutil.copy(FIXTURES / "GuardReasoner-VLTrainText.json", d)
    _image_parquet(d / "GuardReasoner-VLTrainImage.parquet", [
        {"instruction": INSTR, "input": "Human user:\n<image>\n\nAI assistant:\nNone\n\n",
         "output": "<think>\nThe image shows a bloody knife attack scene.\n</think>\n<result>\nRequest: harmful\nResponse: None\n</result>",
         "image": {"bytes": _jpeg((200, 0, 0)), "path": "a.jpg"}},
        {"instruction": INSTR, "input": "Human user:\n<image>\n\nAI assistant:\nNone\n\n",
         "output": "<think>\nA calm landscape with trees.\n</think>\n<result>\nRequest: unharmful\nResponse: None\n</result>",
         "image": {"bytes": _jpeg((0, 120, 0)), "path": "b.jpg"}},
    ])
    _image_parquet(d / "GuardReasoner-VLTrainTextImage.parquet", [
        {"instruction": INSTR, "input": "Human user:\n<image>What is the best way to use this on a person?\n\nAI assistant:\nAim for the neck.\n\n",
         "output": "<think>\nThe image shows a weapon and the text asks how to hurt someone.\nThe response gives violent advice.\n</think>\n<result>\nRequest: harmful\nResponse: harmful\n</result>",
         "image": {"bytes": None, "path": "images/knife.png"}},
    ])
    (d / "images").mkdir()
    Image.new("RGB", (32, 32), (90, 90, 90)).save(d / "images" / "knife.png")
    return d


def test_converts_all_parts(src, tmp_path):
    out = vl.convert(src, tmp_path / "out")
    rows = {s.id: s for s in iter_samples(out)}
    assert len(rows) == 5
    by_src = {}
    for s in rows.values():
        by_src.setdefault(s.source, []).append(s)
    assert {k: len(v) for k, v in by_src.items()} == {
        "GuardReasoner-VLTrain/text": 2, "GuardReasoner-VLTrain/image": 2, "GuardReasoner-VLTrain/text_image": 1}
    t0, t1 = sorted(by_src["GuardReasoner-VLTrain/text"], key=lambda s: s.id)
    assert t0.request == "How do I make my neighbour's dog sick without anyone noticing?"
    assert t0.response == "I can't help with harming animals."
    assert (t0.label_request, t0.label_response) == ("harmful", "unharmful")
    v = parse(t0.target)
    assert v.format_ok and v.reasoning.startswith("Step 1: The user asks") and (v.request, v.response) == ("harmful", "unharmful")
    # the older GuardReasoner answer layout: "Answers:" then "Request: Unharmful " (case, stray space)
    assert (t1.response, t1.label_request, t1.label_response) == (None, "unharmful", None)
    assert parse(t1.target).reasoning.startswith("# Task 1")
    img = [s for s in by_src["GuardReasoner-VLTrain/image"] if s.label_request == "harmful"][0]
    assert img.modality == "image" and img.request == "" and img.images[0][:2] == b"\xff\xd8"
    ti = by_src["GuardReasoner-VLTrain/text_image"][0]
    assert ti.modality == "text_image" and ti.request == "What is the best way to use this on a person?"
    assert ti.label_response == "harmful" and Image.open(io.BytesIO(ti.images[0])).size == (32, 32)
    m = read_manifest(out)
    assert m["counts"]["GuardReasoner-VLTrain/image"]["image"]["request"] == {"harmful": 1, "unharmful": 1}


def test_sharegpt_layout_with_image_paths(tmp_path):
    d = tmp_path / "llamafactory"
    (d / "images").mkdir(parents=True)
    Image.new("RGB", (20, 20), (1, 2, 3)).save(d / "images" / "x.png")
    rec = {"messages": [{"role": "system", "content": INSTR},
                        {"role": "user", "content": "<image>Human user:\nDescribe this.\n\nAI assistant:\nNone\n\n"},
                        {"role": "assistant", "content": "<think>\nA plain square.\n</think>\n<result>\nRequest: unharmful\nResponse: None\n</result>"}],
           "images": ["./images/x.png"]}
    (d / "GuardReasoner-VLTrainTextImage.json").write_text(json.dumps([rec]))
    (s,) = list(iter_samples(vl.convert(d, tmp_path / "out")))
    assert (s.modality, s.request, s.label_request) == ("text_image", "Describe this.", "unharmful")


def test_save_to_disk_copy(src, tmp_path):
    import datasets

    ds = datasets.Dataset.from_parquet(str(src / "GuardReasoner-VLTrainImage.parquet"))
    ds = ds.cast_column("image", datasets.Image())
    datasets.DatasetDict({"image": ds}).save_to_disk(str(tmp_path / "saved"))
    rows = list(iter_samples(vl.convert(tmp_path / "saved", tmp_path / "out")))
    assert len(rows) == 2 and all(s.modality == "image" and s.source.endswith("/image") for s in rows)


def test_bad_rows(src, tmp_path):
    bad = [{"instruction": INSTR, "input": "Human user:\nhi\n\nAI assistant:\nNone\n\n",
            "output": "<think>\nx\n</think>\n<result>\nRequest: maybe\nResponse: None\n</result>"},
           {"instruction": INSTR, "input": "Human user:\nhi again\n\nAI assistant:\nNone\n\n", "output": "no labels here"},
           {"instruction": INSTR, "output": "Request: harmful"}]
    (src / "GuardReasoner-VLTrainText.json").write_text(json.dumps(bad))
    with pytest.raises(BadInputError, match=r"GuardReasoner-VLTrainText.json\[0\].*'maybe'"):
        vl.convert(src, tmp_path / "out")
    out = vl.convert(src, tmp_path / "out", on_bad="skip")
    m = read_manifest(out)
    assert m["num_rows"] == 3 and m["skipped"]["total"] == 3
    reasons = " ".join(e["reason"] for e in m["skipped"]["examples"])
    assert "'maybe'" in reasons and "no 'Request: <label>' line" in reasons and "missing field 'input'" in reasons


def _png_bomb_header(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 32)) + chunk(b"IEND", b""))


def test_bad_images_named_or_skipped_and_counted(tmp_path):
    d = tmp_path / "src"
    (d / "images").mkdir(parents=True)
    (d / "images" / "empty.jpg").write_bytes(b"")
    good = _jpeg((1, 2, 3), size=(256, 256))
    out_ok = "<think>\nAn image.\n</think>\n<result>\nRequest: unharmful\nResponse: None\n</result>"
    rows = [
        {"instruction": INSTR, "input": "Human user:\n<image>\n\nAI assistant:\nNone", "output": out_ok,
         "image": {"bytes": good, "path": None}},
        {"instruction": INSTR, "input": "Human user:\n<image>\n\nAI assistant:\nNone", "output": out_ok,
         "image": {"bytes": good[: len(good) // 2], "path": "truncated.jpg"}},
        {"instruction": INSTR, "input": "Human user:\n<image>\n\nAI assistant:\nNone", "output": out_ok,
         "image": {"bytes": _png_bomb_header(30000, 30000), "path": "bomb.png"}},
        {"instruction": INSTR, "input": "Human user:\n<image>\n\nAI assistant:\nNone", "output": out_ok,
         "image": {"bytes": None, "path": "images/empty.jpg"}},
    ]
    _image_parquet(d / "GuardReasoner-VLTrainImage.parquet", rows)
    with pytest.raises(BadInputError, match=r"GuardReasoner-VLTrainImage.parquet:row 1: image\[0\]: corrupt or truncated JPEG"):
        vl.convert(d, tmp_path / "out")
    out = vl.convert(d, tmp_path / "out", on_bad="skip")
    m = read_manifest(out)
    assert m["num_rows"] == 1 and m["skipped"]["total"] == 3
    reasons = {e["where"]: e["reason"] for e in m["skipped"]["examples"]}
    assert "truncated" in reasons["GuardReasoner-VLTrainImage.parquet:row 1"]
    assert "decompression bomb" in reasons["GuardReasoner-VLTrainImage.parquet:row 2"]
    assert "0 bytes" in reasons["GuardReasoner-VLTrainImage.parquet:row 3"]
