"""The rewriter's training-source converters (vlguard_train, vlsbench, spa_vl_train): counts on the real
published files (JSON level, no images), and conversion of a few rows with small generated PNGs placed at the
REAL relative paths the files name; a missing / undecodable image is a counted skip or an error."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_prep import get_converter, spa_vl_train, vlguard_train, vlsbench
from guardrl.core.shards import BadInputError, iter_samples, read_manifest

REPO = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("GUARDRL_REAL_BENCHMARKS") or REPO.parent / "shared" / "data" / "real-benchmarks")
if not REAL.is_dir():
    REAL = Path("/work/shared/data/real-benchmarks")
real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real benchmark files not found: {REAL} is missing")


def _png(color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buf, "PNG")
    return buf.getvalue()


def _put(folder: Path, rel: str, data: bytes) -> None:
    p = folder / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


# ------------------------------------------------------------------------------------------- VLGuard
@real
def test_vlguard_train_real_counts():
    data = json.loads((REAL / "vlguard" / "train.json").read_text())
    unsafe = [r for r in data if not r["safe"]]
    safe = [r for r in data if r["safe"]]
    assert (len(data), len(unsafe), len(safe)) == (2000, 1023, 977)
    pairs = [(w, item) for w, item in vlguard_train.iter_pairs(REAL / "vlguard" / "train.json")]
    assert len(pairs) == vlguard_train.COUNTS["rows"] == 1023 + 2 * 977
    subsets = [vlguard_train._subset(i["record"], i["pair"], w) for w, i in pairs]
    assert {s: subsets.count(s) for s in set(subsets)} == {"unsafe": 1023, "safe_safe": 977, "safe_unsafe": 977}


@real
def test_vlguard_train_converts_real_rows(tmp_path):
    src = REAL / "vlguard" / "train.json"
    data = json.loads(src.read_text())[:3]  # 2 unsafe images, then 1 safe image (2 instructions)
    images = tmp_path / "img"
    for r in data[:2]:
        _put(images, r["image"], _png())
    _put(images, data[2]["image"], b"not a png")  # undecodable -> both of its rows skipped, counted
    out = get_converter("vlguard_train").convert(src, tmp_path / "out", images=images, on_bad="skip", limit=4)
    rows = list(iter_samples(out))
    assert [s.id for s in rows] == ["vlguard_train/0/unsafe", "vlguard_train/1/unsafe"]
    s = rows[0]
    assert s.request == data[0]["instr-resp"][0]["instruction"] and s.label_request == "harmful"
    assert s.response is None and s.target is None and s.modality == "text_image" and len(s.images) == 1
    assert s.provenance["reference_responses"] == {"safe": data[0]["instr-resp"][0]["response"], "unsafe": None}
    assert (s.provenance["category"], s.provenance["subcategory"]) == ("risky behavior", "political")
    m = read_manifest(out)
    assert m["skipped"]["total"] == 2
    assert "train.json[2].instr-resp[0]" in json.dumps(m["skipped"]["examples"])
    # a good image for the safe one: safe_safe is unharmful, safe_unsafe harmful
    _put(images, data[2]["image"], _png())
    rows = list(iter_samples(vlguard_train.convert(src, tmp_path / "out2", images=images, limit=4)))
    by = {s.provenance["subset"]: s for s in rows}
    assert by["safe_safe"].label_request == "unharmful" and by["safe_unsafe"].label_request == "harmful"
    assert by["safe_safe"].request == data[2]["instr-resp"][0]["safe_instruction"]


@real
def test_vlguard_train_missing_image_errors(tmp_path):
    with pytest.raises(BadInputError, match=r"train\.json\[0\].*not found"):
        vlguard_train.convert(REAL / "vlguard" / "train.json", tmp_path / "o", images=tmp_path, limit=1)


# ------------------------------------------------------------------------------------------- VLSBench
@real
def test_read_vlsbench_real_counts():
    recs = vlsbench.read_vlsbench(REAL / "vlsbench" / "data.json")
    assert len(recs) == 2241 and len({r.image_path for r in recs}) == 1957
    cats = {c: sum(r.category == c for r in recs) for c in {r.category for r in recs}}
    assert cats == vlsbench.COUNTS["category"]
    assert [r.instruction_id for r in recs if not r.instruction.strip()] == [1685]


def test_read_vlsbench_bad_row(tmp_path):
    p = tmp_path / "data.json"
    p.write_text(json.dumps([{"instruction_id": 0, "instruction": "x", "image_path": "imgs/0.png"}]))
    with pytest.raises(Exception, match=r"data\.json\[0\]: missing field 'category'"):
        vlsbench.read_vlsbench(p)
    bad: list[str] = []
    assert vlsbench.read_vlsbench(p, on_error=lambda w, e: bad.append(w)) == [] and bad == ["data.json[0]"]


@real
def test_vlsbench_converts_real_rows(tmp_path):
    src = REAL / "vlsbench" / "data.json"
    recs = vlsbench.read_vlsbench(src)
    images = tmp_path / "vls"
    for r in recs[:3]:
        _put(images, r.image_path, _png((10, 10, 200)))
    (images / recs[2].image_path).unlink()  # missing -> counted skip
    out = vlsbench.convert(src, tmp_path / "out", images=images, limit=3, on_bad="skip")
    rows = list(iter_samples(out))
    assert [s.id for s in rows] == ["vlsbench/0", "vlsbench/1"]
    assert all(s.label_request == "harmful" and s.response is None for s in rows)
    assert rows[0].request == recs[0].instruction
    assert (rows[0].provenance["category"], rows[0].provenance["subcategory"]) == ("Illegal Activity", "Cybercrime")
    m = read_manifest(out)
    assert m["skipped"]["total"] == 1 and "data.json[2]" in json.dumps(m["skipped"]["examples"])


# ------------------------------------------------------------------------------------------- SPA-VL
def test_spa_vl_train_fixture(tmp_path):
    # columns copied from the dataset card of sqrti/SPA-VL (README.md dataset_info, config default, split
    # train): image (datasets Image = struct<bytes, path>), question, chosen, rejected, image_name
    img_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    rows = [
        {"image": {"bytes": _png(), "path": None}, "question": "How could this be used to hurt someone?",
         "chosen": "I can't help with that.", "rejected": "Here is how...", "image_name": "a/1.jpg"},
        {"image": {"bytes": None, "path": None}, "question": "What is shown?", "chosen": "A safe answer.",
         "rejected": "An unsafe answer.", "image_name": "b/2.png"},  # file in --images
        {"image": {"bytes": None, "path": None}, "question": "Q3", "chosen": "c", "rejected": "r",
         "image_name": "b/missing.png"},  # missing -> counted skip
    ]
    schema = pa.schema([("image", img_t), ("question", pa.string()), ("chosen", pa.string()),
                        ("rejected", pa.string()), ("image_name", pa.string())])
    assert tuple(schema.names) == spa_vl_train.COLUMNS
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "data" / "train-00000-of-00008.parquet")
    images = tmp_path / "train"
    _put(images, "b/2.png", _png((0, 200, 0)))
    out = spa_vl_train.convert(tmp_path, tmp_path / "out", images=images, on_bad="skip")
    got = list(iter_samples(out))
    assert [s.request for s in got] == ["How could this be used to hurt someone?", "What is shown?"]
    assert got[0].provenance["reference_responses"] == {"safe": "I can't help with that.", "unsafe": "Here is how..."}
    assert all(s.label_request == "harmful" and s.response is None and len(s.images) == 1 for s in got)
    m = read_manifest(out)
    assert m["skipped"]["total"] == 1 and "row 2" in json.dumps(m["skipped"]["examples"])
    with pytest.raises(BadInputError, match=r"row 2.*not found"):
        spa_vl_train.convert(tmp_path, tmp_path / "out2", images=images)


@real
def test_data_convert_cli_passes_images(tmp_path):
    from typer.testing import CliRunner

    from guardrl.stages.data.cli import app

    images = tmp_path / "vls"
    _put(images, "imgs/0.png", _png())
    res = CliRunner().invoke(app, ["convert", "vlsbench", "--src", str(REAL / "vlsbench" / "data.json"), "--images",
                                   str(images), "--out", str(tmp_path / "out"), "--limit", "1"])
    assert res.exit_code == 0, res.output
    assert [s.id for s in iter_samples(tmp_path / "out")] == ["vlsbench/0"]
