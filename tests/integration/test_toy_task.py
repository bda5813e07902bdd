"""A task defined only in this folder (tests/integration/toy_colour_task.py, "does the request mention a
colour?") runs through SFT data building and training, a rejection pass on Ray actors and an evaluation on
the tiny model, named by path in ``task_modules``, with no edit to any stage.

The toy prompt carries a colour glossary, so it is longer than the guard's prompt for the same request:
limits set between the two lengths tell which prompt a stage rendered (an SFT cutoff that drops the toy
rows but would keep the guard's; a ``max_new_tokens`` that leaves room for the guard's prompt but not the
toy's), and the evaluation's prompt token counts are the toy prompt's exactly. The training and Ray
parts are ``slow`` (``pytest -m slow tests/integration/test_toy_task.py``).
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from guardrl.core.schema import Sample
from guardrl.core.shards import read_manifest, write_samples
from guardrl.tasks import get_task

TASK_FILE = str(Path(__file__).with_name("toy_colour_task.py"))
REQUESTS = [("Paint the fence red", "yes"), ("What time does the train leave", "no"),
            ("Is a green apple sour", "yes"), ("How do I boil an egg", "no"),
            ("Describe this blue picture", "yes"), ("Read this sign aloud", "no")]


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (56, 56), color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def toy():
    return get_task("colour", [TASK_FILE])


@pytest.fixture(scope="module")
def samples(toy) -> list[Sample]:
    out = []
    for i, (request, gold) in enumerate(REQUESTS):
        images = (_png((30 * i, 90, 200)),) if i >= 4 else ()
        s = Sample(id=f"colour-{i}", source="toy", modality="text_image" if images else "text", request=request,
                   images=images, label_request="unharmful",  # the schema asks for a guard label; the toy ignores it
                   provenance={"colour": gold})
        out.append(replace(s, target=toy.synthetic_target(s, s.id)))
    return out


@pytest.fixture(scope="module")
def data(samples, tmp_path_factory) -> Path:
    return write_samples(tmp_path_factory.mktemp("colour") / "data", samples, stage="test.colour")


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(tiny_model_dir))


def _prompt_len(processor, messages, images) -> int:
    from guardrl.generation.hf import decode_images

    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = processor(text=[text], images=decode_images(images) or None, return_tensors="pt")
    return int(enc["input_ids"].shape[1])


@pytest.fixture(scope="module")
def lengths(toy, samples, processor) -> dict[str, list[int]]:
    """Prompt tokens of each sample under the toy task and under the guard."""
    guard = get_task("guard")
    out = {"toy": [_prompt_len(processor, toy.prompt_messages(s), s.images) for s in samples],
           "guard": [_prompt_len(processor, guard.prompt_messages(s), s.images) for s in samples]}
    assert max(out["guard"]) + 40 < min(out["toy"])  # the glossary: the two prompts are told apart by length
    return out


def _sft_cfg(model: Path, data: Path, out: Path, max_seq_len: int):
    from guardrl.stages.sft.config import from_recipe

    return from_recipe({
        "task": "colour", "task_modules": [TASK_FILE],
        "model": {"path": str(model), "dtype": "float32"},
        "data": {"path": str(data), "train_split": None, "max_seq_len": max_seq_len},
        "optim": {"lr": 1e-3, "warmup_ratio": 0.0},
        "trainer": {"output_dir": str(out), "max_steps": 2, "global_batch_size": 2, "micro_batch_size": 1, "seed": 0},
        "checkpoint": {"every_steps": 0, "keep_last": 1, "hf_dtype": "float32"},
        "resources": {"launcher": "local"}, "logging": {"wandb": False, "progress_bar": False},
    })


def _steps(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def trained(tiny_model_dir, data, tmp_path_factory) -> Path:
    """Two SFT steps on the toy task (in-process launcher); its HF folder is the model of the later stages."""
    from guardrl.stages.sft import train

    out = tmp_path_factory.mktemp("colour-sft") / "run"
    hf = train(_sft_cfg(tiny_model_dir, data, out, max_seq_len=2048))
    steps = _steps(out)
    assert [r["step"] for r in steps] == [1, 2]
    assert all(r["target_tokens"] > 0 and r["dropped_over_cutoff"] == 0 for r in steps)
    return Path(hf)


def test_sft_data_is_the_toy_tasks(toy, samples, processor, lengths):
    from guardrl.stages.sft.data import IGNORE_INDEX, SFTEncoder
    from guardrl.tasks.guard.prompts import instruction

    enc = SFTEncoder(processor, 4096, toy)
    for s in samples:
        item = enc(s)
        text = processor.tokenizer.decode(item["input_ids"])
        assert "TOY-COLOUR-TASK" in text and f"Request: {s.request}" in text
        assert instruction().strip()[:60] not in text  # not the guard's prompt
        labelled = item["labels"][item["labels"] != IGNORE_INDEX]
        assert processor.tokenizer.decode(labelled) == s.target + "<|im_end|>"


@pytest.mark.slow  # trains (twice) or starts Ray: ~3.5 min together on this machine
def test_sft_training_renders_the_toy_prompt(tiny_model_dir, data, lengths, trained, tmp_path):
    """A cutoff between the two prompt lengths: every toy row is over it (dropped, no target tokens); the
    guard's prompt and target would fit."""
    from guardrl.stages.sft import train

    cut = max(lengths["guard"]) + 40
    assert cut < min(lengths["toy"])
    out = tmp_path / "cut"
    train(_sft_cfg(tiny_model_dir, data, out, max_seq_len=cut))
    assert [(r["target_tokens"], r["dropped_over_cutoff"] > 0) for r in _steps(out)] == [(0, True), (0, True)]


def test_unknown_task_is_refused_with_the_valid_names(tiny_model_dir, data, tmp_path):
    from guardrl.core.recipe import RecipeError
    from guardrl.stages.reject.runner import RejectConfig

    with pytest.raises(RecipeError, match=r"unknown task 'shape'; valid: \[.*'colour'.*'guard'"):
        RejectConfig.from_dict({"data": str(data), "model": str(tiny_model_dir), "out": str(tmp_path / "o"),
                                "task": "shape", "task_modules": [TASK_FILE]})
    with pytest.raises(RecipeError, match="no such file"):
        RejectConfig.from_dict({"data": str(data), "model": str(tiny_model_dir), "out": str(tmp_path / "o"),
                                "task": "colour", "task_modules": [str(tmp_path / "missing.py")]})


def test_rejection_judges_with_the_toy_task(toy, samples):
    from guardrl.generation.base import Completion
    from guardrl.stages.reject.runner import judge

    right = [Completion(s.target, 9) for s in samples]  # the toy's own targets: all correct
    wrong = Completion("<think>\nx\n</think>\n<colour>maybe</colour>", 9)  # not yes/no: unparsed
    j = judge(samples, [[r, wrong] for r in right], toy)
    assert [x["correct"] for x in j] == [1] * len(samples)
    assert [x["format_failures"] for x in j] == [1] * len(samples)
    assert j[0]["predictions"] == ["colour:yes", "colour:unparsed"]
    assert [x["correct"] for x in judge(samples, [[r] for r in right])] == [0] * len(samples)  # the guard: wrong


@pytest.mark.slow  # trains (twice) or starts Ray: ~3.5 min together on this machine
def test_rejection_pass_on_ray_actors_renders_the_toy_prompt(trained, data, lengths, tmp_path):
    """``max_new_tokens`` leaves room for the guard's prompt but not the toy's: the actors (which import the
    task module themselves) refuse every toy prompt as too long, before generating anything."""
    from guardrl.stages.reject.runner import RejectConfig, run_reject

    room = (max(lengths["guard"]) + min(lengths["toy"])) // 2
    cfg = RejectConfig.from_dict({
        "data": str(data), "split": None, "model": str(trained), "out": str(tmp_path / "kept"), "engine": "hf",
        "task": "colour", "task_modules": [TASK_FILE], "engine_kwargs": {"batch_size": 8, "num_threads": 1},
        "sampling": {"k": 2, "max_new_tokens": 4096 - room}, "workers": {"num_actors": 2, "cpus_per_actor": 1},
        "shard_size": 3})
    summary = run_reject(cfg, show_table=False)
    assert (summary["seen"], summary["prompt_too_long"], summary["kept"]) == (len(REQUESTS), len(REQUESTS), 0)
    assert read_manifest(tmp_path / "kept")["config"]["task"] == "colour"


@pytest.mark.slow  # trains (twice) or starts Ray: ~3.5 min together on this machine
def test_evaluation_scores_and_measures_with_the_toy_task(trained, data, lengths, tmp_path):
    from typer.testing import CliRunner

    from guardrl.stages.eval.cli import app

    recipe = tmp_path / "eval.yaml"
    recipe.write_text(json.dumps({"eval": {
        "task": "colour", "task_modules": [TASK_FILE], "model": str(trained), "out": str(tmp_path / "eval"),
        "engine": "hf", "workers": 1, "chunk_size": 4, "engine_kwargs": {"batch_size": 4},
        "sampling": {"temperature": 0.0, "max_new_tokens": 4}, "wandb": {"enabled": False},
        "benchmarks": [{"path": str(data), "name": "toy"}]}}))
    res = CliRunner().invoke(app, ["run", "--recipe", str(recipe)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "eval"
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "colour"
    assert set(results["metrics"]) == {"colour/toy/n", "colour/toy/accuracy", "colour/toy/format_rate"}
    assert results["metrics"]["colour/toy/n"] == len(REQUESTS)
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["prompt_tokens"] for p in preds] == lengths["toy"]  # the toy's prompt reached the engine
    assert [p["gold"] for p in preds] == [g for _, g in REQUESTS]
    md = (out / "results.md").read_text()
    assert "| colour/toy/n | 6 |" in md and "Prompt (request) harmfulness" not in md
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["output_length.png"]
