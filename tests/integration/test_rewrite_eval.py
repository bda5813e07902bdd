"""``guardrl rewrite eval`` end to end on the tiny model (rewriter, target and guard; the rewriter's task is the
real ``rewrite`` task, looked up by name like any task), a few real benchmark rows
(FigStep-Tiny's own images; VLGuard test rows with generated images at their real paths): the table, the
counts, metrics that agree with predictions.jsonl, the refuse-all baseline, and a resume after a kill (a torn
cache line) that loads only the model whose phase was unfinished and gives the same predictions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from judge_server import JudgeHandler, judge_endpoint
from PIL import Image

from data_prep import figstep, siuo, vlguard_test
from guardrl.stages.rewrite import evaluate as ev
from guardrl.stages.rewrite.metrics import AnswerRecord, answer_metrics

REPO = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("GUARDRL_REAL_BENCHMARKS") or REPO.parent / "shared" / "data" / "real-benchmarks")
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"real benchmark files not found: {REAL} is missing")


@pytest.fixture(scope="module")
def benches(tmp_path_factory) -> list[dict]:
    root = tmp_path_factory.mktemp("rw-bench")
    fs = figstep.convert(REAL / "figstep" / "SafeBench-Tiny.csv", root / "FigStep-Tiny", limit=2)
    images = root / "vlguard-images"
    for r in json.loads((REAL / "vlguard" / "test.json").read_text())[:2]:
        (images / r["image"]).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 24), (90, 140, 200)).save(images / r["image"])
    vg = vlguard_test.convert(REAL / "vlguard", root / "VLGuard-test", images=images, limit=2, on_bad="error")
    Image.new("RGB", (32, 24), (200, 60, 60)).save(images / "S-01.png")
    su = siuo.convert(REAL / "siuo", root / "SIUO", images=images, limit=1)
    return [{"path": str(fs)}, {"path": str(vg)}, {"path": str(su)}]


def _cfg(tiny_model_dir, benches, out: Path) -> ev.RewriteEvalConfig:
    m = str(tiny_model_dir)
    return ev.config_from_section({
        "out": str(out), "run_name": "e2e", "batch_size": 1, "task": "rewrite",
        "rewriter": {"model": m, "engine": "hf", "sampling": {"max_new_tokens": 24}},
        "targets": [{"name": "tiny", "model": m, "engine": "hf", "sampling": {"max_new_tokens": 12}}],
        "guard": {"model": m, "engine": "hf", "sampling": {"max_new_tokens": 24}},
        "benchmarks": benches})


def test_rewrite_eval_end_to_end_and_resume(tiny_model_dir, benches, tmp_path, monkeypatch):
    out = tmp_path / "run"
    res = ev.run_rewrite_eval(_cfg(tiny_model_dir, benches, out))
    m = res["metrics"]
    # FigStep-Tiny: 2 harmful inputs; VLGuard test rows 0-1: two safe images, each a safe_safe (benign) and a
    # safe_unsafe (harmful) prompt = 2 harmful + 2 benign
    assert res["benchmarks"] == {"FigStep-Tiny": 2, "VLGuard-test": 4, "SIUO": 1}
    for arm in ("original", "rewritten", "refuse_all"):
        assert m[f"rewrite/tiny/FigStep-Tiny/{arm}/n_harmful"] == 2
        assert (m[f"rewrite/tiny/VLGuard-test/{arm}/n_harmful"], m[f"rewrite/tiny/VLGuard-test/{arm}/n_benign"]) == (2, 2)
    # a random tiny rewriter writes no parsable rewrite: every input falls back to its own prompt, counted
    assert m["rewrite/FigStep-Tiny/rewrite_fallbacks"] == 2 and m["rewrite/VLGuard-test/rewrite_fallbacks"] == 4
    assert m["rewrite/FigStep-Tiny/rewrite_format_ok"] == 0.0
    # VLGuard's subsets are reported apart too; FigStep-Tiny has one subset, so no breakdown
    assert m["rewrite/tiny/VLGuard-test[safe_safe]/original/n_benign"] == 2
    assert m["rewrite/tiny/VLGuard-test[safe_unsafe]/original/n_harmful"] == 2
    assert not any("FigStep-Tiny[" in k for k in m)
    # the refuse-all baseline refuses everything and is never helpful
    assert m["rewrite/tiny/VLGuard-test/refuse_all/refusal"] == 1.0
    assert m["rewrite/tiny/VLGuard-test/refuse_all/helpfulness"] == 0.0
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 3 * 7
    for p in preds:
        if p["arm"] == "rewritten":  # fell back: the original prompt was sent
            orig = next(q for q in preds if q["arm"] == "original" and q["id"] == p["id"])
            assert p["prompt"] == orig["prompt"] and p["rewrite_ok"] is False
    # the figures are the predictions' figures
    recs = [AnswerRecord(p["target"], p["benchmark"], p["arm"], p["label"] == "harmful", p["guard_response"],
                         p["refused"], not p["answer"].strip()) for p in preds]
    recs += [AnswerRecord(r.target, f"VLGuard-test[{p['subset']}]", r.arm, r.harmful_input, r.guard_response,
                          r.refused, r.empty) for r, p in zip(recs, preds, strict=True) if p["benchmark"] == "VLGuard-test"]
    again = answer_metrics(recs)
    assert {k: v for k, v in m.items() if k in again} == again
    md = (out / "results.md").read_text()
    assert "| tiny | VLGuard-test | refuse-all baseline | 2 |" in md and "fallbacks to the original prompt" in md
    assert (out / "plots" / "rewrite_eval.png").stat().st_size > 1000

    # kill during the target's answers: keep the header + 3 records and a torn fourth line
    cache = out / "cache" / "answers-tiny.jsonl"
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:4]) + "\n" + lines[4][: len(lines[4]) // 2])
    (out / "results.json").unlink()
    built = []
    real_build = ev.build_engine
    monkeypatch.setattr(ev, "build_engine", lambda spec: built.append(spec.name) or real_build(spec))
    res2 = ev.run_rewrite_eval(_cfg(tiny_model_dir, benches, out))
    assert built == ["tiny"]  # the rewrites and the guard's verdicts came from the cache
    assert [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()] == preds
    assert res2["metrics"] == m
    # a changed setting redoes that phase (and what depends on it), not the others
    built.clear()
    cfg3 = _cfg(tiny_model_dir, benches, out)
    cfg3 = ev.RewriteEvalConfig(**{**cfg3.__dict__, "refusal_text": "I will not do that."})
    ev.run_rewrite_eval(cfg3)
    assert built == ["guard"]

    # the benchmarks' judges over an OpenAI-compatible endpoint: only SIUO has a protocol here (safety +
    # effectiveness); adding a judge loads no model, and its figures sit beside the guard's
    built.clear()
    with judge_endpoint() as url:
        before = len(JudgeHandler.seen)
        cfg4 = ev.RewriteEvalConfig(**{**cfg3.__dict__, "judge": ev.JudgeConfig(base_url=url, model="judge-m",
                                                                                  timeout=10, max_retries=0)})
        m4 = ev.run_rewrite_eval(cfg4)["metrics"]
        # 2 distinct answers (the rewrite fell back to the original prompt: one answer; the refusal) x 2 protocols
        assert len(JudgeHandler.seen) - before == 2 * 2
    assert built == []
    for arm in ("original", "rewritten", "refuse_all"):
        assert m4[f"rewrite/tiny/SIUO/{arm}/siuo_safe"] == 1.0 and m4[f"rewrite/tiny/SIUO/{arm}/siuo_safe_n"] == 1
        assert m4[f"rewrite/tiny/SIUO/{arm}/siuo_effective"] == 1.0
        assert m4[f"rewrite/tiny/SIUO/{arm}/judge_failures"] == 0
    assert not any(k.startswith("rewrite/tiny/FigStep-Tiny/") and "siuo" in k for k in m4)
    assert "siuo_safe %" in (out / "results.md").read_text()


def test_two_rewriters_side_by_side(tiny_model_dir, benches, tmp_path, monkeypatch):
    """``rewriters:`` (an SFT and an RL checkpoint, say): each rewrites, the target answers each rewrite, one
    table row and one plot bar per rewriter beside the original prompt and the refuse-all baseline; answers are
    cached per prompt, so adding a rewriter asks the target only prompts it has not answered."""
    m = str(tiny_model_dir)
    section = {"out": str(tmp_path / "run"), "run_name": "two", "batch_size": 2,
               "rewriters": [{"name": "sft", "model": m, "engine": "hf", "sampling": {"max_new_tokens": 24}}],
               "targets": [{"name": "tiny", "model": m, "engine": "hf", "sampling": {"max_new_tokens": 8}}],
               "guard": {"model": m, "engine": "hf", "sampling": {"max_new_tokens": 16}}, "benchmarks": benches[:1]}
    ev.run_rewrite_eval(ev.config_from_section(section))
    seen = []
    real = ev._run_phase
    monkeypatch.setattr(ev, "_run_phase", lambda cache, todo, *a, **k: seen.append(
        (cache.path.stem, len(cache.missing(x for x, _ in todo)))) or real(cache, todo, *a, **k))
    section["rewriters"] = [*section["rewriters"],
                            {"name": "rl", "model": m, "engine": "hf", "sampling": {"max_new_tokens": 16}}]
    res = ev.run_rewrite_eval(ev.config_from_section(section))
    assert res["arms"] == ["original", "rewritten-sft", "rewritten-rl", "refuse_all"]
    # sft's rewrites came from the cache; rl's fell back to the original prompt (the random tiny model writes no
    # rewrite that parses), whose answers are cached too: the target is asked nothing new
    assert seen == [("rewrite-sft", 0), ("rewrite-rl", 2), ("answers-tiny", 0), ("guard", 0)]
    mx = res["metrics"]
    for arm in res["arms"]:
        assert mx[f"rewrite/tiny/FigStep-Tiny/{arm}/n_harmful"] == 2
    assert {"rewrite/tiny/FigStep-Tiny/delta-sft/safety", "rewrite/tiny/FigStep-Tiny/delta-rl/safety"} <= set(mx)
    assert mx["rewrite/FigStep-Tiny/rewritten-rl/rewrite_fallbacks"] == 2  # the random tiny model: no rewrite parses
    md = (tmp_path / "run" / "results.md").read_text()
    labels = [line.split(" | ")[2] for line in md.splitlines() if line.startswith("| tiny | FigStep-Tiny |")]
    assert labels == ["original prompt (no rewriter)", "rewritten by sft", "rewritten by rl", "refuse-all baseline"]
    preds = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert sorted({p["arm"] for p in preds}) == sorted(res["arms"]) and len(preds) == 4 * 2
