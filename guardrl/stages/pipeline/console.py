"""The pipeline's console: one live line per stage, the stage logs read as they grow, quiet children.

Each stage's child process writes everything to ``<run_dir>/logs/<stage>[-<tag>].log`` (see
:func:`guardrl.stages.pipeline.commands.run_cli`). :class:`StageConsole` reads those files while the stage
runs and shows one line per stage with its own figures (:mod:`guardrl.stages.pipeline.progress`): rewritten
in place on a terminal, printed at most every ``every_s`` seconds elsewhere (a CI log, a pipe).
``verbose`` streams every log line instead, prefixed ``[stage]``. A failed stage prints its log's
tail and the log's path.

Harmless third-party notices are silenced where guardrl starts the process, never by filtering
the log: :func:`quiet_env` adds Python warning filters for the verl engines a CPU install does not
have; :func:`quiet_driver_env` sets Ray's token-auth mode to the value a new local cluster takes
anyway, which is what makes Ray print its notice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from guardrl.stages.pipeline.progress import StageProgress, split_lines

# (message start, category) of warnings that say nothing to a guardrl user: verl imports every optional
# training engine at start-up, in every worker, and warns for each one that is not installed.
QUIET_WARNINGS: tuple[tuple[str, str], ...] = tuple(
    (f"{engine} engine is not available", "UserWarning")
    for engine in ("torchtitan", "veomni", "automodel", "mindspeed", "megatron")
)
TAIL_LINES = 25


def quiet_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with :data:`QUIET_WARNINGS` as ``PYTHONWARNINGS`` filters; the user's own filters come last (win)."""
    ours = [f"ignore:{msg}:{cat}" for msg, cat in QUIET_WARNINGS]
    user = [w for w in env.get("PYTHONWARNINGS", "").split(",") if w.strip()]
    return {**env, "PYTHONWARNINGS": ",".join([*ours, *user])}


def quiet_driver_env(environ: dict[str, str] | None = None) -> None:
    """Before the pipeline starts a local Ray cluster: ``RAY_AUTH_MODE=token`` unless set or ``RAY_ADDRESS`` is.

    Ray 2.60 turns token authentication on for every new local cluster and, because the mode was not
    set, logs a warning saying so; setting the same mode explicitly keeps the behaviour and drops the
    notice. Joining a cluster (``RAY_ADDRESS``) leaves the user's setting alone.
    """
    environ = os.environ if environ is None else environ
    if not environ.get("RAY_ADDRESS") and "RAY_AUTH_MODE" not in environ:
        environ["RAY_AUTH_MODE"] = "token"


def fmt_summary(summary: Mapping[str, Any]) -> str:
    """A stage summary as ``k=v, ...`` (floats to 4 significant digits)."""
    return ", ".join(f"{k}={f'{v:.4g}' if isinstance(v, float) else v}" for k, v in summary.items())


def duration(seconds: float) -> str:
    """``75.2`` -> ``1m15s``; under a minute ``12.3s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}h{m % 60:02d}m{s:02d}s" if m >= 60 else f"{m}m{s:02d}s"


class _Tail:
    """New text of one log file since the last read (starting at its size when the stage began)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.is_file() else 0
        self.rest = ""

    def read(self) -> list[str]:
        if not self.path.is_file():
            return []
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        self.offset += len(data)
        lines, self.rest = split_lines(self.rest, data.decode("utf-8", errors="replace"))
        return lines


class StageConsole:
    """Hooks for :func:`guardrl.stages.pipeline.runner.run_pipeline`: ``start``, ``tick``, ``done``, ``failed``."""

    def __init__(self, console: Any, run_dir: Path, verbose: bool = False, every_s: float = 30.0) -> None:
        self.console = console
        self.logs = Path(run_dir) / "logs"
        self.verbose = verbose
        self.every_s = every_s
        self.live: Any = None
        self.name = ""
        self.t0 = 0.0
        self.tails: dict[str, _Tail] = {}
        self.progress = StageProgress("")
        self.last_print = 0.0

    # -- what the runner calls
    def start(self, name: str) -> None:
        self.name, self.t0, self.last_print = name, time.perf_counter(), time.perf_counter()
        self.progress = StageProgress(name)
        self.tails = {}
        self._discover(at_start=True)
        if self.verbose:
            self.console.print(f"[bold]{name}[/bold] running (log: {self.logs / name}*.log)")
        elif self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self._line(), console=self.console, refresh_per_second=4, transient=True)
            self.live.start()
        else:
            self.console.print(f"{name}: running (log: {self.logs / name}.log)")

    def tick(self, name: str) -> None:
        changed = self._drain()
        if self.live is not None:
            self.live.update(self._line())
        elif not self.verbose and changed and time.perf_counter() - self.last_print >= self.every_s:
            self.last_print = time.perf_counter()
            self.console.print(f"{name}: {duration(time.perf_counter() - self.t0)} {self.progress.render()}")

    def done(self, res: Any) -> None:
        """A finished or skipped stage: its final line (figures of the run, then the stage's summary)."""
        self._stop()
        figures = self.progress.render() if res.status == "ran" and res.name == self.name else ""
        mark, colour = ("✓", "green") if res.status == "ran" else ("·", "cyan")
        what = f"ran in {duration(res.seconds)}" if res.status == "ran" else "unchanged, skipped"
        self.console.print(f"[{colour}]{mark} {res.name:<8}[/{colour}] {what}"
                           + (f"  {figures}" if figures else "") + f"  [dim]{fmt_summary(res.summary)}[/dim]",
                           highlight=False)
        self.name = ""  # no stage running: a later error is not this stage's

    def failed(self, error: BaseException) -> None:
        """The running stage failed: the tail of its newest log and the log's path (or just the error)."""
        if self.name:
            self._drain()
        self._stop()
        logs = sorted((t.path for t in self.tails.values() if t.path.is_file()), key=lambda p: p.stat().st_mtime)
        cause = getattr(error, "cause", None) or error
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        if not self.name or not logs:
            self.console.print(f"[red]error:[/red] {cause}", markup=True, highlight=False)
            return
        log = logs[-1]
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-TAIL_LINES:]
        self.console.print(f"[red]✗ {self.name:<8} failed after {duration(time.perf_counter() - self.t0)}[/red]"
                           f"  {self.progress.render()}")
        self.console.print(f"--- last {len(tail)} lines of {log} ---", markup=False)
        for line in tail:
            self.console.print(line, markup=False, highlight=False)
        self.console.print(f"[red]error:[/red] {first}", highlight=False)
        self.console.print(f"full log: {log}", markup=False, highlight=False)

    # -- helpers
    def _drain(self) -> bool:
        """Read what the stage's logs gained; stream it (verbose) and update the figures. True if one changed."""
        self._discover()
        changed = False
        for tag, tail in self.tails.items():
            for line in tail.read():
                if self.verbose:
                    prefix = f"[{self.name}{'-' + tag if tag else ''}]"
                    self.console.print(f"{prefix} {line}", markup=False, highlight=False)
                changed |= self.progress.feed(line, tag)
        return changed

    def _discover(self, at_start: bool = False) -> None:
        """Start reading every ``<stage>.log`` / ``<stage>-<tag>.log`` (a stage may open a new one mid-run)."""
        if not self.logs.is_dir():
            return
        for path in sorted(self.logs.glob(f"{self.name}*.log")):
            stem = path.stem
            if stem != self.name and not stem.startswith(self.name + "-"):
                continue
            tag = stem[len(self.name) + 1:]
            if tag not in self.tails:
                tail = _Tail(path)
                if not at_start:
                    tail.offset = 0  # created during this run: read it whole
                self.tails[tag] = tail

    def _line(self) -> Any:
        from rich.text import Text

        spin = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"[int(time.perf_counter() * 4) % 10]
        return Text(f"{spin} {self.name:<8} {duration(time.perf_counter() - self.t0):>7}  {self.progress.render()}")

    def _stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


# ----------------------------------------------------------------------------- what the demo guard is

REAL_RECIPES = ("recipes/qwen2_5_vl_3b", "recipes/qwen2_5_vl_7b")
SMOKE_PARAMETERS = 100_000_000  # below this the trained guard is a smoke test, and the pipeline says so


def count_parameters(model_dir: Path) -> int | None:
    """Parameters stored in a folder's ``*.safetensors`` files, from their JSON headers (no weights read)."""
    import json
    import math

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with f.open("rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size))
        total += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    return total


def _stage_seconds(run_dir: Path, name: str) -> float:
    from guardrl.stages.pipeline.runner import read_marker

    marker = read_marker(run_dir / name) or {}
    return float(marker.get("seconds") or 0.0)


def _class_figures(metrics: Mapping[str, float]) -> str:
    parts = []
    for task in ("request", "response"):
        p = f"guard/avg/{task}/"
        if p + "n" in metrics:
            parts.append(f"{task} harmful recall {100 * metrics[p + 'recall']:.1f}%, unharmful recall "
                         f"{100 * metrics[p + 'unharmful_recall']:.1f}% (F1 {100 * metrics[p + 'f1']:.1f} vs "
                         f"{100 * metrics[p + 'all_harmful_f1']:.1f} for all-harmful)")
    return "; ".join(parts)


def demo_note(run_dir: Path, device: str = "a CPU") -> str | None:
    """One line under the demo's table: what the trained guard is (a smoke test, when it is small), how
    to train the real one, and its per-class figures; ``None`` without an export or a large model."""
    import json

    run_dir = Path(run_dir)
    n = count_parameters(run_dir / "export")
    if n is None or n >= SMOKE_PARAMETERS:
        return None
    minutes = (_stage_seconds(run_dir, "sft") + _stage_seconds(run_dir, "rl")) / 60
    note = (f"This is a {n / 1e6:.1f}M-parameter smoke-test guard trained for {max(minutes, 0.1):.0f} minutes "
            f"on {device}: it shows that every stage runs, not that it guards anything.")
    results = run_dir / "eval" / "rl" / "results.json"
    if results.is_file():
        figures = _class_figures(json.loads(results.read_text()).get("metrics", {}))
        if figures:
            note += f" Its figures on guard-mini dev: {figures}."
    note += (f" A real guard (Qwen2.5-VL-3B on GPUs): make sft RECIPE={REAL_RECIPES[0]}/sft.yaml, then make reject, "
             f"augment, rl, export and eval, each with RECIPE={REAL_RECIPES[0]}/<stage>.yaml (7B: {REAL_RECIPES[1]}/).")
    return note


def rewrite_demo_note(run_dir: Path, device: str = "a CPU") -> str | None:
    """One line under the rewrite demo's table: the rewriter is a smoke test when small, its dev parse rate,
    what the safety figures can and cannot say, and the real recipe; ``None`` without a small trained rewriter."""
    import json

    run_dir = Path(run_dir)
    n = count_parameters(run_dir / "rewrite_sft" / "hf")
    if n is None or n >= SMOKE_PARAMETERS:
        return None
    minutes = _stage_seconds(run_dir, "rewrite_sft") / 60
    note = (f"This is a {n / 1e6:.1f}M-parameter smoke-test rewriter trained for {max(minutes, 0.1):.0f} minutes on "
            f"{device} on templated-teacher data: it shows that synthesis, training and evaluation run and that it "
            f"learned the output format, not that it makes anything safer.")
    from guardrl.stages.pipeline.rewrite_stages import DEV_REPORT

    dev = run_dir / "rewrite_sft" / DEV_REPORT
    if dev.is_file():
        report = json.loads(dev.read_text())
        note += f" Its rewrites parse on {100 * report['parse_rate']:.1f}% of {report['n']} guard-mini dev prompts."
    note += (" The target is the untrained tiny base model and the judge the demo guard, so the safety columns are "
             "the plumbing's, to read against the refuse-all row. The paper's rewriter: make synth "
             "RECIPE=recipes/qwen2_vl_7b/rewrite_synth.yaml, then make sft and make rewrite-eval with RECIPE="
             "recipes/qwen2_vl_7b/rewrite_sft.yaml and rewrite_eval.yaml.")
    return note
