"""SFT data: guardrl Parquet rows -> processor-encoded sequences with assistant-only labels, in a
deterministic, resumable order.

Per sample (:class:`SFTEncoder`): the task's prompt (``task.prompt_messages``; the guard: system + user
turn with the images) and the task's SFT target (``task.sft_target``) as the assistant turn are rendered with the model's chat template and encoded by its
processor (Qwen2.5-VL: each image becomes ``<|vision_start|><|image_pad|>*k<|vision_end|>`` and
``pixel_values`` rows). Labels are ``-100`` everywhere except the assistant's answer: the tokens
after ``<|im_start|>assistant\\n`` up to and including the closing ``<|im_end|>``.

Order (:class:`StepSchedule`): epoch ``e`` visits a permutation drawn from ``seed`` and ``e``;
optimizer step ``s`` takes samples ``[s * G, (s + 1) * G)`` of it (``G`` = global batch; the
incomplete tail is left out), rank ``r`` the ``r``-th contiguous slice of those, cut into
micro-batches. The order depends only on ``(seed, epoch, step)``, so a resumed run sees exactly the
samples an uninterrupted one would.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from guardrl.core.schema import Sample
from guardrl.tasks import DEFAULT_TASK, Task, get_task

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
ASSISTANT_PREFIX = "<|im_start|>assistant\n"
# Dummy image for micro-batches without images: 28x28 pixels -> 1 merged vision token. It keeps every
# vision parameter in the graph on every rank, so FSDP's gradient reduce-scatters match across ranks.
_DUMMY_SIDE = 28


@dataclass(frozen=True)
class DataStats:
    """What loading the training split kept and left out."""

    rows: int
    """Rows in the split."""
    no_target: int
    """Rows skipped because ``target`` is null (no reasoning target to learn)."""
    kept: int
    """Trainable rows (after ``max_samples``)."""


def load_sft_table(path: str, split: str | None, max_samples: int | None = None):
    """Read a verified guardrl shard dir, keep rows with a target.

    Returns:
        ``(table, stats)``: a ``pyarrow.Table`` with ``ARROW_SCHEMA`` and :class:`DataStats`.

    Raises:
        guardrl.core.shards.ShardError: the folder fails verification.
        ValueError: no row has a target.
    """
    import pyarrow.compute as pc

    from guardrl.core.shards import read_table

    table = read_table(path, split=split)
    rows = table.num_rows
    table = table.filter(pc.is_valid(table["target"]))
    no_target = rows - table.num_rows
    if max_samples is not None:
        table = table.slice(0, max_samples)
    stats = DataStats(rows=rows, no_target=no_target, kept=table.num_rows)
    if no_target:
        log.info("%s: skipped %d of %d rows without a target", path, no_target, rows)
    if stats.kept == 0:
        raise ValueError(f"{path} (split {split}): no row has a target to train on ({rows} rows)")
    return table, stats


def sft_messages(task: Task, sample: Sample, target: str) -> list[dict[str, Any]]:
    """The SFT conversation: ``task.prompt_messages(sample)`` then ``target`` as the assistant turn."""
    return [*task.prompt_messages(sample), {"role": "assistant", "content": [{"type": "text", "text": target}]}]


class SFTEncoder:
    """Encode one :class:`~guardrl.core.schema.Sample` into model inputs with assistant-only labels.

    Args:
        processor: a Qwen2.5-VL processor (tokenizer + image processor + chat template).
        max_seq_len: cutoff; longer sequences lose the end of the target. A sample whose prompt
            alone reaches the cutoff becomes a short text-only placeholder with no label (counted
            by the caller through the ``dropped`` flag), so every rank still runs the same steps.
        task: renders the prompt and the target (default: the guard).
    """

    def __init__(self, processor: Any, max_seq_len: int, task: Task | None = None) -> None:
        self.task = task or get_task(DEFAULT_TASK)
        self.processor = processor
        self.max_seq_len = max_seq_len
        tok = processor.tokenizer
        self.prefix = tok.encode(ASSISTANT_PREFIX, add_special_tokens=False)
        self.eos_id = tok.convert_tokens_to_ids("<|im_end|>")
        self.vision_start_id = tok.convert_tokens_to_ids("<|vision_start|>")

    def __call__(self, sample: Sample) -> dict[str, Any]:
        from guardrl.generation.hf import decode_images

        target = self.task.sft_target(sample)
        if target is None:
            raise ValueError(f"sample {sample.id!r} has no target")
        images = decode_images(sample.images)
        msgs = sft_messages(self.task, sample, target)
        text = self.processor.apply_chat_template(msgs, tokenize=False)
        enc = self.processor(text=[text], images=images or None, return_tensors="pt")
        ids = enc["input_ids"][0]  # [L]
        start = self._target_start(ids, sample.id)
        end = self._target_end(ids, start)
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[start:end] = ids[start:end]
        item = {"input_ids": ids, "labels": labels, "dropped": False}
        if "mm_token_type_ids" in enc:
            item["mm_token_type_ids"] = enc["mm_token_type_ids"][0]
        if images:
            item["pixel_values"] = enc["pixel_values"]  # [patches, C*T*P*P]
            item["image_grid_thw"] = enc["image_grid_thw"]  # [images, 3]
        if len(ids) > self.max_seq_len:
            item = self._truncate(item, start)
        return item

    def _target_start(self, ids: torch.Tensor, sid: str) -> int:
        n, p = len(ids), len(self.prefix)
        seq = ids.tolist()
        for i in range(n - p, -1, -1):
            if seq[i : i + p] == self.prefix:
                return i + p
        raise ValueError(f"sample {sid!r}: no assistant turn found after chat templating")

    def _target_end(self, ids: torch.Tensor, start: int) -> int:
        hits = (ids[start:] == self.eos_id).nonzero()
        return start + int(hits[0, 0]) + 1 if len(hits) else len(ids)

    def _truncate(self, item: dict[str, Any], start: int) -> dict[str, Any]:
        cut = self.max_seq_len
        if start < cut:  # keep the whole prompt (all image tokens) and the head of the target
            out = dict(item)
            for key in ("input_ids", "labels", "mm_token_type_ids"):
                if key in out:
                    out[key] = out[key][:cut]
            return out
        ids = item["input_ids"]
        vis = (ids == self.vision_start_id).nonzero()
        keep = min(8, cut, int(vis[0, 0]) if len(vis) else 8)
        out = {"input_ids": ids[:keep], "labels": torch.full((keep,), IGNORE_INDEX), "dropped": True}
        if "mm_token_type_ids" in item:
            out["mm_token_type_ids"] = torch.zeros(keep, dtype=item["mm_token_type_ids"].dtype)
        return out


def target_positions(labels: torch.Tensor) -> torch.Tensor:
    """Positions ``t`` whose next token ``labels[:, t + 1]`` is a target in any row of ``labels`` ``[B, L]``.

    The loss reads logits only there; passing these as ``logits_to_keep`` skips the LM head on the
    prompt. Never empty (a batch of label-free rows keeps its last position, whose loss is 0), so
    every rank runs the same forward/backward.

    Returns:
        ``[K]`` int64 indices into ``[0, L - 1)``, ascending.
    """
    keep = (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)
    if keep.numel() == 0:
        keep = torch.tensor([max(labels.shape[1] - 2, 0)], device=labels.device)
    return keep


def dummy_image_item(processor: Any) -> dict[str, Any]:
    """A label-free row carrying one tiny image (see ``_DUMMY_SIDE``)."""
    from PIL import Image

    img = Image.new("RGB", (_DUMMY_SIDE, _DUMMY_SIDE), (0, 0, 0))
    text = "<|vision_start|><|image_pad|><|vision_end|>"
    enc = processor(text=[text], images=[img], return_tensors="pt")
    ids = enc["input_ids"][0]
    item = {"input_ids": ids, "labels": torch.full_like(ids, IGNORE_INDEX), "dropped": False,
            "pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"]}
    if "mm_token_type_ids" in enc:
        item["mm_token_type_ids"] = enc["mm_token_type_ids"][0]
    return item


def collate(items: Sequence[dict[str, Any]], pad_id: int, dummy: dict[str, Any] | None = None) -> dict[str, Any]:
    """Right-pad a micro-batch into model inputs.

    When no item has an image and ``dummy`` is given, ``dummy`` (a label-free row with one tiny
    image) is appended so the vision tower runs on every rank.

    Returns:
        ``input_ids`` / ``attention_mask`` / ``labels`` (and ``mm_token_type_ids``) ``[B, L]``,
        ``pixel_values`` ``[patches, D]`` and ``image_grid_thw`` ``[images, 3]`` when any item has
        an image; ``num_dropped`` (int): placeholders for samples over the cutoff.
    """
    items = list(items)
    if dummy is not None and not any("pixel_values" in it for it in items):
        items.append(dummy)
    length = max(len(it["input_ids"]) for it in items)
    b = len(items)
    input_ids = torch.full((b, length), pad_id, dtype=torch.long)
    labels = torch.full((b, length), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((b, length), dtype=torch.long)
    has_mm = "mm_token_type_ids" in items[0]
    mm = torch.zeros((b, length), dtype=torch.long) if has_mm else None
    for i, it in enumerate(items):
        n = len(it["input_ids"])
        input_ids[i, :n] = it["input_ids"]
        labels[i, :n] = it["labels"]
        attention[i, :n] = 1
        if mm is not None:
            mm[i, :n] = it["mm_token_type_ids"]
    batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
    if mm is not None:
        batch["mm_token_type_ids"] = mm
    with_images = [it for it in items if "pixel_values" in it]
    if with_images:
        batch["pixel_values"] = torch.cat([it["pixel_values"] for it in with_images])
        batch["image_grid_thw"] = torch.cat([it["image_grid_thw"] for it in with_images])
    batch["num_dropped"] = sum(bool(it["dropped"]) for it in items)
    return batch


def balance_weights(table: Any, mode: str) -> tuple[float, ...] | None:
    """Per-row sampling weights for ``data.balance`` (see :class:`guardrl.stages.sft.config.DataConfig`), summing to 1.

    Each modality keeps its share of the rows. Within it, ``label`` gives each request label an equal
    share; ``label_presence`` gives each (request label, response present) cell an equal share and splits
    a cell's share evenly between the response labels among its rows. A row's weight is its cell's share
    over the rows in its (sub)cell. ``none``: ``None`` (plain permutations).
    """
    if mode == "none":
        return None
    cols = {c: table[c].to_pylist() for c in ("modality", "label_request", "response", "label_response")}
    n = table.num_rows
    if mode == "label":
        keys = [(m, lr, None) for m, lr in zip(cols["modality"], cols["label_request"], strict=True)]
    elif mode == "label_presence":
        keys = [(m, (lr, resp is not None), lresp) for m, lr, resp, lresp in
                zip(cols["modality"], cols["label_request"], cols["response"], cols["label_response"], strict=True)]
    else:
        raise ValueError(f"unknown balance mode {mode!r}")
    per_mod = Counter(k[0] for k in keys)
    cells_per_mod = Counter(m for m, _ in {(k[0], k[1]) for k in keys})
    subs_per_cell = Counter((m, c) for m, c, _ in set(keys))
    rows_per_sub = Counter(keys)
    return tuple(per_mod[m] / n / cells_per_mod[m] / subs_per_cell[(m, c)] / rows_per_sub[(m, c, r)]
                 for m, c, r in keys)


def length_estimates(table: Any) -> tuple[int, ...]:
    """Cheap per-row size proxy for :class:`StepSchedule`: text characters + 1,000 per image."""
    import pyarrow.compute as pc

    chars = pc.add(pc.add(pc.utf8_length(table["request"]), pc.fill_null(pc.utf8_length(table["response"]), 0)),
                   pc.fill_null(pc.utf8_length(table["target"]), 0))
    images = pc.list_value_length(table["images"])
    return tuple(int(c) + 1000 * int(n) for c, n in zip(chars.to_pylist(), images.to_pylist(), strict=True))


class TableDataset(torch.utils.data.Dataset):
    """Random access to encoded rows of an Arrow table."""

    def __init__(self, table: Any, encoder: SFTEncoder) -> None:
        self.table = table
        self.encoder = encoder

    def __len__(self) -> int:
        return self.table.num_rows

    def sample(self, index: int) -> Sample:
        return Sample.from_row(self.table.slice(index, 1).to_pylist()[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.encoder(self.sample(index))


@dataclass(frozen=True)
class StepSchedule:
    """Which samples each rank sees at each optimizer step (see the module docstring).

    Attributes:
        num_samples: trainable rows.
        global_batch: samples per optimizer step over all ranks.
        micro_batch: samples per forward/backward on one rank.
        world_size / rank: this rank's place.
        seed: permutation seed.
        lengths: optional length estimate per sample; a rank's samples of one step are then ordered
            by it before being cut into micro-batches, so a micro-batch carries little padding (the
            step's loss is the same: it is normalised over the whole global batch).
        weights: optional sampling weight per sample (:func:`balance_weights`); an epoch is then
            ``num_samples`` draws with replacement in proportion to them, from the same seeded generator.
    """

    num_samples: int
    global_batch: int
    micro_batch: int
    world_size: int
    rank: int
    seed: int
    lengths: tuple[int, ...] | None = None
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.num_samples < self.global_batch:
            raise ValueError(f"{self.num_samples} trainable samples < one global batch of {self.global_batch}")
        if self.weights is not None and len(self.weights) != self.num_samples:
            raise ValueError(f"{len(self.weights)} weights for {self.num_samples} samples")

    @property
    def steps_per_epoch(self) -> int:
        return self.num_samples // self.global_batch

    @property
    def accum_steps(self) -> int:
        return self.global_batch // (self.micro_batch * self.world_size)

    def order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if self.weights is not None:
            w = torch.tensor(self.weights, dtype=torch.float64)
            return torch.multinomial(w, self.num_samples, replacement=True, generator=g).tolist()
        return torch.randperm(self.num_samples, generator=g).tolist()

    def micro_batches(self, epoch: int, step: int, order: list[int] | None = None) -> list[list[int]]:
        """This rank's ``accum_steps`` micro-batches of indices for ``step`` (0-based, within ``epoch``)."""
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(f"step {step} outside epoch of {self.steps_per_epoch} steps")
        order = self.order(epoch) if order is None else order
        g = order[step * self.global_batch : (step + 1) * self.global_batch]
        per_rank = self.global_batch // self.world_size
        mine = g[self.rank * per_rank : (self.rank + 1) * per_rank]
        if self.lengths is not None:
            mine = sorted(mine, key=lambda i: (self.lengths[i], i))
        return [mine[i : i + self.micro_batch] for i in range(0, per_rank, self.micro_batch)]

    def iter_from(self, epoch: int, step: int) -> Iterator[list[int]]:
        """Micro-batches of indices from ``(epoch, step)`` to the end of that epoch, in order."""
        order = self.order(epoch)
        for s in range(step, self.steps_per_epoch):
            yield from self.micro_batches(epoch, s, order)
