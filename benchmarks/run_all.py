"""``make bench``: run every benchmark in its own process, then print one table and write the page.

    python -m benchmarks.run_all                      # CPU benchmarks -> docs/benchmarks.md
    python -m benchmarks.run_all --small              # smoke run, tiny sizes -> outputs/bench/small/
    python -m benchmarks.run_all --only reward,sft    # a subset
    python -m benchmarks.run_all --gpu                # make bench-gpu: 3B SFT + generation -> docs/benchmarks-gpu.md
    python -m benchmarks.run_all --resume             # after an interruption: keep what was measured, run the rest

Each benchmark writes a JSON result (``--json``) that :mod:`benchmarks.report` turns into rows:
``figure | guardrl | peer | peer value | ratio | goal | status`` — the ratio is always guardrl's figure
over the peer's, both measured in this run (for the reward the "peer" is the goal's budget, for data
prep and generation it is the other path of guardrl). A benchmark that fails gives a row saying so;
the others still run. Logs: ``<out>/logs/<name>.log``; all results: ``<out>/results.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.bench_grpo import REPO, side_env


@dataclass(frozen=True)
class Bench:
    """One benchmark: how to run it (full / small) and how long it may take."""

    name: str
    module: str
    full: tuple[str, ...]
    small: tuple[str, ...]
    timeout_s: float
    pin_core: bool = False  # run on one core (taskset), where the goal is stated per core
    json_flag: bool = True  # writes --json PATH; else the JSON report is parsed from stdout


CPU_BENCHES = (
    Bench("reward", "benchmarks.bench_reward", ("--n", "100000"), ("--n", "2000"), 600, pin_core=True),
    Bench("data", "benchmarks.bench_data", (), ("--sizes", "200", "1000", "--rate-size", "200"), 3600),
    Bench("generation", "benchmarks.bench_generation", (), ("--small",), 1800, json_flag=False),
    Bench("sft", "benchmarks.bench_sft", (), ("--small",), 3600),
    Bench("grpo", "benchmarks.bench_grpo", (), ("--small",), 3600),
    Bench("grpo_scaling", "benchmarks.bench_grpo", ("--scaling",), ("--scaling", "--small"), 5400),
    Bench("generation_vllm", "benchmarks.bench_vllm_generation", (), ("--small",), 1800),
    Bench("rl_rollout_vllm", "benchmarks.bench_grpo", ("--side", "rollouts"), ("--side", "rollouts", "--small"), 3600),
)
GPU_BENCHES = (
    Bench("sft_gpu", "benchmarks.bench_sft", ("--gpu",), ("--gpu", "--steps", "2"), 3600),
    Bench("generation_gpu", "benchmarks.bench_gpu_generation", (), ("--small",), 3600),
)


def cuda_device() -> str | None:
    """The first CUDA device's name, or None (asked in a child: this process stays CUDA-free)."""
    code = "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None
    name = r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else ""
    return name or None


def run_bench(b: Bench, small: bool, out: Path) -> dict[str, Any]:
    """Run one benchmark in a child process; returns its JSON result plus run facts, or an error."""
    result_path = out / f"{b.name}.json"
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", b.module, *(b.small if small else b.full)]
    if b.json_flag:
        cmd += ["--json", str(result_path)]
    if b.pin_core and _has_taskset():
        cmd = ["taskset", "-c", "0", *cmd]
    log_path = out / "logs" / f"{b.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    try:
        with log_path.open("w") as log:
            r = subprocess.run(cmd, cwd=REPO, env=side_env(trl=False), stdout=subprocess.PIPE, stderr=log,
                               text=True, timeout=b.timeout_s)
        stdout, rc = r.stdout, r.returncode
    except subprocess.TimeoutExpired as exc:
        out_bytes = exc.stdout or ""
        stdout, rc = out_bytes.decode() if isinstance(out_bytes, bytes) else out_bytes, "timeout"
    wall = time.perf_counter() - t0
    with log_path.open("a") as log:
        log.write("\n--- stdout ---\n" + stdout)
    shown = shlex.join("python" if c == sys.executable else c for c in cmd)
    log_name = log_path.relative_to(REPO) if log_path.is_relative_to(REPO) else log_path
    facts = {"command": shown, "rc": rc, "wall_s": wall, "load_before": load0, "load_after": os.getloadavg()[0],
             "log": str(log_name)}
    data = None
    if result_path.exists():
        data = json.loads(result_path.read_text())
    elif not b.json_flag:
        data = _json_in(stdout)
    if data is None:
        return {"name": b.name, "error": f"no result (exit {rc}; see {facts['log']})", **facts}
    return {"name": b.name, "result": data, **facts}


def _json_in(text: str) -> dict[str, Any] | None:
    """The first JSON object printed in ``text`` (possibly over several lines)."""
    dec = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch == "{":
            try:
                obj, _ = dec.raw_decode(text[i:])
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


def _has_taskset() -> bool:
    from shutil import which

    return which("taskset") is not None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="smoke run on tiny sizes (does not touch docs/)")
    ap.add_argument("--gpu", action="store_true", help="the GPU benchmarks (make bench-gpu)")
    ap.add_argument("--only", default=None, help="comma-separated benchmark names")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default outputs/bench[/small])")
    ap.add_argument("--resume", action="store_true",
                    help="keep the results an interrupted run left in <out>/results.json; run the rest")
    ap.add_argument("--page", type=Path, default=None,
                    help="markdown page (default docs/benchmarks.md, docs/benchmarks-gpu.md; --small: <out>/benchmarks.md)")
    ap.add_argument("--render-only", action="store_true", help="rewrite the page from <out>/results.json; run nothing")
    args = ap.parse_args(argv)
    out = args.out or (REPO / "outputs" / "bench" / ("small" if args.small else ("gpu" if args.gpu else "full")))
    out.mkdir(parents=True, exist_ok=True)
    page = args.page or (out / "benchmarks.md" if args.small else
                         REPO / "docs" / ("benchmarks-gpu.md" if args.gpu else "benchmarks.md"))
    if args.render_only:
        prev = json.loads((out / "results.json").read_text())
        return _write({k: v for k, v in prev.items() if k not in ("runs", "rows", "finished")}, prev["runs"], out,
                      page, finished=prev["finished"])
    benches = GPU_BENCHES if args.gpu else CPU_BENCHES
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(names) - {b.name for b in (*CPU_BENCHES, *GPU_BENCHES)})
        if unknown:
            ap.error(f"unknown benchmark(s) {unknown}; valid: {[b.name for b in (*CPU_BENCHES, *GPU_BENCHES)]}")
        benches = tuple(b for b in (*CPU_BENCHES, *GPU_BENCHES) if b.name in names)

    gpu = cuda_device()
    command = os.environ.get("GUARDRL_BENCH_COMMAND") or "python -m benchmarks.run_all " + " ".join(
        sys.argv[1:] if argv is None else argv)
    summary = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "command": command.strip(),
               "small": args.small, "machine": report.machine_info(gpu), "versions": report.versions()}
    done: dict[str, dict[str, Any]] = {}
    if args.resume and (out / "results.json").exists():  # keep what an interrupted run already measured
        prev = json.loads((out / "results.json").read_text())
        if prev.get("small") == args.small:
            done = {r["name"]: r for r in prev["runs"] if "result" in r}
            summary.update(started=prev["started"], machine=prev["machine"],
                           command=f"{prev['command']}, then {summary['command']}")
    runs: list[dict[str, Any]] = []
    for i, b in enumerate(benches):
        if b.name in done:
            print(f"[bench] {b.name}: kept from the interrupted run", flush=True)
            runs.append(done[b.name])
            continue
        if b.name.endswith("_gpu") and gpu is None:
            runs.append({"name": b.name, "not_measured": report.NO_GPU})
            continue
        if b.name.endswith("_vllm") and importlib.util.find_spec("vllm") is None:
            runs.append({"name": b.name, "not_measured": report.NO_VLLM})
            continue
        print(f"[bench] {b.name}: running ...", flush=True)
        res = run_bench(b, args.small, out)
        print(f"[bench] {b.name}: {'error: ' + res['error'] if 'error' in res else 'done'} in {res['wall_s']:.0f} s "
              f"(load {res['load_before']:.1f} -> {res['load_after']:.1f})", flush=True)
        runs.append(res)
        pending = [{"name": p.name, "not_measured": "not run yet (run interrupted?)"} for p in benches[i + 1:]]
        _write(summary, runs + pending, out, page, quiet=True)  # a stopped run still leaves its figures
    if not args.gpu and not args.only:  # the GPU rows belong on the page too, measured or not
        why = report.NO_GPU if gpu is None else "run `make bench-gpu` (docs/benchmarks-gpu.md)"
        runs += [{"name": b.name, "not_measured": why} for b in GPU_BENCHES]
    return _write(summary, runs, out, page)


def _write(summary: dict[str, Any], runs: list[dict[str, Any]], out: Path, page: Path, quiet: bool = False,
           finished: str | None = None) -> dict[str, Any]:
    """Rows from ``runs`` -> ``<out>/results.json`` and ``page`` (and the console table unless ``quiet``)."""
    finished = finished or datetime.now(UTC).isoformat(timespec="seconds")
    summary = {**summary, "finished": finished, "runs": runs}
    summary["rows"] = [row for run in runs for row in report.rows(run)]
    if summary["small"]:  # tiny sizes say nothing about the goals
        for row in summary["rows"]:
            if row["status"] in ("ok", "missed"):
                row["status"] = "n/a (smoke)"
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str))
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(report.markdown(summary))
    if not quiet:
        report.print_table(summary)
        print(f"[bench] page: {page}; results: {out / 'results.json'}")
    return summary


if __name__ == "__main__":
    main()
