"""Task plug-ins: what differs between kinds of model (the guard first). See :mod:`guardrl.tasks.base`."""

from guardrl.tasks.base import (
    DEFAULT_TASK,
    Judgement,
    Task,
    check_task,
    get_task,
    query_sample,
    register_task,
    task_modules,
    task_names,
)

__all__ = ["DEFAULT_TASK", "Judgement", "Task", "check_task", "get_task", "query_sample", "register_task", "task_modules",
           "task_names"]
