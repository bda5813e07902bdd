"""guard-mini converter: split, typographic variants, synthetic targets, bad input, kill -9 + rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_prep import guard_mini
from guardrl.core.images import decode_image
from guardrl.core.shards import BadInputError, ShardError, iter_samples, read_manifest, split_names
from guardrl.tasks.guard.parse import parse

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gm") / "guard-mini"
    return guard_mini.convert(REPO / "data" / "guard-mini", out, limit=400)


def _rows(out: Path) -> dict[str, list]:
    return {s: list(iter_samples(out, split=s)) for s in split_names(out)}


def test_split_is_deterministic_and_variants_stay_with_their_row(converted, tmp_path):
    rows = _rows(converted)
    train_ids = {s.id for s in rows["train"]}
    dev_ids = {s.id for s in rows["dev"]}
    assert not train_ids & dev_ids and 10 < len(dev_ids) < len(train_ids)
    base = lambda i: i.removesuffix("-img").removesuffix("-ti").removesuffix("-req").removesuffix("-br")  # noqa: E731
    assert not {base(i) for i in train_ids} & {base(i) for i in dev_ids}
    again = guard_mini.convert(REPO / "data" / "guard-mini", tmp_path / "again", limit=400)
    assert _rows(again) == rows


def test_variants_put_the_harm_in_the_image(converted):
    rows = [s for split in _rows(converted).values() for s in split]
    by_id = {s.id: s for s in rows}
    mods = {s.modality for s in rows}
    assert mods == {"text", "image", "text_image"}
    for s in rows:
        if s.modality == "text":
            continue
        src = by_id[s.id.rsplit("-", 1)[0]]
        assert (s.label_request, s.label_response, s.response) == (src.label_request, src.label_response, src.response)
        assert src.request not in s.request  # the request text is only in the image
        if s.modality == "image":
            assert s.request == ""
        else:
            assert s.request in guard_mini.NEUTRAL_INSTRUCTIONS
        img = decode_image(s.images[0], where=s.id)
        assert img.format == "PNG" and s.provenance["typographic"]["font"]


def test_targets_and_null_request_labels(converted):
    rows = [s for split in _rows(converted).values() for s in split]
    nulls = [s for s in rows if s.label_request is None]
    assert nulls and all(s.target is None and s.label_response for s in nulls)
    for s in rows:
        if s.label_request is None:
            continue
        v = parse(s.target)
        assert v.format_ok and v.request == s.label_request and v.response == s.label_response
        assert s.provenance["target_kind"] == "synthetic-template-v2"
    m = read_manifest(converted / "train")
    assert m["config"]["converter"] == "guard_mini" and m["skipped"]["total"] == 0


def test_request_only_variants_take_the_label_out_of_response_presence(converted, tmp_path):
    rows = [s for split in _rows(converted).values() for s in split]
    by_id = {s.id: s for s in rows}
    req = [s for s in rows if s.id.endswith("-req")]
    src = [by_id[s.id.removesuffix("-req")] for s in req]
    assert {s.label_request for s in req} == {"harmful", "unharmful"}  # both classes get a copy
    for r, s in zip(req, src, strict=True):
        assert r.response is None and r.label_response is None and s.response is not None
        assert (r.request, r.label_request, r.modality) == (s.request, s.label_request, "text")
        assert r.provenance["variant"] == "request-only" and parse(r.target).response is None
    # every labelled text row with a response has a copy, unless its request text already got one in its split
    with_resp = [s for s in rows if s.modality == "text" and s.response is not None and s.label_request
                 and s.provenance["variant"] == "text"]
    assert len(req) == len({(s.id in {d.id for d in _rows(converted)["dev"]}, " ".join(s.request.lower().split()))
                            for s in with_resp})
    plain = guard_mini.convert(REPO / "data" / "guard-mini", tmp_path / "plain", limit=400, request_only=False)
    assert not [s for split in _rows(plain).values() for s in split if s.id.endswith("-req")]


def test_borrowed_responses_make_the_answer_independent_of_the_request_label(tmp_path):
    out = guard_mini.convert(REPO / "data" / "guard-mini", tmp_path / "all")
    rows = _rows(out)
    train = {s.id: s for s in rows["train"]}
    assert not [s for s in rows["dev"] if s.id.endswith("-br")]  # dev stays as published
    borrowed = [s for s in train.values() if s.id.endswith("-br")]
    for b in borrowed:
        base, lender = train[b.id.removesuffix("-br")], train[b.provenance["borrowed_from"]]
        assert base.response is None and (b.request, b.label_request, b.modality) == (base.request, base.label_request, "text")
        assert (b.response, b.label_response) == (lender.response, lender.label_response)
        v = parse(b.target)
        assert (v.request, v.response) == (b.label_request, b.label_response)
    bare = [s for s in train.values() if s.provenance["variant"] == "text" and s.response is None and s.label_request]
    assert 0.15 < len(borrowed) / len(bare) < 0.25  # the default fraction, 0.2
    for label in ("harmful", "unharmful"):  # about half the answers harmful, whichever the request's class
        of = [b for b in borrowed if b.label_request == label]
        assert len(of) > 40 and 0.35 < sum(b.label_response == "harmful" for b in of) / len(of) < 0.65, label
    none = guard_mini.convert(REPO / "data" / "guard-mini", tmp_path / "none", limit=400, borrowed_responses=0)
    assert not [s for split in _rows(none).values() for s in split if s.id.endswith("-br")]


def _write(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for r in rows:
            fh.write(r if isinstance(r, bytes) else (json.dumps(r) + "\n").encode())
    return path


def _rec(i, **kw):
    return {"id": f"x{i}", "prompt": f"question {i}", "response": None, "label_prompt": "unharmful",
            "label_response": None, "source": "S", "license": "MIT", "label_basis": "dataset", "category": "c", **kw}


def test_label_normalised_and_unknown_label_names_the_row(tmp_path):
    src = _write(tmp_path / "a" / "train.jsonl", [_rec(1, label_prompt="Harmful "), _rec(2, label_prompt="maybe")])
    with pytest.raises(BadInputError, match=r"train.jsonl:2: label_prompt: unknown label 'maybe'"):
        guard_mini.convert(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    out = guard_mini.convert(src, tmp_path / "out", on_bad="skip", dev_fraction=0.0)
    rows = list(iter_samples(out, split="train"))
    assert [s.label_request for s in rows if s.modality == "text"] == ["harmful"]
    sk = read_manifest(out / "train")["skipped"]
    assert sk["total"] == 1 and sk["examples"][0]["where"] == "train.jsonl:2"


def test_bad_utf8_missing_field_and_bad_json_are_reported(tmp_path):
    src = _write(tmp_path / "b" / "train.jsonl", [
        _rec(1),
        b'{"id": "x2", "prompt": "caf\xe9"}\n',
        {k: v for k, v in _rec(3).items() if k != "prompt"},
        b"{not json\n",
    ])
    with pytest.raises(BadInputError, match=r"train.jsonl:2: .*JSON"):
        guard_mini.convert(src, tmp_path / "out")
    out = guard_mini.convert(src, tmp_path / "out", on_bad="skip")
    m = read_manifest(out / "train")
    assert m["skipped"]["total"] == 3
    assert {e["where"] for e in m["skipped"]["examples"]} == {"train.jsonl:2", "train.jsonl:3", "train.jsonl:4"}
    assert any("missing field 'prompt'" in e["reason"] for e in m["skipped"]["examples"])


def test_kill_minus_9_leaves_nothing_a_reader_accepts_and_rerun_completes(tmp_path):
    out = tmp_path / "gm"
    cmd = [sys.executable, "-m", "data_prep.guard_mini", "--out", str(out), "--max-shard-bytes", "20000"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 120
    try:
        while time.time() < deadline:  # wait until at least one shard has been renamed into the temp dir
            if list(tmp_path.glob(".gm.*.tmp/train/part-*.parquet")):
                break
            assert proc.poll() is None, "converter ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("no shard appeared")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with pytest.raises(ShardError):
        read_manifest(out)
    leftovers = list(tmp_path.glob(".gm.*.tmp"))
    assert leftovers and not (leftovers[0] / "manifest.json").exists()
    with pytest.raises(ShardError):  # the half-written temp dir itself is refused too
        read_manifest(leftovers[0] / "train")
    subprocess.run([*cmd, "--limit", "50"], cwd=REPO, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    assert split_names(out) == ["train", "dev"]
    assert sum(read_manifest(out / s)["num_rows"] for s in ("train", "dev")) >= 50
    assert not list(tmp_path.glob(".gm.*.tmp"))  # the stale temp dir of the killed run is gone
