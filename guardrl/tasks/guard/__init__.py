"""The guard task (GuardReasoner-VL): :class:`GuardTask` in :mod:`guardrl.tasks.guard.task`."""

from guardrl.tasks.guard.task import GuardTask

__all__ = ["GuardTask"]
