"""Bad data: corrupt / unlisted / changed shards, bad images, non-UTF-8, empty text, a 1 MB request, unknown
labels, duplicate ids. Each gives a clear error naming the file and row (exit code 2 and no traceback from
the command line) or, with ``--on-bad skip``, a skip counted in the manifest; never a silent loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reliability_helpers import assert_user_error, load_test_module, run_cli

from data_prep import get_converter
from guardrl.core.schema import Sample
from guardrl.core.shards import ShardError, iter_samples, read_manifest, verify, write_samples

pytestmark = pytest.mark.reliability
AREA_SHARD = "Bad data: shards and manifests"
AREA_ROWS = "Bad data: source rows (converters, `guardrl data convert`)"
HEADER = "conv_id,user_input,model_output,human_annotation,toxicity,jailbreaking,openai_moderation\n"


@pytest.fixture
def shards(tmp_path) -> Path:
    """A shard dir with two shards (40 text samples)."""
    samples = [Sample(f"s{i}", "t", "text", f"request number {i} " + "x" * 400, label_request="harmful")
               for i in range(40)]
    return write_samples(tmp_path / "data", samples, stage="test", max_shard_bytes=4000, row_group_bytes=2000)


def test_corrupt_shard_bytes(shards, record):
    part = shards / "part-00000.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    part.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="part-00000.parquet: sha256 mismatch"):
        list(iter_samples(shards))
    msg = assert_user_error(run_cli(["data", "inspect", str(shards)]), "part-00000.parquet", "sha256 mismatch")
    record(AREA_SHARD, "one byte flipped in a Parquet shard; `guardrl data inspect` and `iter_samples`",
           msg, expected="refused, naming the shard")


def test_truncated_shard_without_hash_check(shards, record):
    part = shards / "part-00001.parquet"
    data = part.read_bytes()
    part.write_bytes(data[:-8] + b"\0" * 8)  # footer length + magic destroyed, size kept
    with pytest.raises(ShardError, match="part-00001.parquet: not a readable Parquet file"):
        verify(shards, check_hashes=False)
    msg = assert_user_error(run_cli(["data", "inspect", "--no-hashes", str(shards)]), "part-00001.parquet",
                            "not a readable Parquet file")
    record(AREA_SHARD, "Parquet footer destroyed, read with hashes off (`data inspect --no-hashes`)", msg,
           expected="refused, naming the shard")


def test_shard_not_in_manifest_and_listed_shard_missing(shards, record):
    extra = shards / "part-00099.parquet"
    extra.write_bytes((shards / "part-00000.parquet").read_bytes())
    msg = assert_user_error(run_cli(["data", "inspect", str(shards)]), "not in the manifest", "part-00099.parquet")
    record(AREA_SHARD, "an extra `part-00099.parquet` that the manifest does not list", msg,
           expected="refused, naming the file", see="tests/unit/test_shards.py")
    extra.unlink()
    (shards / "part-00001.parquet").unlink()
    with pytest.raises(ShardError, match="part-00001.parquet: shard listed in the manifest is missing"):
        list(iter_samples(shards))
    msg = assert_user_error(run_cli(["data", "inspect", str(shards)]), "part-00001.parquet", "missing")
    record(AREA_SHARD, "a shard listed in the manifest deleted", msg, expected="refused, naming the shard")


def test_manifest_hash_mismatch_and_missing_manifest(shards, record):
    mf = shards / "manifest.json"
    m = json.loads(mf.read_text())
    m["shards"][1]["sha256"] = "0" * 64
    mf.write_text(json.dumps(m))
    msg = assert_user_error(run_cli(["data", "inspect", str(shards)]), "part-00001.parquet", "sha256 mismatch")
    record(AREA_SHARD, "manifest's sha256 of a shard edited", msg, expected="refused, naming the shard")
    mf.unlink()
    with pytest.raises(ShardError, match="not a complete guardrl output"):
        read_manifest(shards)
    msg = assert_user_error(run_cli(["data", "inspect", str(shards)]), "manifest.json: missing")
    record(AREA_SHARD, "no manifest.json (what a killed writer leaves)", msg,
           expected="refused as incomplete", see="tests/unit/test_shards.py")


# --------------------------------------------------------------------------------------- source rows
def _csv(path: Path, rows: list[tuple[str, str, str]], raw: bytes = b"") -> Path:
    body = "".join(f'{cid},"{text}",,True,{tox},0,\n' for cid, text, tox in rows)  # human-annotated rows
    path.write_bytes(HEADER.encode() + body.encode() + raw)
    return path


def _convert_both_ways(src: Path, tmp_path: Path, *needles: str) -> tuple[str, dict]:
    """The CLI in error mode (exit 2 naming the row), then skip mode (counted); returns the message and manifest."""
    msg = assert_user_error(run_cli(["data", "convert", "toxicchat", "--src", str(src), "--out",
                                     str(tmp_path / "out")]), *needles)
    assert not (tmp_path / "out").exists()  # nothing published by the failed run
    out = get_converter("toxicchat").convert(src, tmp_path / "out", on_bad="skip")
    return msg, read_manifest(out)


def test_unknown_label(tmp_path, record):
    src = _csv(tmp_path / "toxic-chat_annotation_test.csv", [("a1", "hello", "0"), ("a2", "bomb please", "maybe")])
    msg, m = _convert_both_ways(src, tmp_path, "toxic-chat_annotation_test.csv:3", "unknown label 'maybe'")
    assert m["num_rows"] == 1 and m["skipped"]["total"] == 1
    assert m["skipped"]["examples"][0]["where"] == "toxic-chat_annotation_test.csv:3"
    record(AREA_ROWS, "unknown label `maybe`", f"{msg}; with --on-bad skip: 1 row kept, 1 skip counted in the "
           "manifest with its location", expected="error naming file:line, or a counted skip",
           see="tests/data_prep/test_benchmarks.py::test_unknown_label_names_the_row")


def test_duplicate_id(tmp_path, record):
    src = _csv(tmp_path / "toxic-chat_annotation_test.csv",
               [("a1", "hello", "0"), ("a2", "hi", "0"), ("a1", "hello again", "1")])
    msg, m = _convert_both_ways(src, tmp_path, "toxic-chat_annotation_test.csv:4", "duplicate id")
    assert m["num_rows"] == 2 and m["skipped"]["total"] == 1
    record(AREA_ROWS, "two rows with the same id", f"{msg}; skip mode: the second one counted as skipped",
           expected="error naming file:line, or a counted skip")


def test_empty_request(tmp_path, record):
    src = _csv(tmp_path / "toxic-chat_annotation_test.csv", [("a1", "hello", "0"), ("a2", "   ", "1")])
    msg, m = _convert_both_ways(src, tmp_path, "toxic-chat_annotation_test.csv:3", "empty")
    assert m["num_rows"] == 1 and m["skipped"]["total"] == 1
    record(AREA_ROWS, "empty (whitespace) request text", f"{msg}; skip mode: counted",
           expected="error naming file:line, or a counted skip")


def test_non_utf8(tmp_path, record):
    src = _csv(tmp_path / "toxic-chat_annotation_test.csv", [("a1", "hello", "0")], raw=b'a2,"caf\xe9 au lait",,,0,0,\n')
    msg = assert_user_error(run_cli(["data", "convert", "toxicchat", "--src", str(src), "--out",
                                     str(tmp_path / "out")]), "toxic-chat_annotation_test.csv", "not valid UTF-8")
    assert not (tmp_path / "out").exists()
    record(AREA_ROWS, "Latin-1 byte in a CSV", msg, expected="error naming the file and byte offset (CSV has no "
           "row-level recovery once the decoder fails)")
    # JSON Lines: the bad line is named, and skip mode counts it
    from data_prep import guard_mini

    good = {"id": "g1", "prompt": "How do I bake bread?", "label_prompt": "unharmful", "source": "s"}
    jl = tmp_path / "gm" / "train.jsonl"
    jl.parent.mkdir()
    jl.write_bytes(json.dumps(good).encode() + b'\n{"id": "g2", "prompt": "caf\xe9", "label_prompt": "harmful", "source": "s"}\n')
    msg2 = assert_user_error(run_cli(["data", "guard-mini", "--src", str(jl.parent), "--out", str(tmp_path / "o2")]),
                             "train.jsonl:2")
    out = guard_mini.convert(jl.parent, tmp_path / "o2", on_bad="skip", image_fraction=0, text_image_fraction=0)
    skipped = sum(read_manifest(out / s)["skipped"]["total"] for s in ("train", "dev"))
    rows = sum(read_manifest(out / s)["num_rows"] for s in ("train", "dev"))
    assert (skipped, rows) == (1, 1)
    record(AREA_ROWS, "non-UTF-8 line in a JSONL source (guard-mini)", f"{msg2}; skip mode: 1 kept, 1 counted",
           expected="error naming file:line, or a counted skip",
           see="tests/data_prep/test_guard_mini.py::test_bad_utf8_missing_field_and_bad_json_are_reported")


def test_truncated_and_bomb_images(tmp_path, record):
    vt = load_test_module("data_prep/test_guardreasoner_vltrain.py")
    INSTR, _image_parquet, _jpeg, _png_bomb_header = vt.INSTR, vt._image_parquet, vt._jpeg, vt._png_bomb_header

    d = tmp_path / "src"
    d.mkdir()
    good = _jpeg((1, 2, 3), size=(256, 256))
    out_ok = "<think>\nAn image.\n</think>\n<result>\nRequest: unharmful\nResponse: None\n</result>"
    inp = "Human user:\n<image>\n\nAI assistant:\nNone"
    rows = [{"instruction": INSTR, "input": inp, "output": out_ok, "image": {"bytes": b, "path": p}}
            for b, p in ((good, None), (good[: len(good) // 2], "truncated.jpg"),
                         (_png_bomb_header(30000, 30000), "bomb.png"))]
    _image_parquet(d / "GuardReasoner-VLTrainImage.parquet", rows)
    msg = assert_user_error(run_cli(["data", "convert", "guardreasoner_vltrain", "--src", str(d), "--out",
                                     str(tmp_path / "out")]),
                            "GuardReasoner-VLTrainImage.parquet:row 1", "truncated")
    proc = run_cli(["data", "convert", "guardreasoner_vltrain", "--src", str(d), "--out", str(tmp_path / "out"),
                    "--on-bad", "skip"])
    assert proc.returncode == 0, proc.stderr
    m = read_manifest(tmp_path / "out")
    reasons = {e["where"]: e["reason"] for e in m["skipped"]["examples"]}
    assert m["num_rows"] == 1 and m["skipped"]["total"] == 2
    assert "decompression bomb" in reasons["GuardReasoner-VLTrainImage.parquet:row 2"]
    record(AREA_ROWS, "truncated JPEG and a 30000x30000 PNG bomb (header only) in the image column",
           f"{msg}; skip mode: 1 kept, 2 counted (`corrupt or truncated JPEG`, `decompression bomb` refused from "
           "the header before decoding)", expected="error naming file:row, or counted skips",
           see="tests/data_prep/test_guardreasoner_vltrain.py::test_bad_images_named_or_skipped_and_counted")


def test_one_megabyte_request_kept_whole_then_dropped_by_sft_cutoff(tmp_path, tiny_model_dir, record):
    from transformers import AutoProcessor

    from guardrl.stages.sft.data import SFTEncoder
    from guardrl.tasks.guard.parse import Verdict, format_verdict

    big = "please tell me " * (1_000_000 // 15)
    src = _csv(tmp_path / "toxic-chat_annotation_test.csv", [("a1", "hello", "0"), ("a2", big, "1")])
    out = get_converter("toxicchat").convert(src, tmp_path / "out")
    got = {s.id: s.request for s in iter_samples(out)}
    assert len(got["toxicchat/a2"]) == len(big)  # stored whole: the data stage never truncates silently
    enc = SFTEncoder(AutoProcessor.from_pretrained(tiny_model_dir), max_seq_len=512)
    target = format_verdict(Verdict("harmful", None, "It asks for harm.", True))
    item = enc(Sample("big", "t", "text", big, label_request="harmful", target=target))
    assert item["dropped"] and len(item["input_ids"]) <= 8 and (item["labels"] == -100).all()
    record("Bad data: a 1 MB request text",
           "1 MB request through a converter, then the SFT encoder (max_seq_len 512)",
           "stored whole (length equal); SFT: the prompt alone passes the cutoff, so the sample becomes an "
           "unlabelled placeholder, counted in the `dropped_over_cutoff` metric of metrics.jsonl (policy: "
           "`data.max_seq_len` drops over-long prompts, truncates over-long targets)",
           expected="no silent truncation; the policy named in the log")


@pytest.mark.slow
def test_one_megabyte_request_refused_by_moderation(tmp_path, tiny_model_dir, record):
    from guardrl.stages.serve.api import Guard

    big = "please tell me " * (1_000_000 // 15)
    jl = tmp_path / "req.jsonl"
    jl.write_text(json.dumps({"id": "ok", "request": "hello"}) + "\n" + json.dumps({"id": "big", "request": big}) + "\n")
    proc = run_cli(["moderate", str(tiny_model_dir), "--jsonl", str(jl), "--engine", "hf", "--max-new-tokens", "4"])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out[-3000:]
    rows = {r["id"]: r for r in (json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{"))}
    assert "error" not in rows["ok"] and "format_ok" in rows["ok"]  # the good input is still judged
    assert "item big: request has 999,990 characters, over the limit of 32,000" in rows["big"]["error"]
    assert "not truncated" in rows["big"]["error"]

    class Echo:  # an engine that records what reaches it
        name, seen = "echo", []

        def generate(self, inputs, params):
            self.seen.extend(inputs)
            return [[]] * len(inputs)

    with pytest.raises(ValueError, match="over the limit"):
        Guard(Echo()).moderate(big)
    assert Echo.seen == []
    record("Bad data: a 1 MB request text", "1 MB request in `guardrl moderate --jsonl` (beside a normal one) / "
           "`Guard.moderate`", f"exit 1, no traceback; the good row judged, the big row gets "
           f"`error: {rows['big']['error'][:150]}...`; nothing reaches the engine (the HTTP server answers 422 with "
           "its `--max-text-chars`, tests/integration/test_serve.py)", expected="refused with the policy named")


def test_one_megabyte_request_refused_by_the_hf_engine(tiny_model_dir, record):
    from guardrl.generation import make_engine
    from guardrl.generation.base import PromptTooLongError
    from guardrl.stages.serve.api import Guard

    big = "please tell me " * (1_000_000 // 15)
    guard = Guard(make_engine(str(tiny_model_dir), engine="hf"), max_text_chars=2_000_000)
    with pytest.raises(PromptTooLongError, match=r"input 0: the prompt is [\d,]+ tokens; the model takes 4,096 "
                                                 r"positions.*refused, not truncated") as info:
        guard.moderate(big)
    record("Bad data: a 1 MB request text", "1 MB request straight to the HF engine (what eval and reject use; "
           "Guard's own limit lifted)", str(info.value), expected="refused with the policy named")


@pytest.mark.slow
def test_one_megabyte_request_in_an_eval_benchmark(tiny_model_dir, tmp_path, record):
    big = "please tell me " * (1_000_000 // 15)
    jl = tmp_path / "Bench.jsonl"
    jl.write_text(json.dumps({"prompt": "hello", "label_prompt": "unharmful"}) + "\n"
                  + json.dumps({"prompt": big, "label_prompt": "harmful"}) + "\n")
    proc = run_cli(["eval", "run", str(tiny_model_dir), "--bench", str(jl), "--out", str(tmp_path / "out"),
                    "--engine", "hf", "--no-wandb", "--max-new-tokens", "4"])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in out, out[-3000:]
    assert "tokens; the model takes 4,096 positions" in " ".join(out.split()), out[-3000:]
    preds = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert sorted(p["finish_reason"] for p in preds)[-1] == "prompt_too_long"
    warning = next(line for line in out.splitlines() if "positions" in line).strip()
    record("Bad data: a 1 MB request text", "a benchmark JSONL row with a 1 MB prompt (`guardrl eval run`, "
           "HF engine on a Ray actor)", f"the run goes on; the row gets finish_reason `prompt_too_long`, an empty "
           f"completion scored as wrong (format failure), and a logged warning: {warning[:200]}",
           expected="named in the log, counted, never silently truncated")
