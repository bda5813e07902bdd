"""Disk full: a stage writing to a small filesystem fails with a clear message (exit 2, no traceback) and leaves
the previous complete output untouched. A 2 MB tmpfs mounted by the test when it runs as root; otherwise
(and also, always) ``RLIMIT_FSIZE`` set in the child emulates it ("File too large")."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_helpers import REPO, assert_user_error

from guardrl.core.shards import verify

pytestmark = pytest.mark.reliability
AREA = "Disk full"


def _tree_hash(d: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(d.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(d)).encode() + p.read_bytes())
    return h.hexdigest()


def _guard_mini(out: Path, *extra: str, preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "data_prep.guard_mini", "--out", str(out), *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=600, preexec_fn=preexec,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MB tmpfs (root only); skips when mounting is not permitted."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root; the RLIMIT_FSIZE test covers this case")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"mount not permitted here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _check_failed_run(proc, out: Path, before: str, *needles: str) -> str:
    msg = assert_user_error(proc, *needles)
    verify(out / "train")  # the previous output still reads, hashes and all
    verify(out / "dev")
    assert _tree_hash(out) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # temp folder removed
    return msg


def test_tmpfs_full(record, small_fs):
    out = small_fs / "gm"
    assert _guard_mini(out, "--limit", "20").returncode == 0
    before = _tree_hash(out)
    proc = _guard_mini(out, "--limit", "600")  # ~3.5 MB with its typographic images
    msg = _check_failed_run(proc, out, before, "No space left on device")
    record(AREA, "`python -m data_prep.guard_mini --limit 600` (~3.5 MB) into a 2 MB tmpfs that holds the "
           "previous (20-row) output", f"exit 2: {msg}; previous output intact (same bytes, verifies), temp "
           "folder removed", expected="clear message; previous outputs intact")


def test_file_size_limit(tmp_path, record):
    import resource

    out = tmp_path / "gm"
    assert _guard_mini(out, "--limit", "20").returncode == 0
    before = _tree_hash(out)
    proc = _guard_mini(out, "--limit", "300",  # one 1.5 MB shard
                       preexec=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20)))
    msg = _check_failed_run(proc, out, before, "File too large")
    record(AREA, "`python -m data_prep.guard_mini --limit 300` (one 1.5 MB shard) with `RLIMIT_FSIZE` = 1 MB set in the "
           "child (emulated full disk, no mount needed) over a previous (20-row) output",
           f"exit 2: {msg}; previous output intact, temp folder removed", expected="clear message; previous outputs intact")
