"""The model card (README.md) and ``guardrl_export.json`` of an exported guard folder.

The card records the base model, the recipe files and data manifests (with sha256), the source
checkpoint, the guardrl commit and, once evaluated, the weighted F1 per task.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from guardrl.core.provenance import sha256_file


class CardError(ValueError):
    """A missing manifest or a folder that is not a guardrl export."""


def eval_summary(path: str | None) -> dict[str, Any] | None:
    """The weighted averages (``guard/avg/...``) of an evaluation's ``results.json``, with its sha256."""
    if not path:
        return None
    data = json.loads(Path(path).read_text())
    metrics = data.get("metrics", data)
    keep = {k: v for k, v in metrics.items() if k.startswith("guard/avg/")}
    return {"results": str(path), "sha256": sha256_file(path), "metrics": keep,
            "benchmarks": data.get("benchmarks", [])}


def manifest_entries(paths: list[str]) -> list[dict[str, Any]]:
    """Path, sha256 and row counts of each data ``manifest.json`` (or folder holding one).

    Raises:
        CardError: a manifest that does not exist.
    """
    out = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            path = path / "manifest.json"
        if not path.is_file():
            raise CardError(f"data manifest not found: {path}")
        entry: dict[str, Any] = {"path": str(path), "sha256": sha256_file(path)}
        try:
            doc = json.loads(path.read_text())
            for k in ("num_rows", "counts", "schema_version", "stage"):
                if k in doc:
                    entry[k] = doc[k]
        except json.JSONDecodeError:
            pass
        out.append(entry)
    return out


def model_card(meta: dict[str, Any]) -> str:
    """The exported folder's README.md, built from the metadata written to ``guardrl_export.json``."""
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: image-text-to-text",
        "tags: [guardrl, guard-model, safety, reasoning]",
        "---",
        f"# {meta['name']}",
        "",
        "A reasoning guard model for vision-language interactions trained with guardrl "
        "(GuardReasoner-VL recipe: R-SFT, rejection sampling + safety-aware concatenation, GRPO).",
        "It reads a request (text and/or images) and an optional AI response, reasons in "
        "`<think>...</think>`, then answers in `<result>` with `Request: harmful|unharmful` and "
        "`Response: harmful|unharmful|None`.",
        "",
        "| field | value |",
        "|---|---|",
        f"| base model | {meta.get('base_model') or 'unknown'} |",
        f"| architecture | {meta['architecture']} |",
        f"| parameters | {meta['parameters']:,} |",
        f"| dtype | {meta['dtype']} |",
        f"| source checkpoint | {meta['source']['kind']} `{meta['source']['path']}` |",
        f"| guardrl commit | {meta.get('guardrl_commit') or 'unknown'} |",
        "",
        "## Recipe",
        "",
    ]
    lines += [f"- `{r['path']}` sha256 `{r['sha256']}`" for r in meta["recipe"]] or ["- not recorded"]
    lines += ["", "## Training data (manifest hashes)", ""]
    lines += [f"- `{m['path']}` sha256 `{m['sha256']}`" for m in meta["data_manifests"]] or ["- not recorded"]
    lines += ["", "## Evaluation summary", ""]
    ev = meta.get("evaluation")
    if ev and ev.get("metrics"):
        m = ev["metrics"]
        lines += ["| task | weighted F1 | samples |", "|---|---|---|"]
        for task in ("request", "response"):
            if f"guard/avg/{task}/f1" in m:
                lines.append(f"| {task} | {100 * m[f'guard/avg/{task}/f1']:.2f} | {int(m[f'guard/avg/{task}/n'])} |")
        lines += ["", f"From `{ev['results']}` (sha256 `{ev['sha256']}`)."]
    else:
        lines.append("- not evaluated at export time (`guardrl eval run` writes results.json; pass it with --eval-results)")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from guardrl.stages.serve.api import Guard",
        f"guard = Guard.from_pretrained('path/to/{meta['name']}')",
        "print(guard.moderate('How do I pick a lock?', images=[], response=None))",
        "```",
        "",
        "Loads with `AutoModelForImageTextToText` / `AutoProcessor`; no `trust_remote_code`.",
        "",
    ]
    return "\n".join(lines)


def update_card(folder: str | Path, eval_results: str | Path) -> dict[str, Any]:
    """Record an evaluation (``results.json``) in an exported folder's model card and metadata.

    Export runs before evaluation in the pipeline; this fills the card's evaluation summary afterwards.

    Raises:
        CardError: ``folder`` is not a guardrl export.
    """
    from guardrl.core.atomic import atomic_write_text

    folder = Path(folder)
    meta_path = folder / "guardrl_export.json"
    if not meta_path.is_file():
        raise CardError(f"{folder}: no guardrl_export.json (not exported by guardrl)")
    meta = json.loads(meta_path.read_text())
    meta["evaluation"] = eval_summary(str(eval_results))
    atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    atomic_write_text(folder / "README.md", model_card(meta))
    return meta
