"""Parquet shard writer / reader / manifest: round trip, size bounds, atomicity, validation."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from PIL import Image

from guardrl.core.schema import ARROW_SCHEMA, Sample
from guardrl.core.shards import (
    BadInputError,
    ShardError,
    ShardWriter,
    SplitWriter,
    iter_samples,
    load_hf_dataset,
    read_manifest,
    read_table,
    shard_files,
    split_names,
    verify,
    write_samples,
)


def _png(color=(255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, "PNG")
    return buf.getvalue()


def _samples(n: int) -> list[Sample]:
    out = []
    for i in range(n):
        if i % 3 == 0:
            out.append(Sample(id=f"s{i}", source="a", modality="text", request=f"q{i}" * 20, label_request="harmful"))
        elif i % 3 == 1:
            out.append(Sample(id=f"s{i}", source="b", modality="image", request="", images=(_png(),),
                              label_request="unharmful", provenance={"n": i}))
        else:
            out.append(Sample(id=f"s{i}", source="a", modality="text_image", request="look", images=(_png(),),
                              response="ok", label_request="unharmful", label_response="harmful", target=None))
    return out


def test_round_trip_same_rows_and_counts(tmp_path):
    rows = _samples(30)
    out = write_samples(tmp_path / "d", rows, stage="test", config={"k": 1})
    assert list(iter_samples(out)) == rows
    m = read_manifest(out)
    assert m["num_rows"] == 30 and m["stage"] == "test" and m["config"] == {"k": 1}
    assert m["code_version"]["guardrl"]
    # 10 text rows of source a (i % 3 == 0), all harmful, no response
    assert m["counts"]["a"]["text"] == {"total": 10, "request": {"harmful": 10}, "response": {"none": 10}}
    assert m["counts"]["a"]["text_image"]["response"] == {"harmful": 10}
    assert m["counts"]["b"]["image"]["request"] == {"unharmful": 10}
    t = read_table(out)
    assert t.num_rows == 30 and t.schema.remove_metadata().equals(ARROW_SCHEMA.remove_metadata())


def test_shards_are_size_bounded(tmp_path):
    rows = _samples(60)
    with ShardWriter(tmp_path / "d", stage="t", max_shard_bytes=2000, row_group_bytes=500) as w:
        for s in rows:
            w.write(s)
    m = verify(tmp_path / "d")
    assert len(m["shards"]) > 2
    assert sum(s["rows"] for s in m["shards"]) == 60
    assert [s["name"] for s in m["shards"]] == [f"part-{i:05d}.parquet" for i in range(len(m["shards"]))]
    assert list(iter_samples(tmp_path / "d")) == rows
    assert not list((tmp_path / "d").glob(".*tmp"))


def test_loads_with_hf_datasets(tmp_path):
    import datasets

    write_samples(tmp_path / "d", _samples(6), stage="t")
    ds = datasets.load_dataset("parquet", data_files=[str(p) for p in shard_files(tmp_path / "d")], split="train")
    assert ds.num_rows == 6 and ds[1]["images"][0] == _png()
    assert load_hf_dataset(tmp_path / "d")["id"] == [f"s{i}" for i in range(6)]


def test_exception_leaves_no_output_and_keeps_previous(tmp_path):
    out = tmp_path / "d"
    write_samples(out, _samples(3), stage="v1")
    with pytest.raises(RuntimeError, match="boom"), ShardWriter(out, stage="v2") as w:
        w.write(_samples(1)[0])
        raise RuntimeError("boom")
    assert read_manifest(out)["stage"] == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["d"]
    with pytest.raises(ShardError, match="no such folder"):
        read_manifest(tmp_path / "never")


def test_reader_rejects_missing_and_changed_shards(tmp_path):
    out = write_samples(tmp_path / "d", _samples(40), stage="t", max_shard_bytes=1500, row_group_bytes=400)
    names = [s["name"] for s in read_manifest(out)["shards"]]
    victim = out / names[1]
    data = victim.read_bytes()
    victim.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ShardError, match=f"{names[1]}: sha256 mismatch"):
        list(iter_samples(out))
    victim.unlink()
    with pytest.raises(ShardError, match=f"{names[1]}: shard listed in the manifest is missing"):
        read_table(out)
    (out / "manifest.json").unlink()
    with pytest.raises(ShardError, match="manifest.json: missing"):
        list(iter_samples(out))


def test_reader_rejects_foreign_schema_and_version(tmp_path):
    import pyarrow as pa

    out = write_samples(tmp_path / "d", _samples(2), stage="t")
    m = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**m, "schema_version": 99}))
    with pytest.raises(ShardError, match="schema version 99"):
        read_manifest(out)
    (out / "manifest.json").write_text(json.dumps(m))
    (out / "stray.parquet").write_bytes(b"")
    with pytest.raises(ShardError, match="stray.parquet"):
        verify(out)
    (out / "stray.parquet").unlink()
    # a shard with another schema but a matching manifest entry
    name = m["shards"][0]["name"]
    pq.write_table(pa.table({"id": ["x"]}), out / name)
    from guardrl.core.shards import sha256_file

    m["shards"][0].update(bytes=(out / name).stat().st_size, sha256=sha256_file(out / name))
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ShardError, match="schema differs"):
        verify(out)


def test_on_bad_error_and_skip(tmp_path):
    bad = {"id": "x", "source": "s", "modality": "text", "request": "q", "images": [],
           "label_request": "maybe", "provenance": "{}"}
    with pytest.raises(BadInputError, match=r"src.jsonl:7: .*label_request 'maybe'"), \
            ShardWriter(tmp_path / "d", stage="t") as w:
        w.write(bad, where="src.jsonl:7")
    assert not (tmp_path / "d").exists()
    with ShardWriter(tmp_path / "d", stage="t", on_bad="skip") as w:
        w.write(bad, where="src.jsonl:7")
        w.write(_samples(1)[0])
        w.write(_samples(1)[0])  # duplicate id
        with w.guard("src.jsonl:9"):
            {}["prompt"]  # missing field
        w.skip("src.jsonl:10", "empty prompt")
    sk = read_manifest(tmp_path / "d")["skipped"]
    assert sk["total"] == 4
    assert sk["by_reason"]["missing field '…'"] == 1 and sk["by_reason"]["empty prompt"] == 1
    assert {e["where"] for e in sk["examples"]} >= {"src.jsonl:7", "src.jsonl:9", "src.jsonl:10"}
    assert read_manifest(tmp_path / "d")["num_rows"] == 1


def test_split_writer(tmp_path):
    rows = _samples(10)
    with SplitWriter(tmp_path / "d", splits=("train", "dev"), stage="t") as sw:
        for s in rows:
            sw["dev" if int(s.id[1:]) % 5 == 0 else "train"].write(s)
    assert split_names(tmp_path / "d") == ["train", "dev"]
    assert [s.id for s in iter_samples(tmp_path / "d", split="dev")] == ["s0", "s5"]
    assert len(list(iter_samples(tmp_path / "d" / "train"))) == 8
    with pytest.raises(ShardError, match="split dir; pass split="):
        read_table(tmp_path / "d")
    with pytest.raises(KeyError, match="unknown split"), SplitWriter(tmp_path / "e", stage="t") as sw:
        sw["test"]
    assert not (tmp_path / "e").exists()


def test_empty_output_is_valid(tmp_path):
    out = write_samples(tmp_path / "d", [], stage="t")
    assert read_table(out).num_rows == 0 and list(iter_samples(out)) == []
