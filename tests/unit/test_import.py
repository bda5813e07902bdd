"""The package imports without GPU, Ray cluster or network, and pure modules stay pure.

The one runtime purity check (it sees third-party imports made transitively, which the static
layer test, ``test_layers.py``, does not): each module below is imported in a fresh interpreter, in
order, and the first one that pulls in a forbidden package is named.
"""

from __future__ import annotations

import subprocess
import sys

INTEGRATIONS = ("ray", "verl", "vllm", "torch")
# module -> extra packages it must not import (the pipeline's progress parser runs without rich)
PURE: dict[str, tuple[str, ...]] = {
    "guardrl.stages.pipeline.progress": ("rich",),
    "guardrl.core.registry": (),
    "guardrl.core.provenance": (),
    "guardrl.core.shard_reader": (),
    "guardrl.core.schema": (),
    "guardrl.tasks.guard.prompts": (),
    "guardrl.tasks.guard.parse": (),
    "guardrl.tasks.guard.reward": (),
    "guardrl.core.clipping": (),
    "guardrl.core.augment": (),
    "guardrl.tasks.guard.metrics": (),
    "guardrl.core.images": (),
    "guardrl.core.typographic": (),
    "guardrl.tasks.guard.traces": (),
    "guardrl.core.atomic": (),
    "guardrl.core.shards": (),
    "guardrl.core.recipe": (),
    "guardrl.core.errors": (),
    "guardrl.tasks": (),
    "guardrl.tasks.guard": (),
    "guardrl.generation.base": (),
    # the verl package and its reward adapter stay import-light (verl is imported only by the trainer)
    "guardrl.integrations.verl": (),
    "guardrl.integrations.verl.reward": (),
}

_CHECK = """
import importlib, json, sys
pure, base = json.loads(sys.argv[1]), tuple(json.loads(sys.argv[2]))
for mod, extra in pure.items():
    importlib.import_module(mod)
    bad = [m for m in (*base, *extra) if m in sys.modules]
    if bad:
        sys.exit(f"{mod} imports {bad}")
"""


def test_pure_modules_do_not_import_integrations():
    import json

    out = subprocess.run([sys.executable, "-c", _CHECK, json.dumps(PURE), json.dumps(INTEGRATIONS)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_the_purity_check_names_the_module_that_breaks_it():
    # the same check over a module that does import torch must fail and name it
    import json

    out = subprocess.run([sys.executable, "-c", _CHECK, json.dumps({"guardrl.core.schema": (), "guardrl.generation.sampling": ()}),
                          json.dumps(INTEGRATIONS)], capture_output=True, text=True)
    assert out.returncode != 0 and "guardrl.generation.sampling imports ['torch']" in out.stderr


def test_cli_help_runs():
    out = subprocess.run([sys.executable, "-m", "guardrl.cli", "--help"], capture_output=True, text=True, check=True)
    assert "tiny-model" in out.stdout
