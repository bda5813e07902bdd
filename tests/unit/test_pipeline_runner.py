"""Pipeline runner: content-hash skipping, re-runs downstream of a change, failed stages never marked done."""

from __future__ import annotations

import json

import pytest

from guardrl.stages.pipeline.runner import (
    MARKER,
    StageSpec,
    fingerprint,
    hash_tree,
    read_marker,
    run_pipeline,
)

CALLS: list[str] = []


def _writer(name):
    def fn(ctx):
        CALLS.append(name)
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        upstream = "".join((p / "out.txt").read_text() for p in ctx.inputs.values())
        if ctx.config.get("fail"):
            raise RuntimeError(f"{name} failed on purpose")
        (ctx.out_dir / "out.txt").write_text(upstream + f"{name}:{ctx.config.get('value', 0)};")
        return {"value": ctx.config.get("value", 0)}

    return fn


REGISTRY = {
    "data": StageSpec("data", _writer("data"), ()),
    "sft": StageSpec("sft", _writer("sft"), ("data",)),
    "rl": StageSpec("rl", _writer("rl"), ("sft",)),
}


def _run(tmp_path, stages, **kw):
    CALLS.clear()
    return run_pipeline({"stages": stages}, tmp_path, use_ray=False, registry=REGISTRY, **kw)


def test_second_run_skips_everything(tmp_path):
    stages = {"data": {"value": 1}, "sft": {"value": 2}, "rl": {"value": 3}}
    res = _run(tmp_path, stages)
    assert [r.status for r in res] == ["ran", "ran", "ran"] and CALLS == ["data", "sft", "rl"]
    assert (tmp_path / "rl" / "out.txt").read_text() == "data:1;sft:2;rl:3;"
    res = _run(tmp_path, stages)
    assert [r.status for r in res] == ["skipped"] * 3 and CALLS == []
    assert res[2].summary == {"value": 3}  # summaries come back from the markers


def test_config_change_reruns_the_stage_and_everything_after(tmp_path):
    stages = {"data": {"value": 1}, "sft": {"value": 2}, "rl": {"value": 3}}
    _run(tmp_path, stages)
    stages["sft"]["value"] = 5
    res = _run(tmp_path, stages)
    assert [r.status for r in res] == ["skipped", "ran", "ran"]
    assert (tmp_path / "rl" / "out.txt").read_text() == "data:1;sft:5;rl:3;"


def test_same_config_but_changed_upstream_output_reruns_downstream(tmp_path):
    stages = {"data": {"value": 1}, "sft": {"value": 2}, "rl": {"value": 3}}
    _run(tmp_path, stages)
    # Someone rewrites data's output and re-marks it: its output hash changes -> sft's fingerprint changes.
    (tmp_path / "data" / "out.txt").write_text("data:9;")
    marker = read_marker(tmp_path / "data")
    marker["output_hash"] = hash_tree(tmp_path / "data")
    (tmp_path / "data" / MARKER).write_text(json.dumps(marker))
    res = _run(tmp_path, stages)
    assert [r.status for r in res] == ["skipped", "ran", "ran"]
    assert (tmp_path / "rl" / "out.txt").read_text().startswith("data:9;")


def test_failed_stage_has_no_marker_and_reruns(tmp_path):
    stages = {"data": {"value": 1}, "sft": {"value": 2, "fail": True}, "rl": {"value": 3}}
    with pytest.raises(RuntimeError, match="sft failed on purpose"):
        _run(tmp_path, stages)
    assert read_marker(tmp_path / "data") is not None
    assert read_marker(tmp_path / "sft") is None  # never accepted as complete
    stages["sft"]["fail"] = False
    res = _run(tmp_path, stages)
    assert [r.status for r in res] == ["skipped", "ran", "ran"]


KILL = {"rl": False}


def _resuming_rl(ctx):
    """An RL-like stage: continues whatever ``steps.txt`` its folder holds (as verl's resume_mode auto does)."""
    CALLS.append("rl")
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    steps = ctx.out_dir / "steps.txt"
    steps.write_text((steps.read_text() if steps.exists() else "") + f"{ctx.config['value']};")
    if KILL["rl"]:
        raise RuntimeError("killed")
    return {}


RESUMING = {"data": REGISTRY["data"], "rl": StageSpec("rl", _resuming_rl, ("data",))}


def test_a_stage_resumes_only_its_own_configs_output(tmp_path):
    def run(value, **kw):
        return run_pipeline({"stages": {"data": {}, "rl": {"value": value}}}, tmp_path, use_ray=False,
                            registry=RESUMING, **kw)

    steps = tmp_path / "rl" / "steps.txt"
    KILL["rl"] = True
    with pytest.raises(RuntimeError, match="killed"):
        run(1)
    KILL["rl"] = False
    run(1)
    assert steps.read_text() == "1;1;"  # the killed run of the same config is continued
    run(2)
    assert steps.read_text() == "2;"  # a finished run of another config is not resumed
    KILL["rl"] = True
    with pytest.raises(RuntimeError, match="killed"):
        run(3)
    KILL["rl"] = False
    run(4)
    assert steps.read_text() == "4;"  # nor a killed one
    assert [r.status for r in run(4)] == ["skipped", "skipped"]
    run(4, force=["rl"])
    assert steps.read_text() == "4;"  # --force starts the stage afresh
    assert read_marker(tmp_path / "rl")["fingerprint"] == json.loads((tmp_path / ".started" / "rl.json").read_text())["fingerprint"]


def test_from_needs_completed_upstream(tmp_path):
    with pytest.raises(RuntimeError, match="run with --from data"):
        _run(tmp_path, {"sft": {}}, start="sft")


def test_unknown_stage_names_the_valid_ones(tmp_path):
    stages = {"data": {}, "sft": {}, "rl": {}}
    with pytest.raises(ValueError, match=r"this recipe's stages: \['data', 'sft', 'rl'\]"):
        _run(tmp_path, stages, start="sfft")
    with pytest.raises(ValueError, match="unknown stage.*'sfft'.*valid"):
        _run(tmp_path, {"data": {}, "sfft": {}})
    with pytest.raises(ValueError, match="lists no stage"):
        _run(tmp_path, {})


def test_only_the_recipes_stages_run_in_the_one_order(tmp_path):
    res = _run(tmp_path, {"sft": {"value": 2}, "data": {"value": 1}})  # listed out of order: run in STAGES order
    assert [r.name for r in res] == ["data", "sft"] and CALLS == ["data", "sft"]
    assert not (tmp_path / "rl").exists()
    with pytest.raises(ValueError, match="not registered"):
        run_pipeline({"stages": {"data": {}, "eval": {}}}, tmp_path, use_ray=False, registry=REGISTRY)


def test_fingerprint_depends_on_config_and_inputs():
    a = fingerprint("sft", {"x": 1}, {"data": "h1"})
    assert a == fingerprint("sft", {"x": 1}, {"data": "h1"})
    assert a != fingerprint("sft", {"x": 2}, {"data": "h1"})
    assert a != fingerprint("sft", {"x": 1}, {"data": "h2"})


def test_stage_runs_as_a_ray_task(tmp_path):
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        res = run_pipeline({"stages": {"data": {"value": 7}}}, tmp_path, stop="data", use_ray=True,
                           registry={"data": REGISTRY["data"]})
    finally:
        ray.shutdown()
    assert res[0].status == "ran"
    assert (tmp_path / "data" / "out.txt").read_text() == "data:7;"
