"""The rewrite task (VLMGuard-R1's reasoning prompt rewriter): :class:`RewriteTask` in :mod:`guardrl.tasks.rewrite.task`."""

from guardrl.tasks.rewrite.task import RewriteTask

__all__ = ["RewriteTask"]
