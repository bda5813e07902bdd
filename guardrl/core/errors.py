"""Which exceptions are the user's to fix (bad data, recipe, files, disk) rather than bugs in guardrl.

The command lines (``guardrl ...``, ``python -m data_prep.NAME``) print such an error as one message
and exit with status 2, without a Python traceback; anything else is a bug and keeps its traceback.
``GUARDRL_TRACEBACK=1`` shows the traceback for user errors too.
"""

from __future__ import annotations

import os
import sys

EXIT_USER_ERROR = 2

#: (module, class name): checked only when the module is already imported (else it cannot have raised)
_USER_ERRORS = (
    ("guardrl.core.schema", "SchemaError"),  # bad rows, labels, images (ImageError), BadInputError
    ("guardrl.core.shards", "ShardError"),  # an input folder that is incomplete, corrupt or changed
    ("guardrl.core.recipe", "RecipeError"),
    ("guardrl.stages.export.runner", "ExportError"),
    ("guardrl.stages.eval.data", "BenchmarkError"),
    ("guardrl.core.augment", "AugmentError"),
    ("guardrl.stages.serve.policy", "PolicyError"),
)


def is_user_error(exc: BaseException) -> bool:
    """True for the errors listed above and ``OSError`` (missing file, permission, disk full)."""
    if isinstance(exc, OSError):
        return True
    for module, name in _USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(exc, cls):
            return True
    return False


def exit_on_user_error(exc: BaseException) -> None:
    """Print ``error: <message>`` on stderr and exit 2 for a user error; return (to re-raise) otherwise."""
    if os.environ.get("GUARDRL_TRACEBACK") or not is_user_error(exc):
        return
    cause = getattr(exc, "cause", None)  # a Ray task/actor error: the message of what the worker raised
    if isinstance(cause, BaseException):
        exc = cause
    print(f"error: {exc}\n(set GUARDRL_TRACEBACK=1 to see the traceback)", file=sys.stderr)
    raise SystemExit(EXIT_USER_ERROR)
