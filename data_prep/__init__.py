"""Converters from public guard data sets to guardrl Parquet (one module per source).

Each module: ``python -m data_prep.NAME --src PATH --out DIR [--on-bad skip] [--limit N]``, also
``guardrl data convert NAME --src PATH --out DIR``. :data:`CONVERTERS` lists them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: name -> (module, one-line description)
CONVERTERS: dict[str, tuple[str, str]] = {
    "guard_mini": ("data_prep.guard_mini", "bundled guard-mini corpus -> train/dev with typographic variants"),
    "guardreasoner_vltrain": ("data_prep.guardreasoner_vltrain",
                              "GuardReasoner-VLTrain (text / image / text-image; instruction/input/output + image)"),
    "guardreasoner_benchmark": ("data_prep.guardreasoner_benchmark",
                                "GuardReasoner's processed eval sets 0_<k>_<name>.json (the paper's exact rows)"),
    # the 14 evaluation benchmarks of PAPER.md (12 data sets; WildGuardTest and SPA-VL-Eval serve both tasks)
    "toxicchat": ("data_prep.toxicchat", "ToxicChat test CSV, human-annotated rows (request)"),
    "openai_moderation": ("data_prep.openai_moderation", "OpenAI Moderation samples-1680.jsonl.gz (request)"),
    "aegis": ("data_prep.aegis", "AegisSafetyTest, Aegis 1.0 test split (request)"),
    "simple_safety_tests": ("data_prep.simple_safety_tests", "SimpleSafetyTests - test cases.csv (request)"),
    "harmbench_prompt": ("data_prep.harmbench_prompt", "HarmBench test behaviours CSV, standard + copyright (request)"),
    "wildguardtest": ("data_prep.wildguardtest", "WildGuardTest parquet (request + response)"),
    "harmimagetest": ("data_prep.harmimagetest", "HarmImageTest, GuardReasoner-VLTest (image request)"),
    "spa_vl_eval": ("data_prep.spa_vl_eval", "SPA-VL-Eval, GuardReasoner-VLTest (text-image request + response)"),
    "harmbench_response": ("data_prep.harmbench_response", "HarmBench classifier val set JSON (response)"),
    "saferlhf": ("data_prep.saferlhf", "PKU-SafeRLHF test (response)"),
    "beavertails": ("data_prep.beavertails", "BeaverTails 30k test (response)"),
    "xstest_response": ("data_prep.xstest_response", "XSTest-Response response_harmfulness (response)"),
    # the rewriter's (VLMGuard-R1) training sources: instruction + image, no response (REWRITE_SPEC.md)
    "vlguard_train": ("data_prep.vlguard_train", "VLGuard train.json, one row per image x instruction (rewrite)"),
    "vlsbench": ("data_prep.vlsbench", "VLSBench data.json, harmful image-text pairs (rewrite)"),
    "spa_vl_train": ("data_prep.spa_vl_train", "SPA-VL train Parquet, question + chosen / rejected (rewrite)"),
    # the rewriter's evaluation benchmarks (task `rewrite`; images from the user's download, --images DIR)
    "siuo": ("data_prep.siuo", "SIUO siuo_gen.json, safe inputs but unsafe output (rewrite eval, 167)"),
    "mm_safetybench": ("data_prep.mm_safetybench",
                       "MM-SafetyBench processed_questions x SD / SD_TYPO / TYPO (rewrite eval, 1,680 x 3)"),
    "figstep": ("data_prep.figstep", "FigStep SafeBench CSV + typographic images (rewrite eval, 500; Tiny 50)"),
    "vlguard_test": ("data_prep.vlguard_test", "VLGuard test.json: safe_safe / safe_unsafe / unsafe (rewrite eval)"),
}


def get_converter(name: str) -> ModuleType:
    """The converter module for ``name`` (``-`` and ``_`` are interchangeable).

    Raises:
        KeyError: an unknown name, listing the valid ones.
    """
    key = name.replace("-", "_")
    if key not in CONVERTERS:
        raise KeyError(f"unknown converter {name!r}; converters: {sorted(CONVERTERS)}")
    return importlib.import_module(CONVERTERS[key][0])
