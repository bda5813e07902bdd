"""The direction of imports between guardrl's layers (README "Architecture"), checked on the source.

Every ``import`` / ``from ... import`` (module level or inside a function, ``TYPE_CHECKING`` blocks
included) and every ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name, in
every module under ``guardrl/``, is read with :mod:`ast`. The rules:

1. ``guardrl.core`` imports no other part of guardrl (pure and task-independent).
2. ``guardrl.tasks`` imports only core (and itself).
3. ``guardrl.generation`` imports only core (engines take rendered messages; they know no task).
4. ``guardrl.models`` imports only core and tasks.
5. ``guardrl.integrations`` imports only core, tasks, generation and models (never a stage).
6. ``guardrl.stages`` may import any layer but never a concrete task (``guardrl.tasks.guard``): they
   look a task up by name (``guardrl.tasks.get_task``).
7. Only ``guardrl.integrations.verl`` imports ``verl``.
8. Only ``guardrl.integrations`` and ``guardrl.stages`` import ``ray``.
9. ``vllm`` is imported only by ``guardrl.generation.vllm``, ``guardrl.integrations`` and ``guardrl.stages``.
10. ``guardrl.core`` and ``guardrl.tasks`` import no ``torch``, ``transformers``, ``ray``, ``verl``
    or ``vllm`` (they run anywhere; PIL, pyarrow, jinja2, omegaconf are allowed).
11. Every module sits in a layer: ``guardrl/<layer>/...`` or one of the top-level files
    ``guardrl/__init__.py`` (the version) and ``guardrl/cli.py`` (the entry that gathers the stages).

Run-time purity (what a module pulls in transitively) is ``test_import.py``'s job.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

LAYERS = ("core", "tasks", "generation", "models", "integrations", "stages")
TOP_FILES = ("__init__", "cli")
# layer -> the guardrl layers it may import (itself always allowed)
MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "tasks": {"core"},
    "generation": {"core"},
    "models": {"core", "tasks"},
    "integrations": {"core", "tasks", "generation", "models"},
    "stages": set(LAYERS),
    "top": set(LAYERS),
}
CONCRETE_TASKS = ("guardrl.tasks.guard", "guardrl.tasks.rewrite")
# third-party package -> the module prefixes allowed to import it
ONLY_IN: dict[str, tuple[str, ...]] = {
    "verl": ("guardrl.integrations.verl",),
    "ray": ("guardrl.integrations", "guardrl.stages"),
    "vllm": ("guardrl.generation.vllm", "guardrl.integrations", "guardrl.stages"),
}
PURE_LAYERS = ("core", "tasks")
NOT_IN_PURE = ("torch", "transformers", "ray", "verl", "vllm")


def _module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported dotted name) for every import in the file; relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            # ``from guardrl.tasks import guard`` imports the module guardrl.tasks.guard
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names if a.name != "*"] or [(node.lineno, mod)]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module" or getattr(node.func, "id", None) == "__import__")):
            out.append((node.lineno, node.args[0].value))
    return out


def _layer(module: str) -> str | None:
    """The layer of a module: ``guardrl`` and ``guardrl.cli`` are the top; ``None`` outside every layer."""
    parts = module.split(".")
    if len(parts) == 1 or (len(parts) == 2 and parts[1] in TOP_FILES):
        return "top"
    return parts[1] if parts[1] in LAYERS else None


def _target_layer(name: str, root: Path) -> str | None:
    """The layer of an imported name; ``guardrl.__version__`` (not a module of its own) is the top package."""
    parts = name.split(".")
    if len(parts) == 2 and parts[1] not in LAYERS and not (root / parts[1]).is_dir() \
            and not (root / f"{parts[1]}.py").is_file():
        return "top"
    return _layer(name)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def check_layers(root: Path) -> list[str]:
    """Every breach of the rules above in the package at ``root`` (a folder named like the package)."""
    pkg = root.name
    problems: list[str] = []
    seen: set[tuple[str, int, str]] = set()

    def report(where: str, line: int, name: str, why: str) -> None:
        if (where, line, why) not in seen:  # `from m import a, b`: once per line and rule
            seen.add((where, line, why))
            problems.append(f"{where}:{line} imports {name} ({why})")

    for path in sorted(root.rglob("*.py")):
        module = _module_name(root, path)
        where = f"{path.relative_to(root.parent)}"
        layer = _layer(module)
        if layer is None:
            problems.append(f"{where}: {module} is in no layer (one of {', '.join(LAYERS)})")
            continue
        for line, name in _imports(path, module):
            top = name.split(".")[0]
            if top == pkg:
                target = _target_layer(name, root)
                if target not in (layer, "top") and target not in MAY_IMPORT[layer]:
                    allowed = sorted(MAY_IMPORT[layer]) or ["nothing else of guardrl"]
                    report(where, line, name, f"{layer} may import {', '.join(allowed)}")
                elif target == "top" and _within(name, f"{pkg}.cli") and layer != "top":
                    report(where, line, name, "only the entry point imports the CLI")
                if layer == "stages" and any(_within(name, t) for t in CONCRETE_TASKS):
                    report(where, line, name, "a stage looks its task up with guardrl.tasks.get_task")
                continue
            if top in ONLY_IN and not any(_within(module, p) for p in ONLY_IN[top]):
                report(where, line, name, f"{top} only in {', '.join(ONLY_IN[top])}")
            elif layer in PURE_LAYERS and top in NOT_IN_PURE:
                report(where, line, name, f"{layer} is pure: no {', '.join(NOT_IN_PURE)}")
    return problems


def test_guardrl_follows_the_layer_rules():
    problems = check_layers(REPO / "guardrl")
    assert not problems, "layer rules broken (tests/unit/test_layers.py):\n" + "\n".join(problems)


# ------------------------------------------------------------------ the checker itself can fail

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "guardrl"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for d in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    return root


CLEAN = {
    "cli.py": "from guardrl.stages.sft import cli\n",
    "core/schema.py": "import pyarrow\nfrom guardrl.core import registry\n",
    "core/registry.py": "",
    "tasks/base.py": "from guardrl.core.registry import Registry\n",
    "tasks/guard/task.py": "from . import prompts\nfrom guardrl.tasks.base import register_task\n",
    "tasks/guard/prompts.py": "import jinja2\n",
    "generation/hf.py": "import torch\nfrom guardrl.core.schema import x\n",
    "generation/vllm.py": "import vllm\n",
    "models/tiny.py": "import torch\nfrom guardrl.tasks.guard import prompts\n",
    "integrations/ray.py": "import ray\n",
    "integrations/verl/reward.py": "def f():\n    import verl\n    from guardrl.tasks import get_task\n",
    "stages/sft/cli.py": "import ray\nfrom guardrl.tasks import get_task\nfrom guardrl.integrations import ray as r\n",
}


def test_a_clean_synthetic_tree_passes(tmp_path):
    assert check_layers(_tree(tmp_path, CLEAN)) == []


@pytest.mark.parametrize(("rel", "text", "expected"), [
    ("core/bad.py", "from guardrl.stages.sft import cli\n", "core may import nothing else of guardrl"),
    ("core/bad.py", "from guardrl.tasks import base\n", "core may import nothing else of guardrl"),
    ("core/bad.py", "def f():\n    import torch\n", "core is pure"),
    ("core/bad.py", "import ray\n", "ray only in guardrl.integrations, guardrl.stages"),
    ("tasks/bad.py", "from ..stages.sft import cli\n", "guardrl.stages.sft.cli (tasks may import core)"),
    ("tasks/bad.py", "import importlib\nimportlib.import_module('guardrl.integrations.ray')\n", "tasks may import core"),
    ("generation/bad.py", "from guardrl.tasks.guard import prompts\n", "generation may import core"),
    ("integrations/bad.py", "from guardrl.stages.reject import runner\n", "integrations may import core"),
    ("stages/reject/bad.py", "from guardrl.tasks.guard.parse import parse\n", "looks its task up"),
    ("stages/reject/bad.py", "from guardrl.tasks import guard\n", "looks its task up"),
    ("stages/rl/bad.py", "import verl\n", "verl only in guardrl.integrations.verl"),
    ("integrations/submit2.py", "from verl import x\n", "verl only in guardrl.integrations.verl"),
    ("models/bad.py", "import vllm\n", "vllm only in"),
    ("stages/eval/bad.py", "from guardrl import cli\n", "only the entry point imports the CLI"),
    ("io/shards.py", "", "is in no layer"),
])
def test_each_rule_reports_a_breach(tmp_path, rel, text, expected):
    problems = check_layers(_tree(tmp_path, {**CLEAN, rel: text}))
    assert problems and all(expected in p and rel.split("/")[0] in p for p in problems), problems
