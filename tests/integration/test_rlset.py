"""The RL set: built from hard samples + joined ones (Ray tasks), loaded through verl's own RLHFDataset."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from guard_samples import make_samples
from PIL import Image

from guardrl.core.shards import iter_samples, read_manifest, write_samples
from guardrl.integrations.verl.rows import sample_from_row, to_verl_row, verl_messages
from guardrl.stages.augment.runner import AugmentConfig, build_rl_set, verl_files
from guardrl.tasks import get_task
from guardrl.tasks.guard.prompts import build_verl_prompt
from guardrl.tasks.guard.reward import parse_ground_truth

N_BASE = 16  # 3 held out for dev first -> 13 train base, round(0.2 * 13 / 0.8) = round(3.25) = 3 joined: 16 train


@pytest.fixture(scope="module")
def rl_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl")
    hard = write_samples(root / "hard", make_samples(N_BASE), stage="reject")
    cfg = AugmentConfig.from_dict({"data": str(hard), "out": str(root / "rlset"), "share": 0.2, "dev_size": 3,
                                   "max_pixels": 112 * 112, "seed": 5, "chunk_size": 2, "num_cpus": 2})
    return cfg, build_rl_set(cfg)


def test_rl_set_counts_share_and_parents(rl_set):
    cfg, summary = rl_set
    assert (summary["base"], summary["augmented"]) == (N_BASE, 3)
    assert summary["share"] == pytest.approx(3 / 16)
    assert (summary["train"], summary["dev"]) == (16, 3)
    samples = list(iter_samples(cfg.out))
    joined = [s for s in samples if s.source == "concat"]
    assert len(joined) == 3
    base_ids = {s.id for s in samples if s.source != "concat"}
    for s in joined:
        assert set(s.provenance["parents"]) <= base_ids and len(s.provenance["parents"]) == 2
        assert len(s.images) <= 1
    assert read_manifest(cfg.out)["augment"]["augmented"] == 3
    again = build_rl_set(AugmentConfig.from_dict({**cfg.__dict__, "out": cfg.out + "-again"}))
    assert again == {**summary, "out": cfg.out + "-again"}
    assert [s.id for s in iter_samples(cfg.out + "-again")] == [s.id for s in samples]  # seeded


def test_no_dev_sample_is_a_parent_of_a_train_row(rl_set):
    """Dev is held out before pairing: a dev id appears neither as a train row nor as a joined row's parent."""
    cfg, _ = rl_set
    files = verl_files(cfg.out)
    dev_ids = {r["extra_info"]["id"] for r in pq.read_table(files["dev"]).to_pylist()}
    train = pq.read_table(files["train"]).to_pylist()
    assert len(dev_ids) == 3 and sum(1 for r in train if r["extra_info"]["parents"]) == 3
    assert not dev_ids & {r["extra_info"]["id"] for r in train}
    parents = {p for r in train for p in (r["extra_info"]["parents"] or [])}
    assert len(parents) >= 4 and not dev_ids & parents


def test_verl_rows_match_the_reward_adapter(rl_set):
    cfg, _ = rl_set
    files = verl_files(cfg.out)
    table = pq.read_table(files["train"])
    # the single layout: data only, no rendered prompt (verl_ext.rows); the prompt comes from the task
    assert set(table.column_names) == {"data_source", "ability", "sample", "images", "reward_model", "extra_info"}
    task = get_task("guard")
    for row in table.to_pylist():
        assert row["reward_model"]["style"] == "rule" and row["ability"] == "guard"
        req, resp = parse_ground_truth(row["reward_model"]["ground_truth"])
        assert req is not None or resp is not None
        user = verl_messages(task.prompt_messages(sample_from_row(row)))[-1]["content"]
        assert user.count("<image>") == len(row["images"])
        assert row["extra_info"]["modality"] in ("text", "image", "text_image")


def test_loads_through_verl_rlhf_dataset(rl_set, tiny_model_dir):
    from omegaconf import OmegaConf
    from transformers import AutoProcessor

    from guardrl.integrations.verl.dataset import TaskRLDataset

    cfg, summary = rl_set
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    files = verl_files(cfg.out)
    config = OmegaConf.create({"prompt_key": "prompt", "image_key": "images", "max_prompt_length": 4096,
                               "filter_overlong_prompts": True, "filter_overlong_prompts_workers": 1,
                               "cache_dir": str(cfg.out + "-cache"), "task": "guard"})
    ds = TaskRLDataset(files["train"], processor.tokenizer, config, processor=processor)
    assert len(ds) == summary["train"]  # a row verl cannot process would be filtered out
    n_images = 0
    for i in range(len(ds)):
        item = ds[i]
        msgs = item["raw_prompt"]
        images = [c for m in msgs if isinstance(m["content"], list) for c in m["content"] if c["type"] == "image"]
        n_images += len(images)
        for c in images:
            assert isinstance(c["image"], Image.Image)
        assert item["extra_info"]["id"]
        gt = item["reward_model"]["ground_truth"]
        assert parse_ground_truth(gt if isinstance(gt, str) else dict(gt))
        if images:  # the processor turns the images into vision tokens
            text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            enc = processor(text=[text], images=[c["image"].convert("RGB") for c in images], return_tensors="pt")
            assert (enc["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum() > 0
    assert n_images > 0


def test_to_verl_row_layout():
    (s,) = [x for x in make_samples(3) if x.modality == "text_image"]
    row = to_verl_row(s, 7, get_task("guard"))
    assert "prompt" not in row and row["sample"]["request"] == s.request  # data, not the rendered instruction
    assert verl_messages(get_task("guard").prompt_messages(sample_from_row(row)))[-1]["content"].startswith("<image>")
    assert row["images"] == [{"bytes": s.images[0]}]
    Image.open(io.BytesIO(row["images"][0]["bytes"])).verify()
    assert json.loads(row["reward_model"]["ground_truth"]) == {"request": s.label_request,
                                                              "response": s.label_response}
    assert row["extra_info"]["index"] == 7 and row["extra_info"]["source"] == s.source
    json.dumps({k: v for k, v in row.items() if k != "images"})


def test_the_dataset_renders_todays_prompt_exactly(rl_set, tiny_model_dir):
    """Each row's prompt, rendered by TaskRLDataset from the row's data, is the prompt the RL set used to bake
    in (build_verl_prompt of the sample's request/response/image count): same messages, same chat text, same
    token ids; and with a changed template the same file gives the new prompt (no rebuild)."""
    from omegaconf import OmegaConf
    from transformers import AutoProcessor

    from guardrl.integrations.verl.dataset import TaskRLDataset

    cfg, summary = rl_set
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    tok = processor.tokenizer
    train = verl_files(cfg.out)["train"]
    config = OmegaConf.create({"prompt_key": "prompt", "image_key": "images", "max_prompt_length": 4096,
                               "filter_overlong_prompts": False,  # verl's filter: test_loads_through_verl_rlhf_dataset; here it hung (a forked pool after Ray in this process)
                               "cache_dir": str(cfg.out + "-cache2"), "task": "guard"})
    ds = TaskRLDataset(train, tok, config, processor=processor)
    rows = pq.read_table(train).to_pylist()
    assert len(ds.dataframe) == len(rows) == summary["train"]
    for rendered, row in zip(ds.dataframe["prompt"], rows, strict=True):
        s = row["sample"]
        today = build_verl_prompt(s["request"], s["response"], num_images=len(row["images"]))
        assert rendered == today
        text = tok.apply_chat_template(rendered, add_generation_prompt=True, tokenize=False)
        assert text == tok.apply_chat_template(today, add_generation_prompt=True, tokenize=False)
        assert tok(text)["input_ids"] == tok(tok.apply_chat_template(today, add_generation_prompt=True,
                                                                     tokenize=False))["input_ids"]


class _ShortGuard:
    """The guard with a different instruction: what a template change looks like to the loader."""

    name = "guard"

    def prompt_messages(self, sample):
        msgs = get_task("guard").prompt_messages(sample)
        return [{"role": "system", "content": [{"type": "text", "text": "Judge it."}]}, msgs[1]]


def test_a_template_change_needs_no_rebuild_and_a_wrong_task_is_refused(rl_set):
    import datasets

    from guardrl.integrations.verl.dataset import render_prompts

    cfg, _ = rl_set
    train = verl_files(cfg.out)["train"]
    frame = datasets.Dataset(pq.read_table(train))  # in memory: no builder, no cache dir, no worker process
    out = render_prompts(frame, _ShortGuard())
    assert {p[0]["content"] for p in out["prompt"]} == {"Judge it."}  # the same file, the new instruction
    other = type("Rewriter", (), {"name": "rewriter", "prompt_messages": _ShortGuard.prompt_messages})()
    with pytest.raises(ValueError, match=r"row 0: built for task 'guard', the recipe's task is 'rewriter'"):
        render_prompts(frame, other, where=train)
    with_prompt = frame.add_column("prompt", out["prompt"])
    assert render_prompts(with_prompt, other) is with_prompt  # verl's own layout: used as it is
