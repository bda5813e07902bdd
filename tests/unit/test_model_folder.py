"""Model arguments a user can get wrong: a missing folder, an incomplete one (guardrl/core/model_folder.py)."""

from __future__ import annotations

import json

import pytest

from guardrl.core.model_folder import ModelFolderError, missing_files, resolve_model

COMPLETE = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "processor_config.json", "chat_template.jinja")


def _folder(tmp_path, files):
    d = tmp_path / "model"
    d.mkdir()
    for f in files:
        (d / f).write_text("{}")
    return d


def test_missing_folder_is_not_a_hub_id(tmp_path):
    with pytest.raises(ModelFolderError, match="no such guard model folder"):
        resolve_model(tmp_path / "nope", what="guard model")
    with pytest.raises(ModelFolderError, match="outputs/nope: no such model folder"):
        resolve_model("outputs/nope")
    assert resolve_model("hf:Qwen/Qwen2.5-VL-3B-Instruct") == "Qwen/Qwen2.5-VL-3B-Instruct"
    with pytest.raises(ModelFolderError, match="hf:<org>/<name>"):
        resolve_model("hf:a/b/c")


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "w.safetensors").write_text("x")
    with pytest.raises(ModelFolderError, match="must be a folder"):
        resolve_model(tmp_path / "w.safetensors")


def test_complete_folder(tmp_path):
    d = _folder(tmp_path, COMPLETE)
    assert resolve_model(d) == str(d) and missing_files(d) == []


def test_incomplete_folder_names_every_missing_file(tmp_path):
    d = _folder(tmp_path, ("tokenizer_config.json",))
    with pytest.raises(ModelFolderError) as err:
        resolve_model(d)
    msg = str(err.value)
    for name in ("config.json", "model.safetensors", "processor_config.json (or preprocessor_config.json)",
                 "chat_template.jinja"):
        assert name in msg, msg
    assert "tokenizer.json" not in msg  # tokenizer_config.json is there
    assert missing_files(d, processor=False) == ["config.json",
                                                 "model.safetensors (or model.safetensors.index.json and its shards)"]


def test_sharded_weights_name_the_missing_shard(tmp_path):
    d = _folder(tmp_path, [f for f in COMPLETE if f != "model.safetensors"] + ["model-00001-of-00002.safetensors"])
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    assert missing_files(d) == ["model-00002-of-00002.safetensors"]


def test_chat_template_inside_tokenizer_config_counts(tmp_path):
    d = _folder(tmp_path, [f for f in COMPLETE if f != "chat_template.jinja"])
    assert "chat_template.jinja (or a chat_template in tokenizer_config.json)" in missing_files(d)
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    assert missing_files(d) == []


def test_older_processor_file_counts(tmp_path):
    d = _folder(tmp_path, [f for f in COMPLETE if f != "processor_config.json"] + ["preprocessor_config.json"])
    assert missing_files(d) == []


def test_pickle_weights_only_when_allowed(tmp_path):
    d = _folder(tmp_path, [f for f in COMPLETE if f != "model.safetensors"] + ["pytorch_model.bin"])
    assert missing_files(d) and missing_files(d, allow_pickle=True) == []
