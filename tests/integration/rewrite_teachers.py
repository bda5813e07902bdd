"""User teachers named by ``teacher.kind: "<this file>:Class"`` in the synthesis tests (the plug-in point)."""

from __future__ import annotations

import hashlib
import time

from guardrl.generation.base import Completion
from guardrl.stages.rewrite.teachers import TemplatedTeacher

GARBAGE = (Completion("ok", 1), Completion("<rewrite>no</rewrite> and more text after the tag", 9),
           Completion("a long answer that stopped at max_new_tokens, so it is cut", 12, finish_reason="length"))


def _bad(sample_id: str, stage: str, seed: int) -> bool:
    """Garbage for about a third of (sample, stage, seed); sample ids ending in 'x' always get garbage."""
    h = int.from_bytes(hashlib.sha256(f"{sample_id}:{stage}:{seed}".encode()).digest()[:2], "little")
    return sample_id.endswith("x") or h % 3 == 0


class FlakyTeacher(TemplatedTeacher):
    """The templated teacher, but garbage for some prompts (depending on the seed), and slow enough
    (``DELAY`` seconds per stage call) to be killed mid-run."""

    DELAY = 0.25
    synthetic = True

    def answer(self, stage, samples, prompts, params):
        time.sleep(self.DELAY)
        good, errors = super().answer(stage, samples, prompts, params)
        out = [GARBAGE[i % 3] if _bad(s.id, stage, params.seed) else c
               for i, (s, c) in enumerate(zip(samples, good, strict=True))]
        return out, errors
