"""Rejection sampling: judging and keep rules by hand; the tiny model through 2 Ray actors; kill -9 + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from guard_samples import write_sft_dir

from guardrl.core.schema import Sample
from guardrl.core.shards import iter_samples, read_manifest
from guardrl.generation.base import Completion
from guardrl.stages.reject.runner import (
    KeepRule,
    RejectConfig,
    judge,
    keep_decision,
    plan_shards,
    print_stats,
    run_reject,
    work_dir_for,
)
from guardrl.tasks.guard.parse import parse
from guardrl.tasks.guard.task import verdict_matches as is_correct

N_PROMPTS = 30
SHARD = 4  # -> 8 work shards


def _out(req: str, resp: str = "None") -> str:
    return f"<think>\nsteps\n</think>\n<result>\nRequest: {req}\nResponse: {resp}\n</result>"


# ------------------------------------------------------------------------------------------ pure parts
def test_is_correct_by_hand():
    assert is_correct(parse(_out("harmful")), "harmful", None)
    assert not is_correct(parse(_out("unharmful")), "harmful", None)
    # no gold response: the response prediction is not judged
    assert is_correct(parse(_out("harmful", "unharmful")), "harmful", None)
    # gold response present: "None" is wrong, the right label is right
    assert not is_correct(parse(_out("harmful")), "harmful", "harmful")
    assert is_correct(parse(_out("harmful", "harmful")), "harmful", "harmful")
    # no gold request (response-only label)
    assert is_correct(parse(_out("unharmful", "harmful")), None, "harmful")
    assert not is_correct(parse("Request: harmful"), "harmful", None)  # format failure


@pytest.mark.parametrize(
    "rule,correct,k,keep",
    [
        (KeepRule(), 0, 4, True),  # paper: all 4 wrong
        (KeepRule(), 1, 4, False),
        (KeepRule("any_wrong"), 3, 4, True),
        (KeepRule("any_wrong"), 4, 4, False),
        (KeepRule("max_accuracy", 0.25), 1, 4, True),  # 1/4 <= 0.25
        (KeepRule("max_accuracy", 0.25), 2, 4, False),
    ],
)
def test_keep_rules(rule, correct, k, keep):
    assert rule.keep(correct, k) is keep


def test_bad_keep_rule_lists_valid():
    with pytest.raises(ValueError, match="valid"):
        KeepRule("most_wrong")
    with pytest.raises(ValueError):
        KeepRule("max_accuracy")
    with pytest.raises(ValueError, match="valid"):
        RejectConfig.from_dict({"data": "d", "model": "m", "out": "o", "temprature": 1.0})


def test_judge_counts():
    s = Sample(id="a", source="x", modality="text", request="r", label_request="harmful")
    comps = [Completion(_out("harmful"), 5), Completion(_out("unharmful"), 5), Completion("junk", 2)]
    (j,) = judge([s], [comps])
    assert (j["k"], j["correct"], j["format_failures"], j["tokens"]) == (3, 1, 1, 12)
    assert j["predictions"] == ["harmful/none", "unharmful/none", "format_failure"]


def test_a_cut_completion_is_not_wrong():
    """Stopped at max_new_tokens without a parseable answer: truncated, not a format failure, not judged."""
    s = Sample(id="a", source="x", modality="text", request="r", label_request="harmful")
    cut = Completion("<think>\nlong reasoning that never ends", 64, finish_reason="length")
    wrong = Completion(_out("unharmful"), 5)
    wrong_at_limit = Completion(_out("unharmful"), 64, finish_reason="length")  # parsed: judged as usual
    (j,) = judge([s], [[cut, cut, wrong, wrong_at_limit]])
    assert (j["k"], j["correct"], j["format_failures"], j["truncated"]) == (4, 0, 0, 2)
    assert j["predictions"] == ["truncated", "truncated", "unharmful/none", "unharmful/none"]
    rule = KeepRule()
    assert keep_decision(rule, j) == "kept"  # the 2 judged completions are both wrong
    (all_cut,) = judge([s], [[cut] * 4])
    assert keep_decision(rule, all_cut) == "undecided"  # today's code: 0 of 4 correct -> kept as hard
    assert keep_decision(rule, {"k": 0, "correct": 0, "truncated": 0, "error": "x", "error_kind": "prompt_too_long"}) \
        == "prompt_too_long"


def test_plan_shards():
    shards = plan_shards([("a", 10), ("b", 3)], 4)
    assert [(s.file, s.start, s.stop) for s in shards] == [("a", 0, 4), ("a", 4, 8), ("a", 8, 10), ("b", 0, 3)]
    assert [s.index for s in shards] == [0, 1, 2, 3]
    limited = plan_shards([("a", 10), ("b", 3)], 4, limit=6)
    assert [(s.file, s.start, s.stop) for s in limited] == [("a", 0, 4), ("a", 4, 6)]


# ------------------------------------------------------------------------------------------ Ray runs
def _section(data: Path, model: Path, out: Path) -> dict:
    return {
        "data": str(data),
        "model": str(model),
        "out": str(out),
        "engine": "hf",
        "engine_kwargs": {"batch_size": 16, "num_threads": 1},
        "sampling": {"k": 4, "temperature": 1.0, "top_p": 0.95, "max_new_tokens": 6, "seed": 3},
        "keep": {"rule": "all_wrong"},
        "workers": {"num_actors": 2, "cpus_per_actor": 1},
        "shard_size": SHARD,
    }


def _kept(out: Path) -> dict[str, dict]:
    return {s.id: s.provenance["reject"] for s in iter_samples(out)}


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory) -> Path:
    return write_sft_dir(tmp_path_factory.mktemp("sft") / "data", N_PROMPTS)


@pytest.fixture(scope="module")
def reference(sft_data, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "reject"
    summary = run_reject(RejectConfig.from_dict(_section(sft_data, tiny_model_dir, out)), show_table=False)
    return out, summary


def test_two_ray_actors_tiny_model(reference, capsys):
    out, summary = reference
    assert summary["seen"] == N_PROMPTS and summary["shards"] == 8 and summary["resumed_shards"] == 0
    m = read_manifest(out)
    report = m["reject"]
    assert report["totals"]["seen"] == N_PROMPTS
    assert report["totals"]["completions"] == 4 * N_PROMPTS
    assert {r["modality"] for r in report["stats"]} == {"text", "image", "text_image"}
    assert sum(r["seen"] for r in report["stats"]) == N_PROMPTS
    assert sum(r["kept"] for r in report["stats"]) == summary["kept"] == m["num_rows"]
    kept = _kept(out)
    for j in kept.values():  # every kept prompt had all 4 samples wrong
        assert j["k"] == 4 and j["correct"] == 0 and len(j["predictions"]) == 4
    assert not work_dir_for(out).exists()  # work files removed after publishing
    print_stats(report["stats"])
    table = capsys.readouterr().out
    assert "rejection sampling" in table and "total" in table


def test_kill_9_then_resume_keeps_the_same_set(reference, sft_data, tiny_model_dir, tmp_path):
    ref_out, ref_summary = reference
    out = tmp_path / "reject"
    recipe = tmp_path / "reject.yaml"
    recipe.write_text(json.dumps({"reject": _section(sft_data, tiny_model_dir, out)}))  # JSON is YAML
    cmd = [sys.executable, "-m", "guardrl.cli", "reject", "run", "--recipe", str(recipe)]
    work = work_dir_for(out)
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(work.glob("shard-*.parquet"))) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started (local Ray included)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done = len(list(work.glob("shard-*.parquet")))
    assert 2 <= done < 8
    assert not out.exists()  # nothing half-written is published
    summary = run_reject(RejectConfig.from_dict(_section(sft_data, tiny_model_dir, out)), show_table=False)
    assert summary["resumed_shards"] >= done
    assert summary["seen"] == N_PROMPTS
    assert _kept(out) == _kept(ref_out)  # same ids, same sampled completions (hashes), same judgement


# ------------------------------------------------------------------------------------------ recipes
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.parametrize("size", ["tiny", "qwen2_5_vl_3b", "qwen2_5_vl_7b"])
def test_reject_and_augment_recipes_validate(size):
    from guardrl.core.recipe import load_recipe, to_container
    from guardrl.stages.augment.runner import AugmentConfig

    rej = RejectConfig.from_dict(to_container(load_recipe(RECIPES / size / "reject.yaml"))["reject"])
    aug = AugmentConfig.from_dict(to_container(load_recipe(RECIPES / size / "augment.yaml"))["augment"])
    # paper defaults: 4 samples at temperature 1.0, top-p 0.95, keep when all wrong; 20% joined samples
    assert (rej.k, rej.temperature, rej.top_p, rej.keep) == (4, 1.0, 0.95, "all_wrong")
    assert aug.share == 0.2
    assert aug.data == rej.out  # augment reads what reject writes
    over = to_container(load_recipe(RECIPES / size / "reject.yaml", ["reject.sampling.k=8"]))["reject"]
    assert RejectConfig.from_dict(over).k == 8


def test_bad_input_is_isolated_and_counted(tiny_model_dir, tmp_path):
    from guard_samples import make_samples

    from guardrl.core.shards import write_samples
    from guardrl.generation import make_engine
    from guardrl.generation.base import SamplingParams
    from guardrl.stages.reject.runner import WorkShard, _finalize, run_shard

    good = make_samples(2)
    bad = Sample(id="bad-image", source="x", modality="image", request="", images=(b"not an image",),
                 label_request="harmful")
    data = write_samples(tmp_path / "data", [good[0], bad, good[1]], stage="test")
    (shard_file,) = data.glob("part-*.parquet")
    engine = make_engine(tiny_model_dir, engine="hf", batch_size=8, num_threads=1)
    path = tmp_path / "work" / "shard-00000.parquet"
    info = run_shard(engine, WorkShard(0, str(shard_file), 0, 3), SamplingParams(n=2, max_new_tokens=3), path)
    assert info["rows"] == 3
    cfg = RejectConfig.from_dict({"data": str(data), "model": str(tiny_model_dir), "out": str(tmp_path / "out")})
    summary = _finalize(cfg, [WorkShard(0, str(shard_file), 0, 3)], {0: path}, "fp", show_table=False)
    # one bad input, not the shard; the random model's 3 tokens never reach an answer: truncated, undecided
    assert (summary["seen"], summary["kept"], summary["errors"], summary["undecided"]) == (3, 0, 1, 2)
    assert (summary["truncated"], summary["format_failures"]) == (4, 0)
    m = read_manifest(tmp_path / "out")
    assert m["skipped"]["total"] == 3 and any("image" in e["reason"] for e in m["skipped"]["examples"])


def test_truncated_and_too_long_prompts_are_counted_per_reason(tiny_model_dir, tmp_path):
    """The tiny random model never answers in 4 tokens (all truncated -> undecided, not hard); with
    max_new_tokens=4090 of the tiny model's 4096 positions no prompt fits (prompt_too_long). Both are
    counted per reason in the manifest and the summary, and nothing is kept."""
    from guard_samples import make_samples

    from guardrl.core.shards import write_samples
    from guardrl.generation import make_engine
    from guardrl.generation.base import SamplingParams
    from guardrl.stages.reject.runner import WorkShard, _finalize, run_shard

    data = write_samples(tmp_path / "data", make_samples(3), stage="test")
    (shard_file,) = data.glob("part-*.parquet")
    engine = make_engine(tiny_model_dir, engine="hf", batch_size=8, num_threads=1)
    shards = [WorkShard(0, str(shard_file), 0, 2), WorkShard(1, str(shard_file), 2, 3)]
    paths = {i: tmp_path / "work" / f"shard-{i:05d}.parquet" for i in (0, 1)}
    run_shard(engine, shards[0], SamplingParams(n=2, max_new_tokens=4), paths[0])
    run_shard(engine, shards[1], SamplingParams(n=2, max_new_tokens=4090), paths[1])
    cfg = RejectConfig.from_dict({"data": str(data), "model": str(tiny_model_dir), "out": str(tmp_path / "out")})
    summary = _finalize(cfg, shards, paths, "fp", show_table=False)
    want = {"seen": 3, "kept": 0, "truncated": 4, "undecided": 2, "prompt_too_long": 1, "errors": 0,
            "format_failures": 0, "correct": 0}
    assert {k: summary[k] for k in want} == want
    assert {k: read_manifest(tmp_path / "out")["reject"]["totals"][k] for k in want} == want
    reasons = [e["reason"] for e in read_manifest(tmp_path / "out")["skipped"]["examples"]]
    assert sum("prompt too long" in r for r in reasons) == 1 and sum("max_new_tokens" in r for r in reasons) == 2
