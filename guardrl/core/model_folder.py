"""Check a model argument before anything loads it: a missing folder or an incomplete one is the user's to fix.

Without this check a path that does not exist reaches ``transformers``' ``from_pretrained``, which
tries it as a Hugging Face Hub id and answers with a network error. Every command that takes a model
(``moderate``, ``serve``, ``gateway``, ``serve-chat``, ``eval``, ``export``) calls
:func:`resolve_model` first. A Hub id is only taken when asked for by name: ``hf:<org>/<name>``.

A complete folder has (as ``save_pretrained`` / ``guardrl export`` write it):

* ``config.json``;
* the weights: ``model.safetensors``, or ``model.safetensors.index.json`` and every shard it names
  (``pytorch_model.bin`` and its index are accepted where the caller allows pickle weights);
* the tokenizer: ``tokenizer.json`` or ``tokenizer_config.json``;
* for a VLM (``processor=True``): the processor, ``processor_config.json`` (transformers 5) or
  ``preprocessor_config.json`` (older), and a chat template
  (``chat_template.jinja``, ``chat_template.json``, or ``chat_template`` in ``tokenizer_config.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

HUB_PREFIX = "hf:"


class ModelFolderError(FileNotFoundError):
    """A model argument that is not a usable folder (an ``OSError``: the CLIs print it and exit 2)."""


def _weights_missing(folder: Path, allow_pickle: bool) -> list[str]:
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          *((("pytorch_model.bin", "pytorch_model.bin.index.json"),) if allow_pickle else ())):
        if (folder / single).is_file():
            return []
        if (folder / index).is_file():
            try:
                shards = set(json.loads((folder / index).read_text(encoding="utf-8"))["weight_map"].values())
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                return [f"{index} (unreadable: {exc})"]
            return sorted(s for s in shards if not (folder / s).is_file())
    return ["model.safetensors (or model.safetensors.index.json and its shards)"]


def missing_files(folder: str | Path, *, processor: bool = True, allow_pickle: bool = False) -> list[str]:
    """The files a model folder lacks (empty when it is complete); see the module docstring."""
    folder = Path(folder)
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    missing += _weights_missing(folder, allow_pickle)
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        missing.append("tokenizer.json (or tokenizer_config.json)")
    if processor:
        if not any((folder / f).is_file() for f in ("processor_config.json", "preprocessor_config.json")):
            missing.append("processor_config.json (or preprocessor_config.json)")
        template = any((folder / f).is_file() for f in ("chat_template.jinja", "chat_template.json"))
        if not template and (folder / "tokenizer_config.json").is_file():
            try:
                template = "chat_template" in json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                template = False
        if not template:
            missing.append("chat_template.jinja (or a chat_template in tokenizer_config.json)")
    return missing


def resolve_model(model: str | Path, *, what: str = "model", processor: bool = True,
                  allow_pickle: bool = False) -> str:
    """The path (or ``hf:`` Hub id) to hand to ``from_pretrained``, after checking the folder.

    Args:
        model: a local folder, or ``hf:<org>/<name>`` for a Hub id (downloaded or from the local cache).
        what: the argument's name in messages (``"guard model"``, ``"checkpoint"``).
        processor: the folder must hold a VLM processor and chat template too.
        allow_pickle: accept ``pytorch_model.bin`` weights.

    Raises:
        ModelFolderError: no such folder, not a folder, or files missing (all of them named).
    """
    text = str(model)
    if text.startswith(HUB_PREFIX):
        hub_id = text[len(HUB_PREFIX):]
        if not hub_id or hub_id.count("/") > 1:
            raise ModelFolderError(f"{text}: a Hub id is hf:<org>/<name>")
        return hub_id
    path = Path(text).expanduser()
    if not path.exists():
        raise ModelFolderError(f"{text}: no such {what} folder (a Hugging Face Hub id is written hf:<org>/<name>)")
    if not path.is_dir():
        raise ModelFolderError(f"{text}: the {what} must be a folder, this is a file")
    missing = missing_files(path, processor=processor, allow_pickle=allow_pickle)
    if missing:
        raise ModelFolderError(f"{text}: incomplete {what} folder, missing: {', '.join(missing)}")
    return str(path)
