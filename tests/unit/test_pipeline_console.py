"""The pipeline console: progress figures parsed from real log lines, the live line, quiet children, the demo note."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from tqdm import tqdm

from guardrl.stages.pipeline.console import (
    QUIET_WARNINGS,
    StageConsole,
    count_parameters,
    demo_note,
    duration,
    quiet_driver_env,
    quiet_env,
    rewrite_demo_note,
)
from guardrl.stages.pipeline.progress import StageProgress, clean, split_lines
from guardrl.stages.pipeline.runner import StageResult, StageSpec, run_pipeline


def _bar(desc: str, total: int, done: int, **postfix: str) -> list[str]:
    """What a real tqdm bar writes into a log (non-tty): one ``\\r``-separated update per step."""
    buf = io.StringIO()
    bar = tqdm(total=total, desc=desc, file=buf, mininterval=0, ascii=False, dynamic_ncols=False, ncols=100)
    for _ in range(done):
        if postfix:
            bar.set_postfix(**postfix, refresh=False)
        bar.update(1)
    lines, rest = split_lines("", buf.getvalue())
    return [x for x in [*lines, rest] if x]


# a real line of a demo's sft.log: Ray's coloured worker prefix, then the trainer's data line
SFT_DATA = ("\x1b[36m(RayTrainWorker pid=12179)\x1b[0m SFT data: 7644 rows, 961 without a target skipped, 6683 "
            "trainable; 835 steps/epoch, 500 steps (global batch 8 = 1 ranks x 4 micro x 2 accumulation)")


def test_clean_drops_colours_and_ray_prefixes():
    assert clean(SFT_DATA).startswith("SFT data: 7644 rows")
    assert clean("(TaskRunner pid=42, ip=10.0.0.1) step:1 - a:1") == "step:1 - a:1"
    assert clean("  plain  ") == "plain"


def test_sft_progress_from_the_trainer_bar():
    p = StageProgress("sft")
    p.feed(SFT_DATA)
    assert p.render() == "step 0/500"  # total known before the first step
    for line in _bar("sft", 500, 3, loss="0.1218", lr="1.54e-03", tok_s="1654"):
        p.feed(line)
    assert p.render() == "step 3/500 loss 0.122"


def test_sft_progress_from_log_lines_without_a_bar():
    p = StageProgress("sft")
    assert p.feed("[12/01/26 23:45:00] INFO     step 40 loss 0.5312 lr 2.00e-03 tokens/s 1650")
    assert p.render() == "step 40 loss 0.531"


@pytest.mark.parametrize("stage, planned, finished", [
    # the formats of guardrl.stages.reject.runner's log lines
    ("reject",
     (["INFO reject: 384 prompts from /x/data in 6 work shards (1 already done), k=4"], "shards 1/6"),
     (["INFO reject: shard 3 done (64 prompts, 12.3s)", "INFO reject: shard 4 done (64 prompts, 11.0s)",
       "INFO reject: kept 35 of 384 prompts -> /x/reject"], "shards 3/6 kept 35/384")),
    # guardrl.stages.rewrite.synth's (its shards finish through reject's dispatcher)
    ("rewrite_synth",
     (["INFO synth: 1200 samples from /x/data in 3 work shards (1 already done), teacher templated",
       "INFO synth: 1 actor(s) {'CPU': 1}, teacher templated"], "shards 1/3"),
     (["INFO synth: shard 1 done (400 prompts, 2.1s)",
       "INFO synth: 1198 of 1200 samples -> /x/synth (refused answers per stage {})"], "shards 2/3 written 1198/1200")),
])
def test_sharded_stage_progress_counts_shards_and_rows(stage, planned, finished):
    p = StageProgress(stage)
    for lines, expected in (planned, finished):
        for line in lines:
            p.feed(line)
        assert p.render() == expected


def test_rewrite_eval_progress_per_phase():
    # guardrl.stages.rewrite.evaluate logs "<phase>: i / n" per batch, or that the phase is cached
    p = StageProgress("rewrite_eval")
    p.feed("INFO rewrite: complete in the cache")
    p.feed("INFO answers of tiny-base: 16 / 100")
    p.feed("INFO answers of tiny-base: 100 / 100")
    p.feed("INFO guard: 8 / 150")
    assert p.render() == "rewrite cached tiny-base 100/100 guard 8/150"
    assert StageProgress("rewrite_sft").feed("INFO step 40 loss 0.5312 lr 2.00e-03")  # the SFT rules


def test_rl_progress_from_verl_bar_and_console_logger():
    from verl.utils.logger.aggregate_logger import concat_dict_to_str  # verl's own console line

    p = StageProgress("rl")
    for line in _bar("Training Progress", 4, 1):
        p.feed(line)
    assert p.render() == "step 1/4"
    # the clip bound reaches verl's logger as a numpy scalar, which it prints as np.float64(0.23)
    line = concat_dict_to_str({"actor/pg_loss": -0.01, "critic/score/mean": 0.4123456,
                               "actor/guard/clip_bound": np.float64(0.23), "response_length/mean": 88.0}, step=2)
    assert "np.float64(0.23)" in line
    assert p.feed(f"\x1b[36m(TaskRunner pid=7)\x1b[0m {line}")
    assert p.render() == "step 2/4 reward 0.412 clip 0.23"


def test_eval_progress_per_run_tag():
    p = StageProgress("eval")
    for line in _bar("eval (hf x1)", 200, 200):
        p.feed(line, tag="sft")
    for line in _bar("eval (hf x1)", 200, 90):
        p.feed(line, tag="rl")
    assert p.render() == "sft 200/200 rl 90/200"


def test_unrelated_lines_change_nothing():
    p = StageProgress("rl")
    assert not p.feed("UserWarning: something")
    assert not p.feed("")
    assert p.render() == "" and p.lines == 2


def test_split_lines_keeps_the_unfinished_rest():
    lines, rest = split_lines("ab", "c\r\nd\re\nf")
    assert lines == ["abc", "d", "e"] and rest == "f"


def test_duration():
    assert duration(12.34) == "12.3s"
    assert duration(75.2) == "1m15s"
    assert duration(3725) == "1h02m05s"


def test_quiet_env_keeps_the_users_filters_last_and_works_in_a_child():
    env = quiet_env({"PYTHONWARNINGS": "error::DeprecationWarning", "X": "1"})
    assert env["X"] == "1" and env["PYTHONWARNINGS"].endswith(",error::DeprecationWarning")
    assert env["PYTHONWARNINGS"].count("ignore:") == len(QUIET_WARNINGS)
    # a real child process: verl's exact warning text is filtered, any other warning still shows
    code = ("import warnings\n"
            "warnings.warn(f\"megatron engine is not available: {ImportError('x')!r}\", stacklevel=1)\n"
            "warnings.warn('something else', stacklevel=1)\n")
    out = subprocess.run([sys.executable, "-c", code], env={**quiet_env({}), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True)
    assert "megatron" not in out.stderr and "something else" in out.stderr


def test_quiet_driver_env_only_for_a_new_local_cluster():
    env: dict[str, str] = {}
    quiet_driver_env(env)
    assert env == {"RAY_AUTH_MODE": "token"}
    env = {"RAY_ADDRESS": "127.0.0.1:6379"}
    quiet_driver_env(env)
    assert "RAY_AUTH_MODE" not in env
    env = {"RAY_AUTH_MODE": "disabled"}
    quiet_driver_env(env)
    assert env["RAY_AUTH_MODE"] == "disabled"


def _stage_writing_logs(lines: list[str], fail: bool = False):
    def fn(ctx):
        logs = ctx.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"{ctx.name}.log").open("a") as fh:
            for line in lines:
                fh.write(line + "\n")
                fh.flush()
                time.sleep(0.01)
        if fail:
            raise RuntimeError(f"stage {ctx.name!r} failed (exit 1); log: {logs / (ctx.name + '.log')}")
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        (ctx.out_dir / "x").write_text("1")
        return {"steps": 4}

    return fn


def test_console_one_line_per_stage_then_the_failing_stages_tail(tmp_path):
    rl_lines = [*(f"noise {i}" for i in range(40)), "step:4 - critic/score/mean:0.5 - actor/guard/clip_bound:0.28"]
    reg = {"sft": StageSpec("sft", _stage_writing_logs([SFT_DATA, "step 500 loss 0.1 lr 1e-3 tokens/s 9"]), ()),
           "rl": StageSpec("rl", _stage_writing_logs(rl_lines, fail=True), ("sft",))}
    buf = io.StringIO()
    console = Console(file=buf, width=200, force_terminal=False, color_system=None)
    view = StageConsole(console, tmp_path, every_s=0)
    with pytest.raises(RuntimeError) as err:
        run_pipeline({"stages": {"sft": {}, "rl": {}}}, tmp_path, "sft", "rl", use_ray=False, registry=reg, on_start=view.start,
                     on_tick=view.tick, on_stage=view.done)
    view.failed(err.value)
    out = buf.getvalue()
    assert "noise 3" not in out.split("--- last")[0]  # log lines stay in the log until a stage fails
    assert "✓ sft      ran in" in out and "step 500/500 loss 0.1" in out and "steps=4" in out
    assert "✗ rl       failed after" in out and "step 4 reward 0.5 clip 0.28" in out
    tail = out.split("--- last 25 lines of ")[1]
    assert "noise 15" not in tail and "noise 16" in tail and "critic/score/mean:0.5" in tail  # the last 25 lines
    assert f"full log: {tmp_path / 'logs' / 'rl.log'}" in out
    # --verbose: every line streamed with its stage's prefix
    buf2 = io.StringIO()
    verbose = StageConsole(Console(file=buf2, width=200, color_system=None), tmp_path / "v", verbose=True)
    run_pipeline({"stages": {"sft": {}}}, tmp_path / "v", "sft", "sft", use_ray=False, registry=reg,
                 on_start=verbose.start, on_tick=verbose.tick, on_stage=verbose.done)
    assert "[sft] step 500 loss 0.1" in buf2.getvalue()


def _safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    header = {k: {"dtype": "F32", "shape": s, "data_offsets": [0, 0]} for k, s in shapes.items()}
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw)


def test_demo_note_reads_the_parameter_count_and_the_per_class_figures(tmp_path):
    (tmp_path / "export").mkdir()
    _safetensors(tmp_path / "export" / "model.safetensors", {"a": [1000, 1200], "b": [300_000], "c": [20_000]})
    assert count_parameters(tmp_path / "export") == 1_520_000  # 1.2M + 0.3M + 0.02M
    for stage, secs in (("sft", 300.0), ("rl", 240.0)):
        (tmp_path / stage).mkdir()
        (tmp_path / stage / ".guardrl_stage.json").write_text(json.dumps({"seconds": secs}))
    (tmp_path / "eval" / "rl").mkdir(parents=True)
    m = {"guard/avg/request/n": 162, "guard/avg/request/recall": 0.973, "guard/avg/request/unharmful_recall": 0.588,
         "guard/avg/request/f1": 0.88, "guard/avg/request/all_harmful_f1": 0.813}
    (tmp_path / "eval" / "rl" / "results.json").write_text(json.dumps({"metrics": m}))
    note = demo_note(tmp_path, "a CPU")
    # 540 s of SFT + RL = 9 minutes
    assert note.startswith("This is a 1.5M-parameter smoke-test guard trained for 9 minutes on a CPU")
    assert "request harmful recall 97.3%, unharmful recall 58.8% (F1 88.0 vs 81.3 for all-harmful)" in note
    assert "make sft RECIPE=recipes/qwen2_5_vl_3b/sft.yaml" in note and "recipes/qwen2_5_vl_7b/" in note
    assert "\n" not in note
    _safetensors(tmp_path / "export" / "model.safetensors", {"a": [10_000, 20_000]})  # 200M: not a smoke test
    assert demo_note(tmp_path) is None


def test_done_line_for_a_skipped_stage(tmp_path):
    buf = io.StringIO()
    view = StageConsole(Console(file=buf, width=200, color_system=None), tmp_path)
    view.done(StageResult("data", "skipped", 0.0, {"train_rows": 7644}))
    assert buf.getvalue().strip() == "· data     unchanged, skipped  train_rows=7644"


def test_rewrite_demo_note_names_the_smoke_test_and_the_parse_rate(tmp_path):
    hf = tmp_path / "rewrite_sft" / "hf"
    hf.mkdir(parents=True)
    _safetensors(hf / "model.safetensors", {"a": [1000, 1200]})
    (tmp_path / "rewrite_sft" / ".guardrl_stage.json").write_text(json.dumps({"seconds": 234.0}))
    (tmp_path / "rewrite_sft" / "dev_eval.json").write_text(json.dumps({"parse_rate": 0.9791, "n": 96}))
    note = rewrite_demo_note(tmp_path, "a CPU")
    assert note.startswith("This is a 1.2M-parameter smoke-test rewriter trained for 4 minutes on a CPU")
    assert "parse on 97.9% of 96 guard-mini dev prompts" in note and "refuse-all" in note
    assert "recipes/qwen2_vl_7b/rewrite_synth.yaml" in note and "\n" not in note
    _safetensors(hf / "model.safetensors", {"a": [10_000, 20_000]})  # 200M: not a smoke test
    assert rewrite_demo_note(tmp_path) is None
