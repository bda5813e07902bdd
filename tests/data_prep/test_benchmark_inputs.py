"""The converters' input rules on small files in the authors' layouts: U+FFFD is data, undecodable bytes and
truncated gzip are errors naming the file, a folder with several splits/versions reads the paper's one,
``--src hf:<id>`` fails clearly offline."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep import get_converter
from data_prep.common import SourceFileError
from guardrl.core.schema import SchemaError
from guardrl.core.shards import BadInputError, iter_samples, read_manifest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "benchmarks"


def _jsonl_gz(path: Path, lines: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(b"".join(line + b"\n" for line in lines)))
    return path


def _flags(prompt: str, **flags) -> bytes:
    return json.dumps({"prompt": prompt, **flags}, ensure_ascii=False).encode()


def test_u_fffd_in_valid_utf8_is_data_counted_in_manifest(tmp_path):
    src = _jsonl_gz(tmp_path / "om" / "samples-1680.jsonl.gz", [
        _flags("plain text", S=0, H=0, V=0, HR=0, SH=0, S3=0, H2=0, V2=0),
        _flags("the authors\u2019 text with \ufffd and \ufffd", S=1),   # two U+FFFD, valid UTF-8 (EF BF BD)
        _flags("one more \ufffd", H=0),                                   # missing flags count as 0
    ])
    out = get_converter("openai_moderation").convert(src.parent, tmp_path / "out")
    got = [(s.request, s.label_request) for s in iter_samples(out)]
    assert got[1] == ("the authors\u2019 text with \ufffd and \ufffd", "harmful")
    assert got[2] == ("one more \ufffd", "unharmful")
    # 3 characters in 2 rows, all in the request
    assert read_manifest(out)["config"]["u_fffd"] == {"request": 3, "rows": 2}


def test_undecodable_bytes_name_file_and_line(tmp_path):
    src = _jsonl_gz(tmp_path / "om" / "samples-1680.jsonl.gz",
                    [_flags("fine", S=0), b'{"prompt": "caf\xe9", "S": 1}'])  # Latin-1 e-acute: not UTF-8
    with pytest.raises(BadInputError, match=r"samples-1680.jsonl.gz:2"):
        get_converter("openai_moderation").convert(src.parent, tmp_path / "out")
    out = get_converter("openai_moderation").convert(src.parent, tmp_path / "out", on_bad="skip")
    m = read_manifest(out)
    assert (m["num_rows"], m["skipped"]["total"]) == (1, 1)


def test_truncated_gzip_is_an_error_in_both_modes(tmp_path):
    src = _jsonl_gz(tmp_path / "om" / "samples-1680.jsonl.gz",
                    [_flags(f"row {i} " + "x" * 200, S=i % 2) for i in range(200)])
    src.write_bytes(src.read_bytes()[:-300])  # cut the stream (and its end marker)
    for on_bad in ("error", "skip"):  # lost rows are never a silent, counted skip
        with pytest.raises(SourceFileError, match=r"samples-1680.jsonl.gz: truncated or corrupt gzip after line"):
            get_converter("openai_moderation").convert(src.parent, tmp_path / "out", on_bad=on_bad)
    assert not (tmp_path / "out").exists()
    r = subprocess.run([sys.executable, "-m", "data_prep.openai_moderation", "--src", str(src.parent), "--out",
                        str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "error: samples-1680.jsonl.gz: truncated or corrupt gzip" in r.stderr


def test_harmbench_folder_reads_the_test_split_only(tmp_path):
    root = tmp_path / "hb"
    shutil.copytree(FIXTURES / "harmbench", root)
    d = root / "data" / "behavior_datasets"
    # `all` = test + val, as upstream: reading it too would duplicate every id
    (d / "harmbench_behaviors_text_all.csv").write_text(
        (d / "harmbench_behaviors_text_test.csv").read_text()
        + "".join((d / "harmbench_behaviors_text_val.csv").read_text().splitlines(keepends=True)[1:]))
    out = get_converter("harmbench_prompt").convert(root, tmp_path / "out")
    m = read_manifest(out)
    assert m["config"]["files"] == ["data/behavior_datasets/harmbench_behaviors_text_test.csv"]
    assert (m["num_rows"], m["skipped"]["total"]) == (2, 1)  # standard + copyright kept, contextual skipped


def test_toxicchat_folder_with_both_versions_reads_0124(tmp_path):
    root = tmp_path / "tc"
    shutil.copytree(FIXTURES / "toxicchat", root)
    old = root / "data" / "1123"
    old.mkdir()
    shutil.copy(root / "data" / "0124" / "toxic-chat_annotation_test.csv", old / "toxic-chat_annotation_test.csv")
    out = get_converter("toxicchat").convert(root, tmp_path / "out")
    assert read_manifest(out)["config"]["files"] == ["data/0124/toxic-chat_annotation_test.csv"]
    assert read_manifest(out)["num_rows"] == 2


@pytest.mark.parametrize("name,repo", [("toxicchat", "lmsys/toxic-chat"), ("xstest_response", "allenai/xstest-response"),
                                       ("harmimagetest", "yueliu1999/GuardReasoner-VLTest")])
def test_hf_source_is_parsed_and_fails_clearly_offline(name, repo, tmp_path):
    pytest.importorskip("guardrl")
    mod = get_converter(name)
    assert mod.BENCH.hub is not None and mod.BENCH.hub.repo == repo
    try:
        mod.convert(f"hf:{repo}", tmp_path / "out")
    except SourceFileError as exc:  # no `datasets` / `huggingface_hub`, or no network: one message naming the source
        assert f"hf:{repo}" in str(exc) and ("pip install" in str(exc) or "cannot" in str(exc))
    else:  # a machine with the package and network converted it
        assert read_manifest(tmp_path / "out")["num_rows"] > 0


def test_hf_source_cli_and_local_only_sets(tmp_path):
    r = subprocess.run([sys.executable, "-m", "data_prep.toxicchat", "--src", "hf:lmsys/toxic-chat", "--out",
                        str(tmp_path / "o")], cwd=REPO, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        assert r.returncode == 2 and "error: hf:lmsys/toxic-chat" in r.stderr
    with pytest.raises(SchemaError, match="OpenAIModeration has no Hub source"):
        get_converter("openai_moderation").convert("hf:openai/moderation", tmp_path / "x")


def test_no_training_recipe_reads_evaluation_benchmarks():
    # the benchmark folders (converted or real) serve eval only; training stays on guard-mini / VLTrain
    hits = [f"{p.relative_to(REPO)}: {line.strip()}" for p in sorted((REPO / "recipes").rglob("*.yaml"))
            if p.stem.split("_")[0] in ("sft", "rl", "reject", "augment")  # the stages that make training data
            for line in p.read_text().splitlines()
            if not line.lstrip().startswith("#") and ("real-benchmarks" in line or "outputs/benchmarks" in line
                                                     or "guardreasoner-benchmark" in line)]
    assert hits == []
