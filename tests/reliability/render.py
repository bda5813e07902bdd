"""Render ``docs/reliability.json`` (written by the reliability suite) as ``docs/reliability.md``.

    python tests/reliability/render.py [docs/reliability.json] [docs/reliability.md]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEADER = """# Reliability and security record

What was tried against guardrl and what happened. **Every row is written by a test** in
`tests/reliability/` (the `record` fixture in its `conftest.py`); regenerate this page with

```bash
make reliability-doc      # = GUARDRL_RELIABILITY_RECORD=docs/reliability.json pytest -m reliability tests/reliability
                          #   then python tests/reliability/render.py
```

`make test` runs the fast part of the suite (rows not marked *slow*); `make test-reliability` runs all of it.
"Also proven by" names older tests elsewhere in `tests/` that check the same property.
"""


FOOTER = """
## Not covered, and why

- **Disk full for the training stages** (SFT checkpoints, RL checkpoints, eval output): only the data writer is
  run against a full filesystem. SFT checkpoints and every stage output go through the same temp-then-rename
  writers (`guardrl.core.atomic`, `ShardWriter`), but a full disk during `torch`/verl checkpoint saving is not
  exercised here.
- **kill -9 of export and of `guardrl pipeline run`**: export writes into a temp folder renamed after it reloads
  (`atomic_dir`), the pipeline runs each stage's CLI (covered above); neither is killed by a test here.
- **RL bit-equality with an uninterrupted run**: the RL row checks the step count and finite losses after a resume,
  not bit-equality with a reference run (GRPO sampling on a shared CPU takes minutes per run).
- **GPU engines** (vLLM): the prompt-length refusal is tested on the HF engine; vLLM enforces its own
  `max_model_len`.
"""


def _cell(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text))  # colours of Ray's log prefix
    text = re.sub(r"/tmp/pytest-of-[^/]+/pytest-\d+/[^/\s]+", "$TMP", text)  # pytest's tmp_path
    return " ".join(text.split()).replace("|", "\\|")


def render(rows_by_test: dict[str, list[dict]]) -> str:
    rows = [r for rs in rows_by_test.values() for r in rs]
    areas: dict[str, list[dict]] = {}
    for r in rows:
        areas.setdefault(r["area"], []).append(r)
    n_pass = sum(r["outcome"] == "pass" for r in rows)
    out = [HEADER, f"\n{len(rows)} rows: {n_pass} pass, {sum(r['outcome'] == 'fail' for r in rows)} fail, "
           f"{sum(r['outcome'] == 'skip' for r in rows)} skipped.\n"]
    for area, rs in areas.items():
        out.append(f"\n## {area}\n\n| what was tried | expected | what happened | result | test (s) |\n|---|---|---|---|---|")
        for r in rs:
            test = r["test"].split("tests/reliability/")[-1]
            slow = ", slow" if r.get("slow") else ""
            see = f" Also proven by `{r['see']}`." if r.get("see") else ""
            out.append(f"| {_cell(r['case'])} | {_cell(r['expected'])} | {_cell(r['happened'])} {_cell(see)} | "
                       f"**{r['outcome']}** | `{_cell(test)}` ({r['seconds']}{slow}) |")
    return "\n".join(out) + "\n" + FOOTER


def main(argv: list[str] | None = None) -> None:
    import json

    args = argv if argv is not None else sys.argv[1:]
    src = Path(args[0]) if args else REPO / "docs" / "reliability.json"
    dest = Path(args[1]) if len(args) > 1 else REPO / "docs" / "reliability.md"
    dest.write_text(render(json.loads(src.read_text())))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
