"""One line per pipeline stage: what a stage's log says about its progress (pure: ``re`` only).

Every stage writes its full output to ``<run_dir>/logs/<stage>[-<tag>].log``. The pipeline's console
does not show those lines; it reads them as they grow and keeps, per stage, the few figures a person
wants to see move (:class:`StageProgress`):

======== ====================================================================================
stage    figures, and the lines they come from
======== ====================================================================================
sft      ``step 88/732 loss 0.53``: the trainer's tqdm bar (``sft: 12%|..| 88/732 [.., loss=0.53]``),
         its ``SFT data: ...; 732 steps (global batch ...)`` line, or ``step N loss X`` log lines
reject   ``shards 3/6 kept 35/384``: ``reject: N prompts from .. in M work shards (K already done)``,
         ``reject: shard I done``, ``reject: kept K of N prompts``
rl       ``step 2/4 reward 0.41 clip 0.23``: verl's ``Training Progress: ..| 2/4`` bar and its console
         logger's ``step:2 - ... - critic/score/mean:0.41 - ... - actor/guard/clip_bound:0.23``
eval     ``sft 200/200 · rl 90/200``: the eval bar ``eval (hf x1): ..| 90/200`` of each run (the log's tag)
rewrite_ ``shards 2/3 written 1200/1200``: ``synth: N samples .. in M work shards (K already done)``,
synth    ``synth: shard I done``, ``synth: W of S samples``
rewrite_ as ``sft`` (the rewriter's training)
sft
rewrite_ ``rewrite 96/96 tiny-base 40/192 guard 0/288``: each phase's ``<phase>: i / n`` line
eval     (``rewrite``, ``answers of <target>``, ``guard``, ``judge``); ``<phase>: complete in the cache``
======== ====================================================================================

Lines are cleaned first (:func:`clean`): ANSI colours and Ray's ``(Worker pid=123)`` prefixes removed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_RAY_PREFIX = re.compile(r"^\((?:[\w.:-]+ )?pid=\d+(?:, ip=[\d.]+)?\)\s?")
_BAR = r"\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)"  # tqdm: " 12%|███    | 88/732"
_NUM = r"(?:np\.\w+\()?(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"  # verl pprints numpy scalars: np.float64(0.2)


def clean(line: str) -> str:
    """``line`` without ANSI escapes, Ray's ``(Name pid=N[, ip=..])`` prefix and surrounding blanks."""
    text = _ANSI.sub("", line).strip()
    return _RAY_PREFIX.sub("", text).strip()


def _fmt(value: str) -> str:
    """A logged number shortened for the console: 0.4123456 -> 0.412, 12 -> 12."""
    try:
        x = float(value)
    except ValueError:
        return value
    return str(int(x)) if x.is_integer() and abs(x) < 1e6 else f"{x:.3g}"


Rule = tuple[re.Pattern[str], Callable[[re.Match[str], dict[str, str], str], None]]


def _set(**keys: int | str) -> Callable[[re.Match[str], dict[str, str], str], None]:
    """A rule action: ``field=group index`` (the group's text, shortened) or ``field="literal"``."""

    def act(m: re.Match[str], f: dict[str, str], tag: str) -> None:
        for name, g in keys.items():
            f[name] = _fmt(m.group(g)) if isinstance(g, int) else g

    return act


def _step(done: int, total: int | None = None) -> Callable[[re.Match[str], dict[str, str], str], None]:
    def act(m: re.Match[str], f: dict[str, str], tag: str) -> None:
        f["step"] = m.group(done)
        if total is not None:
            f["_total"] = m.group(total)

    return act


def _shard_done(m: re.Match[str], f: dict[str, str], tag: str) -> None:
    f["_done"] = str(int(f.get("_done", "0")) + 1)


def _eval_bar(m: re.Match[str], f: dict[str, str], tag: str) -> None:
    f[tag or "eval"] = f"{m.group(1)}/{m.group(2)}"


def _phase(m: re.Match[str], f: dict[str, str], tag: str) -> None:
    """A rewrite-eval phase line: ``answers of tiny-base: 40 / 192`` -> ``tiny-base 40/192``."""
    name = m.group(1).removeprefix("answers of ")
    f[name] = f"{m.group(2)}/{m.group(3)}" if m.group(2) else "cached"


def _shard_rules(stage: str) -> list[Rule]:
    """The sharded Ray stages' lines (reject, synth): work shards planned, already done, each one finished."""
    return [
        (re.compile(r"in (\d+) work shards \((\d+) already done\)"),
         lambda m, f, t: f.update(_shards=m.group(1), _done=m.group(2))),
        (re.compile(rf"{stage}: shard \d+ done"), _shard_done),
    ]


RULES: dict[str, list[Rule]] = {
    "sft": [
        (re.compile(r"^sft:" + _BAR), _step(1, 2)),
        (re.compile(r"[,\[ ]loss=" + _NUM), _set(loss=1)),
        (re.compile(r"(\d+) steps \(global batch"), lambda m, f, t: f.__setitem__("_total", m.group(1))),
        (re.compile(r"\bstep (\d+) loss " + _NUM), lambda m, f, t: (_step(1)(m, f, t), _set(loss=2)(m, f, t))),
    ],
    "reject": [
        *_shard_rules("reject"),
        (re.compile(r"reject: kept (\d+) of (\d+) prompts"), lambda m, f, t: f.__setitem__("kept", f"{m[1]}/{m[2]}")),
    ],
    "rl": [
        (re.compile(r"^Training Progress:" + _BAR), _step(1, 2)),
        (re.compile(r"^step:(\d+) - "), _step(1)),
        (re.compile(r"critic/score/mean:" + _NUM), _set(reward=1)),
        (re.compile(r"actor/guard/clip_bound:" + _NUM), _set(clip=1)),
    ],
    "eval": [
        (re.compile(r"^eval \([^)]*\):" + _BAR), _eval_bar),
    ],
    "rewrite_synth": [
        *_shard_rules("synth"),
        (re.compile(r"synth: (\d+) of (\d+) samples"), lambda m, f, t: f.__setitem__("written", f"{m[1]}/{m[2]}")),
    ],
    "rewrite_eval": [
        (re.compile(r"(?:^|\s)(rewrite|guard|judge|answers of [\w.:-]+): (?:(\d+) / (\d+)|complete in the cache)$"), _phase),
    ],
}
RULES["rewrite_sft"] = RULES["sft"]


@dataclass
class StageProgress:
    """The live figures of one stage, updated line by line from its log(s)."""

    stage: str
    fields: dict[str, str] = field(default_factory=dict)  # insertion order = display order; "_x" = internal
    lines: int = 0

    def feed(self, line: str, tag: str = "") -> bool:
        """Read one log line (``tag``: the log's suffix, e.g. ``sft`` for ``eval-sft.log``); True if a figure changed."""
        self.lines += 1
        text = clean(line)
        if not text:
            return False
        before = dict(self.fields)
        for pattern, act in RULES.get(self.stage, ()):
            m = pattern.search(text)
            if m:
                act(m, self.fields, tag)
        return self.fields != before

    def render(self) -> str:
        """The figures as one short line, e.g. ``step 88/732 loss 0.53`` (empty before the first)."""
        f = self.fields
        parts: list[str] = []
        if "_shards" in f:
            parts.append(f"shards {f.get('_done', '0')}/{f['_shards']}")
        for key, value in f.items():
            if key.startswith("_"):
                continue
            if key == "step":
                parts.append(f"step {value}/{f['_total']}" if "_total" in f else f"step {value}")
            else:
                parts.append(f"{key} {value}")
        if "step" not in f and "_total" in f:
            parts.insert(0, f"step 0/{f['_total']}")
        return " ".join(parts)


def split_lines(buffer: str, data: str) -> tuple[list[str], str]:
    """Complete lines of ``buffer + data`` (``\\n`` and tqdm's ``\\r`` both end a line) and the unfinished rest."""
    text = (buffer + data).replace("\r\n", "\n").replace("\r", "\n")
    *lines, rest = text.split("\n")
    return lines, rest
