"""guardrl: train and serve reasoning guard models for vision-language models with online RL.

``from guardrl import Guard`` is the Python API (:class:`guardrl.stages.serve.api.Guard`), and
``from guardrl import Rewriter`` the prompt rewriter's (:class:`guardrl.stages.rewrite.api.Rewriter`), each imported on
first use so that ``import guardrl`` stays light.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Guard":
        from guardrl.stages.serve.api import Guard

        return Guard
    if name in ("Rewriter", "RewriteResult"):
        from guardrl.stages.rewrite import api

        return getattr(api, name)
    raise AttributeError(f"module 'guardrl' has no attribute {name!r}")
