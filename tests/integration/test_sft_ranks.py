"""The claim of ``guardrl/stages/sft/trainer.py``'s docstring, checked as verl checks vectorised code against a loop:
a step's loss is the target-token NLL summed over the global batch / its target tokens, however the batch is
split, so 1 rank x 4 micro-batches and 2 gloo ranks x 2 micro-batches give the same loss and gradients.

Both runs are the trainer itself (``tests/integration/sft_ranks_worker.py``: ``SFTRecipe.setup/train/cleanup``
on a gloo group, in one process per rank, as torchrun starts them) on the tiny model, one optimizer step,
gradients recorded by an optimizer pre-hook (after the micro-steps, FSDP2's reduce-scatter and the clip,
which is off: a clip to norm 1 would hide a scale error). The 8 samples are built so that both splits cut
the same 4 micro-batches (asserted through the trainer's own ``StepSchedule``) and so that the micro-batches
carry different numbers of target tokens (rank 0's two: ~1/3 of the step's, rank 1's: ~2/3): a rank-local or
micro-batch-local mean, or a missing factor for FSDP's averaging over ranks, changes the loss and gradients
by a factor far outside the tolerance.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from guardrl.core.schema import Sample
from guardrl.core.shards import write_samples
from guardrl.stages.sft.config import SFTConfig
from guardrl.stages.sft.data import StepSchedule, length_estimates, load_sft_table
from guardrl.tasks.guard.parse import Verdict, format_verdict

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "sft_ranks_worker.py"
N, GLOBAL, MICRO, SEED = 8, 8, 2, 0

# fp32 on CPU. The two runs add the same per-token terms in a different order (4 micro-batch backward
# passes accumulated on one rank vs 2 per rank, then gloo's reduce-scatter average times the trainer's
# world-size factor), so they agree to rounding, not bit for bit. Measured here (2 runs of each): the loss
# is the same double (8.333594018286401: its sum is reduced in float64), the largest gradient difference is
# 1.7e-7 of that parameter's largest |gradient|. Tolerances: rtol 1e-6 on the loss; per parameter
# atol = 1e-5 x its largest |gradient| (+ rtol 1e-4), ~60x above rounding and far below any normalisation
# error (a factor of 1/2 or 2, or the 1/3 vs 2/3 token split between the ranks).
# The logged grad_norm (the clip's input) is torch's fp32 norm over ~1M embedding gradients: it is off the
# float64 norm of the same gradients by 6.1e-5 (1 rank) and 2.5e-5 (2 ranks) relative, hence rtol 2e-4 there
# (a rank-local norm over FSDP2 shards would be ~1/sqrt(2) of it).
LOSS_RTOL = 1e-6
GRAD_RTOL, GRAD_ATOL_REL = 1e-4, 1e-5
GRAD_NORM_RTOL = 2e-4


def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (56, 56), color).save(buf, "PNG")
    return buf.getvalue()


def _samples() -> list[Sample]:
    """8 text+image samples; the j-th of the step's permutation is the j-th shortest (see module docstring)."""
    order = StepSchedule(num_samples=N, global_batch=GLOBAL, micro_batch=MICRO, world_size=1, rank=0,
                         seed=SEED).order(0)
    rank_of = {idx: j for j, idx in enumerate(order)}  # position of each row in the step's sample order
    out = []
    for i in range(N):
        j = rank_of[i]
        harmful = j % 2 == 0
        label = "harmful" if harmful else "unharmful"
        request = " ".join(["please"] * (2 + j)) + (" help me hurt someone" if harmful else " bake bread")
        reasoning = " ".join(["the request is checked carefully"] * (1 + 2 * j))
        out.append(Sample(id=f"rank-{i}", source="toy", modality="text_image", request=request,
                          images=(_png((30 * j, 100, 200 - 20 * j)),), label_request=label,
                          target=format_verdict(Verdict(label, None, reasoning, True))))
    return out


def _cfg(model: Path, data: Path, out: Path, world: int) -> dict:
    cfg = SFTConfig()
    cfg.model.path, cfg.model.dtype, cfg.model.activation_checkpointing = str(model), "float32", False
    cfg.data.path, cfg.data.train_split, cfg.data.max_seq_len, cfg.data.balance = str(data), None, 512, "none"
    cfg.trainer.output_dir, cfg.trainer.global_batch_size, cfg.trainer.micro_batch_size = str(out), GLOBAL, MICRO
    cfg.trainer.max_steps, cfg.trainer.seed, cfg.trainer.log_every = 1, SEED, 1
    cfg.optim.lr, cfg.optim.warmup_ratio, cfg.optim.max_grad_norm = 1e-3, 0.0, 0.0  # 0: no clipping
    cfg.checkpoint.every_steps, cfg.checkpoint.save_hf, cfg.checkpoint.resume = 0, False, "never"
    cfg.resources.launcher, cfg.resources.num_workers, cfg.resources.cpus_per_worker = "local", world, 1
    cfg.logging.wandb, cfg.logging.progress_bar = False, False
    return cfg.validate().to_dict()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(model: Path, data: Path, out: Path, world: int) -> tuple[dict, dict[str, torch.Tensor]]:
    """The trainer on ``world`` gloo ranks (one process each); returns step 1's metrics and gradients."""
    out.mkdir(parents=True)
    config = out.parent / f"{out.name}.json"
    config.write_text(json.dumps(_cfg(model, data, out, world)))
    grads = out.parent / f"{out.name}.grads.pt"
    port = _free_port()
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), HF_HUB_OFFLINE="1", WANDB_MODE="disabled",
                   PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        log = (out.parent / f"{out.name}.rank{rank}.log").open("wb")
        procs.append((subprocess.Popen([sys.executable, str(WORKER), str(config), str(grads)], env=env, cwd=REPO,
                                       stdout=log, stderr=subprocess.STDOUT), log))
    for rank, (proc, log) in enumerate(procs):
        try:
            rc = proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
        assert rc == 0, f"rank {rank} of {world} exited {rc}:\n" + (
            out.parent / f"{out.name}.rank{rank}.log").read_text()[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [r["step"] for r in rows] == [1]
    return rows[0], torch.load(grads, weights_only=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_samples(tmp_path_factory.mktemp("ranks") / "data", _samples(), stage="test.sft_ranks")


def test_same_micro_batches_and_uneven_tokens(data):
    """Both splits cut the same 4 micro-batches, whose sizes (a proxy of their tokens) grow along the step."""
    table, _ = load_sft_table(data, None, None)
    lengths = length_estimates(table)

    def cut(world: int) -> list[list[int]]:
        return [mb for rank in range(world) for mb in StepSchedule(
            num_samples=N, global_batch=GLOBAL, micro_batch=MICRO, world_size=world, rank=rank, seed=SEED,
            lengths=lengths).micro_batches(0, 0)]

    one, two = cut(1), cut(2)
    assert one == two and len(one) == 4
    sizes = [sum(lengths[i] for i in mb) for mb in one]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_one_rank_x4_equals_two_gloo_ranks_x2(tiny_model_dir, data, tmp_path):
    m1, g1 = _run(tiny_model_dir, data, tmp_path / "one_rank", world=1)
    m2, g2 = _run(tiny_model_dir, data, tmp_path / "two_ranks", world=2)
    assert m1["target_tokens"] == m2["target_tokens"] > 0
    worst = max(((g1[n] - g2[n]).abs().max() / g1[n].abs().max().clamp_min(1e-30)).item() for n in g1)
    print(f"loss {m1['loss']!r} vs {m2['loss']!r}; grad_norm {m1['grad_norm']!r} vs {m2['grad_norm']!r}; "
          f"largest gradient difference / parameter's largest gradient {worst:.3e}")
    assert m2["loss"] == pytest.approx(m1["loss"], rel=LOSS_RTOL)
    norm = torch.stack([g.double().square().sum() for g in g1.values()]).sum().sqrt().item()
    assert m1["grad_norm"] == pytest.approx(norm, rel=GRAD_NORM_RTOL)
    assert m2["grad_norm"] == pytest.approx(norm, rel=GRAD_NORM_RTOL)
    assert sorted(g1) == sorted(g2)
    nonzero = [n for n in g1 if g1[n].abs().max() > 0]
    assert any(n.startswith("model.visual.") for n in nonzero)  # the images reached the loss
    assert any(".layers." in n and "language_model" in n for n in nonzero)
    for name in g1:
        scale = g1[name].abs().max().item()
        torch.testing.assert_close(g2[name], g1[name], rtol=GRAD_RTOL, atol=GRAD_ATOL_REL * scale + 1e-12,
                                   msg=lambda m, name=name: f"{name}: {m}")
