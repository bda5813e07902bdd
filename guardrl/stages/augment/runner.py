"""The RL set: hard samples from rejection sampling + safety-aware concatenations, in verl's format.

:func:`build_rl_set` (``guardrl augment run``) reads the rejection-sampling
output, holds out ``dev_size`` hard samples for validation *first*, then draws pairs within
the remaining train samples with a seed (:func:`guardrl.core.augment.plan_pairs`), joins
them in Ray tasks over chunks of pairs (:func:`guardrl.core.augment.concat_samples`),
and publishes one folder atomically:

* ``OUT/part-*.parquet`` + ``manifest.json``: the RL set in guardrl's schema
  (manifest ``augment`` report: base / augmented counts, actual share of the train set, skipped pairs);
* ``OUT/verl/train.parquet`` (and ``dev.parquet`` when ``dev_size > 0``): the
  same samples as verl RL rows (:func:`guardrl.integrations.verl.rows.write_verl_parquet`).

The verl rows hold data only (layout: :mod:`guardrl.integrations.verl.rows`, written with the recipe's task);
verl renders each prompt through the task when it loads the set (:mod:`guardrl.integrations.verl.dataset`).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from guardrl.core.augment import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_SHARE,
    AugmentError,
    concat_samples,
    num_augmented,
    plan_pairs,
)
from guardrl.core.schema import Sample
from guardrl.core.shards import ShardWriter, read_table, split_names
from guardrl.integrations.ray import init_ray
from guardrl.integrations.verl.rows import write_verl_parquet
from guardrl.tasks import DEFAULT_TASK, get_task

log = logging.getLogger(__name__)

STAGE = "augment"
VERL_DIR = "verl"


# --------------------------------------------------------------------------------------------- config
@dataclass
class AugmentConfig:
    """The ``augment:`` section of a recipe (see ``recipes/*/augment.yaml`` for each field's help)."""

    data: str
    out: str
    split: str | None = None
    share: float = DEFAULT_SHARE
    size: int | None = None
    dev_size: int = 0
    layout: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS
    seed: int = 0
    chunk_size: int = 256
    num_cpus: int = 2
    balance: str = "none"
    task: str = DEFAULT_TASK  # the recipe's top-level `task:`: gives each row's ground truth and `ability`
    task_modules: list[str] = field(default_factory=list)  # the recipe's `task_modules:` (a task outside guardrl)

    BALANCE = ("none", "label", "label_presence")

    @classmethod
    def from_dict(cls, section: Mapping[str, Any]) -> AugmentConfig:
        """Raises ValueError on unknown keys (listing the valid ones) or bad values."""
        valid = set(cls.__dataclass_fields__)
        unknown = sorted(set(section) - valid)
        if unknown:
            raise ValueError(f"unknown augment option(s) {unknown}; valid: {sorted(valid)}")
        cfg = cls(**dict(section))
        num_augmented(0, cfg.share)  # validates share
        if cfg.chunk_size < 1 or cfg.dev_size < 0 or (cfg.size is not None and cfg.size < 1):
            raise ValueError("chunk_size must be >= 1, dev_size >= 0, size >= 1 or null")
        if cfg.balance not in cls.BALANCE:
            raise ValueError(f"augment.balance must be one of {list(cls.BALANCE)}, got {cfg.balance!r}")
        return cfg


def balanced_pool(labels: Sequence[str | None], rng: random.Random,
                  present: Sequence[bool] | None = None) -> list[int]:
    """Indices of a class-balanced draw of the hard samples (``augment.balance``), in row order.

    Without ``present`` (``label``): every row of the rarer request label and a seeded draw of as many of
    the other. With ``present`` (``label_presence``, one flag per row: does it carry a response): the cells
    (request label x response present) each keep as many rows as the smallest non-empty cell, so neither
    the label prior nor a response's presence predicts the request label (an empty cell is logged and left
    out). Rows without a request label (response-only) are all kept. One label (or cell) only: every row.
    """
    keys = list(labels) if present is None else [(x, bool(p)) if x is not None else None
                                                 for x, p in zip(labels, present, strict=True)]
    wanted = ([(lab, p) for lab in ("harmful", "unharmful") for p in (False, True)] if present is not None
              else ["harmful", "unharmful"])
    by = {k: [i for i, x in enumerate(keys) if x == k] for k in wanted}
    empty = [k for k, v in by.items() if not v]
    if present is not None and empty and len(empty) < len(by):
        log.warning("augment: balance=label_presence: no hard sample in cell(s) %s (request label, response "
                    "present); balancing the others", empty)
    by = {k: v for k, v in by.items() if v}
    if len(by) < 2:
        return list(range(len(labels)))
    n = min(len(v) for v in by.values())
    keep = {i for v in by.values() for i in (v if len(v) == n else rng.sample(v, n))}
    return [i for i, x in enumerate(keys) if i in keep or x not in by]


# --------------------------------------------------------------------------------------------- Ray side
def concat_chunk(table: pa.Table, pairs: Sequence[tuple[int, int]], layout: str, max_pixels: int
                 ) -> tuple[list[dict[str, Any] | None], list[str]]:
    """Join the rows of ``table`` named by ``pairs``; ``None`` (and a reason) for a pair that cannot be joined."""
    out: list[dict[str, Any] | None] = []
    reasons = []
    for i, j in pairs:
        a = Sample.from_row(table.slice(i, 1).to_pylist()[0])
        b = Sample.from_row(table.slice(j, 1).to_pylist()[0])
        try:
            out.append(concat_samples(a, b, layout=layout, max_pixels=max_pixels).to_row())
        except (AugmentError, ValueError) as exc:
            out.append(None)
            reasons.append(f"{a.id}+{b.id}: {exc}")
    return out, reasons


def _join_pairs(table: pa.Table, pairs: list[tuple[int, int]], cfg: AugmentConfig) -> tuple[list[dict | None], list]:
    """Run :func:`concat_chunk` as Ray tasks over chunks of pairs (the table goes to the object store once)."""
    import ray

    started = init_ray(num_cpus=cfg.num_cpus)
    try:
        ref = ray.put(table)
        task = ray.remote(num_cpus=1)(concat_chunk)
        chunks = [pairs[k : k + cfg.chunk_size] for k in range(0, len(pairs), cfg.chunk_size)]
        results = ray.get([task.remote(ref, c, cfg.layout, cfg.max_pixels) for c in chunks])
    finally:
        if started:
            ray.shutdown()
    rows = [r for chunk_rows, _ in results for r in chunk_rows]
    reasons = [x for _, rs in results for x in rs]
    return rows, reasons


def build_rl_set(cfg: AugmentConfig) -> dict[str, Any]:
    """Build the RL set (see the module docstring). Deterministic for ``cfg.seed``.

    Returns:
        A summary: ``base``, ``augmented``, ``share``, ``skipped_pairs``, ``train``, ``dev``, ``out``.
    """
    task = get_task(cfg.task, cfg.task_modules)  # unknown name -> KeyError listing the valid ones
    split = cfg.split if split_names(cfg.data) else None
    table = read_table(cfg.data, split=split)
    rng = random.Random(cfg.seed)
    pool = list(range(table.num_rows))
    if cfg.balance != "none":  # GRPO pushes each prompt's group towards its gold label: equal pulls both ways
        present = ([r is not None for r in table.column("response").to_pylist()]
                   if cfg.balance == "label_presence" else None)
        pool = balanced_pool(table.column("label_request").to_pylist(), rng, present)
        log.info("augment: balance=%s keeps %d of %d hard samples", cfg.balance, len(pool), table.num_rows)
    if cfg.size is not None:
        n_base = min(len(pool), round(cfg.size * (1 - cfg.share)))
        pool = sorted(rng.sample(pool, n_base))
    base = table.take(pool) if len(pool) != table.num_rows else table
    # dev first, from the hard samples only; pairs are drawn within train, so no dev sample is a parent
    # of a joined train sample (validation never sees a half of a training prompt)
    order = list(range(base.num_rows))
    rng.shuffle(order)
    n_dev = min(cfg.dev_size, base.num_rows // 2)  # a small hard set still leaves most rows for training
    if n_dev < cfg.dev_size:
        log.warning("augment: only %d hard samples; holding out %d (not dev_size=%d) for dev", base.num_rows,
                    n_dev, cfg.dev_size)
    dev = [Sample.from_row(r) for r in base.take(sorted(order[:n_dev])).to_pylist()] if n_dev else []
    train_base = base.take(sorted(order[n_dev:])) if n_dev else base
    n_aug = num_augmented(train_base.num_rows, cfg.share) if train_base.num_rows >= 2 else 0
    pairs = plan_pairs(train_base.num_rows, n_aug + n_aug // 20 + 2, seed=cfg.seed) if n_aug else []
    rows, reasons = _join_pairs(train_base, pairs, cfg) if pairs else ([], [])
    seen: set[str] = set(base.column("id").to_pylist())
    augmented: list[Sample] = []
    for r in rows:
        if r is not None and r["id"] not in seen and len(augmented) < n_aug:
            seen.add(r["id"])
            augmented.append(Sample.from_row(r))
    train = [Sample.from_row(r) for r in train_base.to_pylist()] + augmented
    rng.shuffle(train)
    samples = train + dev
    report = {
        "base": base.num_rows,
        "augmented": len(augmented),
        "share": round(len(augmented) / max(len(train), 1), 4),  # of the train set (dev holds no joined rows)
        "skipped_pairs": len(reasons),
        "skipped_examples": reasons[:20],
        "train": len(train),
        "dev": len(dev),
        "task": task.name,
        "verl": {"train": f"{VERL_DIR}/train.parquet", "dev": f"{VERL_DIR}/dev.parquet" if dev else None},
    }
    if len(augmented) < n_aug:
        log.warning("augment: only %d of %d joined samples could be made", len(augmented), n_aug)
    with ShardWriter(cfg.out, stage=STAGE, config=asdict(cfg)) as w:
        for s in samples:
            w.write(s)
        write_verl_parquet(train, w.work_dir / VERL_DIR / "train.parquet", task)
        if dev:
            write_verl_parquet(dev, w.work_dir / VERL_DIR / "dev.parquet", task)
        w.report = report
    log.info("augment: %d base + %d joined (%.1f%%) -> %s", report["base"], report["augmented"],
             100 * report["share"], cfg.out)
    return {**{k: v for k, v in report.items() if k != "skipped_examples"}, "out": str(cfg.out)}


def verl_files(out: str | Path) -> dict[str, str | None]:
    """Paths of the verl Parquet files of a built RL set (for verl's ``data.train_files`` / ``val_files``)."""
    from guardrl.core.shards import read_manifest

    rel = read_manifest(out)[STAGE]["verl"]
    return {k: (str(Path(out) / v) if v else None) for k, v in rel.items()}


def describe(out: str | Path) -> str:
    """A one-line description of a built RL set."""
    from guardrl.core.shards import read_manifest

    r = read_manifest(out)[STAGE]
    return json.dumps({k: r[k] for k in ("base", "augmented", "share", "train", "dev", "skipped_pairs")})
