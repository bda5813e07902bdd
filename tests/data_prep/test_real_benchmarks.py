"""The converters on the files the benchmarks' authors publish (``../shared/data/real-benchmarks/`` beside the
repository, or ``$GUARDRL_REAL_BENCHMARKS``): the paper's counts, row-for-row agreement with GuardReasoner's
processed files, and the eval recipes' benchmark set. Evaluation data only: nothing here trains."""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from pathlib import Path

import pytest
import yaml

from data_prep import get_converter
from data_prep import guardreasoner_benchmark as gb
from guardrl.core.shards import iter_samples, read_manifest

REPO = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("GUARDRL_REAL_BENCHMARKS") or REPO.parent / "shared" / "data" / "real-benchmarks")
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"real benchmark files not found: {REAL} is missing "
                                "(set GUARDRL_REAL_BENCHMARKS to the folder; CI has it)")
PROCESSED = REAL / "guardreasoner-benchmark"

# converter, folder, processed file, (samples, harmful, unharmful, skipped) from PAPER.md's table and the
# real-benchmarks README: OpenAIModeration 1,680 = 522 + 1,158; SimpleSafetyTests 100 all harmful;
# HarmBenchPrompt 239 = the test CSV's 320 less its 81 contextual behaviours; HarmBenchResponse 602 = 273 + 329
RAW = {
    "openai_moderation": ("openai-moderation", "0_2_OpenAIModeration.json", (1680, 522, 1158, 0)),
    "simple_safety_tests": ("simple-safety-tests", "0_0_SimpleSafetyTests.json", (100, 100, 0, 0)),
    "harmbench_prompt": ("harmbench", "0_3_harmbench_prompt.json", (239, 239, 0, 81)),
    "harmbench_response": ("harmbench", "0_5_harmbench_response.json", (602, 273, 329, 0)),
}
# the processed files' label counts (real-benchmarks README = the paper's sample counts)
PROCESSED_COUNTS = {"SimpleSafetyTests": (100, 0), "AegisSafetyTest": (232, 127), "OpenAIModeration": (522, 1158),
                    "HarmBenchPrompt": (239, 0), "HarmBenchResponse": (273, 329), "XSTestResponseHarmful": (78, 368),
                    "ToxicChat": (362, 2491), "SafeRLHF": (1000, 1000), "BeaverTails": (1733, 1288)}
# PAPER.md, Evaluation: the sample count of each benchmark the real files cover
PAPER = {"ToxicChat": 2853, "OpenAIModeration": 1680, "AegisSafetyTest": 359, "SimpleSafetyTests": 100,
         "HarmBenchPrompt": 239, "HarmBenchResponse": 602, "SafeRLHF": 2000, "BeaverTails": 3021,
         "XSTestResponseHarmful": 446}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("real")
    return {name: get_converter(name).convert(REAL / folder, root / name) for name, (folder, _, _) in RAW.items()}


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    return gb.convert(PROCESSED, tmp_path_factory.mktemp("processed") / "guardreasoner")


def _label(s):
    return s.label_request if s.label_response is None else s.label_response


@pytest.mark.parametrize("name", sorted(RAW))
def test_raw_converter_gives_the_paper_count(name, converted):
    n, harmful, unharmful, skipped = RAW[name][2]
    m = read_manifest(converted[name])
    labels = [_label(s) for s in iter_samples(converted[name])]
    assert (len(labels), labels.count("harmful"), labels.count("unharmful")) == (n, harmful, unharmful)
    assert m["num_rows"] == n and m["skipped"]["total"] == skipped
    if name == "harmbench_prompt":  # the folder holds test, val and all: only the test CSV is read
        assert m["config"]["files"] == ["behavior_datasets/harmbench_behaviors_text_test.csv"]


def _fffd_rows_openai() -> set[int]:
    with gzip.open(REAL / "openai-moderation" / "samples-1680.jsonl.gz", "rt", encoding="utf-8") as fh:
        return {i for i, line in enumerate(fh, 1) if "\ufffd" in json.loads(line)["prompt"]}


def test_u_fffd_rows_are_kept_and_counted(converted):
    # the README's quirk list: lines 83, 690 and 1207 of the OpenAI file hold U+FFFD in valid UTF-8
    assert _fffd_rows_openai() == {83, 690, 1207}
    kept = {int(s.id.rsplit("/", 1)[-1]) for s in iter_samples(converted["openai_moderation"]) if "\ufffd" in s.request}
    assert kept == {83, 690, 1207}
    assert read_manifest(converted["openai_moderation"])["config"]["u_fffd"]["rows"] == 3
    # HarmBench's val set: counted independently from the raw JSON, per field
    data = json.loads((REAL / "harmbench" / "classifier_val_sets" / "text_behaviors_val_set.json").read_text("utf-8"))
    recs = [r for v in data.values() for r in v]
    want = {"request": sum(r["test_case"].count("\ufffd") for r in recs),
            "response": sum(r["generation"].count("\ufffd") for r in recs),
            "rows": sum("\ufffd" in r["test_case"] + r["generation"] for r in recs)}
    assert read_manifest(converted["harmbench_response"])["config"]["u_fffd"] == want


def test_processed_files_give_the_paper_counts(processed):
    m = read_manifest(processed)
    assert m["config"]["files_skipped"] == {"0_7_xstest_response_refusal.json": gb.REFUSAL_ONLY}
    got = {}
    for src, mods in m["counts"].items():
        task = "response" if gb.FILES[next(k for k, v in gb.FILES.items() if v and v[0] == src)][1] == "response" \
            else "request"
        c = mods["text"][task]
        got[src] = (c.get("harmful", 0), c.get("unharmful", 0))
    assert got == PROCESSED_COUNTS


@pytest.mark.parametrize("name", sorted(RAW))
def test_raw_and_processed_agree_row_for_row(name, converted, tmp_path):
    raw = list(iter_samples(converted[name]))
    ref = list(iter_samples(gb.convert(PROCESSED / RAW[name][1], tmp_path / "p")))
    assert len(raw) == len(ref)
    # matched by (request, response): a multiset, since some prompts repeat (10 in the OpenAI file)
    triples = Counter((s.request, s.response, _label(s)) for s in raw)
    assert triples == Counter((s.request, s.response, _label(s)) for s in ref)
    for a, b in zip(raw, ref, strict=True):  # and in the same order: row i is row i, same pair, same label
        assert (a.request, a.response) == (b.request, b.response), a.provenance["where"]
        assert _label(a) == _label(b), a.provenance["where"]
        assert (a.label_request is None) == (b.label_request is None)


def _readme_commands(out_root: Path) -> None:
    """Fill ``outputs/benchmarks/<Name>`` the way the README's benchmark table does, for what the real files cover."""
    dest = out_root / "outputs" / "benchmarks"
    for name, (folder, _, _) in RAW.items():
        mod = get_converter(name)
        mod.convert(REAL / folder, dest / mod.BENCH.dataset)
    for name, file in (("ToxicChat", "0_8_toxic_chat.json"), ("AegisSafetyTest", "0_1_AegisSafetyTest.json"),
                       ("SafeRLHF", "0_9_safe_rlhf.json"), ("BeaverTails", "0_A_beaver_tails.json"),
                       ("XSTestResponseHarmful", "0_6_xstest_response_harmful.json")):
        gb.convert(PROCESSED / file, dest / name)


@pytest.mark.parametrize("size", ["3b", "7b"])
def test_eval_recipe_benchmarks_load_with_the_paper_counts(size, tmp_path, monkeypatch):
    from guardrl.stages.eval.data import load_benchmarks

    section = yaml.safe_load((REPO / "recipes" / f"qwen2_5_vl_{size}" / "eval.yaml").read_text())["eval"]
    _readme_commands(tmp_path)
    monkeypatch.chdir(tmp_path)  # the recipe's paths are relative to where `guardrl eval run` starts
    present = [p for p in section["benchmarks"] if Path(p).is_dir()]
    assert {Path(p).name for p in present} == set(PAPER)  # the Hub-only image sets and WildGuardTest are absent here
    sets = load_benchmarks(present)
    assert {k: len(v) for k, v in sets.items()} == PAPER
    assert {k: section["expected_samples"][k] for k in PAPER} == PAPER
