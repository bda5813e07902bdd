"""``make submit TARGET=... RECIPE=...``: run a make target as a Ray job (``ray job submit --working-dir .``).

The job's working directory is this checkout (large and generated folders
excluded); it runs ``make TARGET ...`` with the given virtual environment
(``GUARDRL_SKIP_INSTALL=1``: cluster nodes are expected to have guardrl
installed at that path, e.g. from the same image). ``RAY_ADDRESS`` (or
``--address``) picks the cluster's dashboard address.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

EXCLUDES = [".venv", ".venv-*", ".git", "outputs", "runs", "wandb", "**/__pycache__", ".pytest_cache",
            ".hypothesis", ".ruff_cache", "*.egg-info", ".bench-site"]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def build_entrypoint(make_args: list[str], venv: str) -> str:
    return "make " + " ".join(shlex.quote(a) for a in [*make_args, f"VENV={venv}", "GUARDRL_SKIP_INSTALL=1"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", required=True, help="Ray dashboard address, e.g. http://127.0.0.1:8265")
    parser.add_argument("--venv", required=True, help="absolute path of the virtual environment on the nodes")
    parser.add_argument("--working-dir", default=".")
    parser.add_argument("--wait", action="store_true", help="follow the job until it ends; exit 1 unless it succeeded")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait with --wait")
    parser.add_argument("make_args", nargs="+", help="make target and VAR=value arguments")
    args = parser.parse_args(argv)

    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(args.address)
    entrypoint = build_entrypoint(args.make_args, args.venv)
    runtime_env = {
        "working_dir": args.working_dir,
        "excludes": EXCLUDES,
        "env_vars": {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"},
    }
    # A head that has just started may not have its job agent up yet: retry that one error for a while.
    deadline = time.monotonic() + 300.0
    while True:
        try:
            job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
            break
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2.0)
    print(f"submitted job {job_id}: {entrypoint}")
    print(f"follow logs:  ray job logs --address {args.address} --follow {job_id}")
    print(f"status:       ray job status --address {args.address} {job_id}")
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.timeout
    status = client.get_job_status(job_id)
    while str(status.value if hasattr(status, "value") else status) not in TERMINAL:
        if time.monotonic() > deadline:
            print(f"job {job_id} still {status} after {args.timeout:.0f}s", file=sys.stderr)
            return 1
        time.sleep(1.0)
        status = client.get_job_status(job_id)
    status = str(status.value if hasattr(status, "value") else status)
    print(client.get_job_logs(job_id))
    print(f"job {job_id} {status}")
    return 0 if status == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
