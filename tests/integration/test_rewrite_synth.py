"""Rewriter data synthesis: stage checks by hand; the templated teacher through 2 Ray actors; a teacher that
returns garbage for some prompts (counted, retried with a new seed, skipped); kill -9 + resume gives the same
output; the OpenAI-compatible teacher against a real ``serve-chat`` app on 127.0.0.1; the recipes validate."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from guardrl.core.schema import Sample
from guardrl.core.shards import read_manifest, write_samples
from guardrl.generation.base import Completion, Prompt, SamplingParams
from guardrl.stages.rewrite.synth import SynthConfig, check_stage, run_synth, synth_samples, work_dir_for
from guardrl.tasks import get_task

HERE = Path(__file__).parent
FLAKY = f"{HERE / 'rewrite_teachers.py'}:FlakyTeacher"
N = 12


def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="PNG")
    return buf.getvalue()


def _samples() -> list[Sample]:
    """VLGuard-like rows: safe + unsafe references (pair), one reference, none; harmful and benign; images."""
    out = []
    for i in range(N):
        refs = [{"safe": "I can't help with that; here is safety advice.", "unsafe": "Sure, step one is ..."},
                {"safe": "Here is a helpful, harmless answer.", "unsafe": None}, {}][i % 3]
        harmful = i % 2 == 0
        image = i % 4 != 3
        out.append(Sample(
            id=f"vlguard-{i:02d}" + ("x" if i == 5 else ""), source="vlguard_train",
            modality="text_image" if image else "text", request=f"What does the picture show, number {i}?",
            images=(_png((i * 20, 0, 0)),) if image else (), label_request="harmful" if harmful else "unharmful",
            provenance={"reference_responses": refs, "category": "Privacy" if harmful else None,
                        "subcategory": "personal data" if harmful else None}))
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    return write_samples(tmp_path_factory.mktemp("src") / "sources", _samples(), stage="test.rewrite_sources")


def _section(data: Path, out: Path, kind: str = "templated", **kw) -> dict:
    return {"task": "rewrite", "data": str(data), "split": None,
            "out": str(out), "teacher": {"kind": kind, "name": "t"}, "shard_size": 2,
            "workers": {"num_actors": 2, "cpus_per_actor": 1}, "keep_work": False, **kw}


def _rows(out: Path) -> list[tuple]:
    return sorted((r["id"], r["target"], r["provenance"]) for f in sorted(out.glob("part-*.parquet"))
                  for r in pq.read_table(f).to_pylist())


# ------------------------------------------------------------------------------------------ pure checks
@pytest.mark.parametrize("stage, text, finish, ok", [
    ("hindsight", "The unsafe answer gives instructions.", "stop", True),
    ("hindsight", "<think>weighing it</think>The unsafe answer gives instructions.", "stop", True),
    ("hindsight", "too short", "stop", False),                                   # 9 < 20 characters
    ("risk", "The image carries it, see </rewrite> here", "stop", False),        # a reserved tag
    ("risk", "A long enough answer that was cut off mid", "length", False),      # cut at max_new_tokens
    ("optimise", "Keep the intent, drop the harm.\nRewritten prompt: Explain the risks.", "stop", True),
    ("optimise", "Keep the intent, drop the harm. Explain the risks.", "stop", False),  # no marker
    ("optimise", "Keep the intent, drop the harm.\nRewritten prompt:   ", "stop", False),  # empty rewrite
])
def test_check_stage_by_hand(stage, text, finish, ok):
    parts, why = check_stage(stage, Completion(text, 1, finish_reason=finish), min_chars=20)
    assert (parts is not None) == ok and (why is None) == ok
    if ok and stage == "optimise":
        assert parts == {"optimise": "Keep the intent, drop the harm.", "rewrite": "Explain the risks."}


def test_garbage_is_counted_retried_and_skipped():
    from guardrl.stages.rewrite.teachers import make_teacher

    task = get_task("rewrite")
    samples = _samples()
    teacher = make_teacher(FLAKY)
    teacher.DELAY = 0
    recs, bad = synth_samples(teacher, task, samples, SamplingParams(seed=3), index=0, retries=2)
    by_id = {s.id: r for s, r in zip(samples, recs, strict=True)}
    always_bad = by_id["vlguard-05x"]  # garbage whatever the seed: 3 attempts at stage 1, then skipped
    assert always_bad["attempts"] == {"hindsight": 3} and "target" not in always_bad
    assert always_bad["error"].startswith("hindsight: ") and "(after 3 attempts)" in always_bad["error"]
    kept = [r for r in recs if "target" in r]
    retried = [r for r in kept if max(r["attempts"].values()) > 1]
    assert kept and retried  # some needed a new seed and then passed
    for r in kept:  # never a garbage part in a kept target
        assert task.parse(r["target"]).format_ok
        assert r["parts"]["hindsight"] not in ("ok",) and "<rewrite>" not in r["parts"]["risk"]
    assert sum(bad.values()) == sum(len(r["refused"]) for r in recs) >= 3
    assert set(k.split(":")[0] for k in bad) <= {"hindsight", "risk", "optimise"}


# ------------------------------------------------------------------------------------------ on Ray
@pytest.fixture(scope="module")
def reference(sources, tmp_path_factory):
    """An uninterrupted run with the flaky teacher (work shards kept for the kill test to compare against)."""
    out = tmp_path_factory.mktemp("ref") / "synth"
    summary = run_synth(SynthConfig.from_dict(_section(sources, out, FLAKY)))
    return out, summary


def test_templated_two_actors_end_to_end(sources, tmp_path):
    out = tmp_path / "synth"
    summary = run_synth(SynthConfig.from_dict(_section(sources, out)))
    assert (summary["seen"], summary["written"], summary["skipped"]) == (N, N, 0)
    assert summary["hindsight_modes"] == {"pair": 4, "single": 4, "inferred": 4}
    task = get_task("rewrite")
    man = read_manifest(out)
    assert man["num_rows"] == N and man["rewrite_synth"]["written"] == N
    for f in sorted(out.glob("part-*.parquet")):
        for row in pq.read_table(f).to_pylist():
            s = Sample.from_row(row)
            prov = s.provenance
            assert prov["synthetic"] is True and prov["synth"]["teacher"] == "t"
            parsed = task.parse(s.target)
            assert parsed.format_ok and parsed.rewrite == prov["synth"]["parts"]["rewrite"]
            if s.label_request == "unharmful":  # the benign prompt is kept as it is
                assert parsed.rewrite == s.request
            else:
                assert "personal data" in parsed.output.hindsight
            assert prov["reference_responses"] is not None  # source provenance kept
    assert not work_dir_for(out).exists()


def test_kill_9_then_resume_gives_the_same_output(reference, sources, tmp_path):
    ref_out, ref_summary = reference
    assert 0 < ref_summary["written"] < N and ref_summary["skipped"] >= 1  # vlguard-05x at least
    out = tmp_path / "synth"
    recipe = tmp_path / "rewrite_synth.yaml"
    recipe.write_text(json.dumps({"rewrite_synth": _section(sources, out, FLAKY)}))  # JSON is YAML
    cmd = [sys.executable, "-m", "guardrl.cli", "rewrite", "synth", "run", str(recipe)]
    work = work_dir_for(out)
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(work.glob("shard-*.parquet"))) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started (local Ray included)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done = len(list(work.glob("shard-*.parquet")))
    assert 2 <= done < N // 2
    assert not out.exists()  # nothing half-written is published
    summary = run_synth(SynthConfig.from_dict(_section(sources, out, FLAKY)))
    assert summary["resumed_shards"] >= done
    assert {k: summary[k] for k in ("seen", "written", "skipped", "refused_answers")} == \
        {k: ref_summary[k] for k in ("seen", "written", "skipped", "refused_answers")}
    assert _rows(out) == _rows(ref_out)
    assert read_manifest(out)["skipped"]["by_reason"] == read_manifest(ref_out)["skipped"]["by_reason"]


# ------------------------------------------------------------------------------------------ OpenAI-compatible
def test_openai_compatible_teacher_on_a_real_server(tiny_model_dir, monkeypatch):
    from server_support import uvicorn_thread

    from guardrl.generation import make_engine
    from guardrl.generation.openai_compat import OpenAICompatEngine
    from guardrl.stages.rewrite.teachers import EngineTeacher
    from guardrl.stages.serve.chat_server import create_chat_app

    monkeypatch.setenv("SYNTH_TEST_KEY", "k-123")
    monkeypatch.setenv("SYNTH_WRONG_KEY", "nope")
    engine = make_engine(tiny_model_dir, engine="hf", batch_size=4)
    with uvicorn_thread(create_chat_app(engine, "tiny", api_key="k-123")) as base:
        client = OpenAICompatEngine("tiny", f"{base}/v1", api_key_env="SYNTH_TEST_KEY", timeout_s=60, max_retries=0)
        prompts = [Prompt(({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]},),
                          (_png((0, 200, 0)),), "p0"),
                   Prompt(({"role": "user", "content": [{"type": "text", "text": "Hello"}]},), (), "p1")]
        out = client.generate(prompts, SamplingParams(n=2, temperature=1.0, max_new_tokens=8, seed=1))
        assert [len(c) for c in out] == [2, 2] and all(0 < x.num_tokens <= 8 for c in out for x in c)
        # a rejected key: every prompt fails on its own, named, nothing raised from generate_each
        wrong = OpenAICompatEngine("tiny", f"{base}/v1", api_key_env="SYNTH_WRONG_KEY", max_retries=0)
        results, errors = wrong.generate_each(prompts, SamplingParams(max_new_tokens=4))
        assert results == [None, None] and all("AuthenticationError" in str(e) for e in errors)
        assert "'p0'" in str(errors[0])
        # the random tiny model as a teacher writes garbage: counted, retried, skipped -- never kept
        task = get_task("rewrite")
        recs, bad = synth_samples(EngineTeacher(client, "tiny"), task, _samples()[:3],
                                  SamplingParams(max_new_tokens=8), index=0, retries=1, min_chars=200)
        assert all("target" not in r and r["attempts"]["hindsight"] == 2 for r in recs)
        assert bad == {"hindsight: shorter than 200 characters": 6} or sum(bad.values()) == 6
    with pytest.raises(ValueError, match="SYNTH_UNSET_KEY"):
        OpenAICompatEngine("tiny", "http://127.0.0.1:9/v1", api_key_env="SYNTH_UNSET_KEY")


# ------------------------------------------------------------------------------------------ recipes
RECIPES = HERE.parents[1] / "recipes"


@pytest.mark.parametrize("path", ["tiny/rewrite_synth.yaml", "qwen2_vl_7b/rewrite_synth.yaml"])
def test_synth_recipes_validate(path):
    from guardrl.core.recipe import load_recipe, to_container

    section = to_container(load_recipe(RECIPES / path))["rewrite_synth"]
    cfg = SynthConfig.from_dict(section)
    assert cfg.task == "rewrite" and cfg.retries >= 1
    if path.startswith("qwen2_vl_7b"):
        assert (cfg.teacher.kind, cfg.teacher.api_key_env) == ("openai", "OPENAI_API_KEY")
    with pytest.raises(ValueError, match="valid"):
        SynthConfig.from_dict({**section, "teacher": {**section["teacher"], "bogus": 1}})
