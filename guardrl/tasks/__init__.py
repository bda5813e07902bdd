"""Task plug-ins: what differs between kinds of model (the guard first). See :mod:`guardrl.tasks.base`."""

from guardrl.tasks.base import DEFAULT_TASK, Judgement, Task, get_task, register_task, task_names

__all__ = ["DEFAULT_TASK", "Judgement", "Task", "get_task", "register_task", "task_names"]
