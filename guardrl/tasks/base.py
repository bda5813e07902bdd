"""What differs between kinds of model trained on guardrl's stages, behind one small interface.

A *task* says how a :class:`~guardrl.core.schema.Sample` becomes chat messages, what the SFT target is, how a
completion is parsed (strictly, never raising), judged against the gold, rewarded and measured, and how
synthetic traces are written for the bundled data. The stages (SFT data, rejection sampling, the RL set
and verl's reward adapter, evaluation, the Python API) look a task up by name and never import one.

Registered like verl's registries, stricter: :func:`register_task` refuses a duplicate name,
:func:`get_task` lists the valid names on a miss. A task defined outside guardrl (a user's package, a
test file) is made known to every process, Ray workers included, by naming its module in the recipe
(``task_modules: [my_pkg.tasks]`` or a ``.py`` path): :func:`get_task` imports those first.

Optional hooks the eval stage uses when a task has them (:mod:`guardrl.stages.eval.report`; without them it
writes one key/value table): ``report_markdown(run_name, metrics, header) -> str``,
``compare_markdown(name_a, a, name_b, b) -> str``, ``write_plots(metrics, out_dir, run_name) -> list[Path]``,
``summary_line(metrics) -> str``; for the RL trainer's logged names ``reward_metric_names``; and for a task whose
output is a prompt for another model (the rewriter; ``guardrl rewrite eval``, ``guardrl.Rewriter``)
``rewritten_prompt(parsed) -> str | None``; for a task whose RL reward needs other models (the rewriter's judged
reward) ``verl_reward_module``, the module whose ``compute_score`` verl calls instead of the default adapter.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from guardrl.core.registry import Registry
from guardrl.core.schema import HARMFUL, UNHARMFUL, Sample

DEFAULT_TASK = "guard"
BUILTIN_MODULES = ("guardrl.tasks.guard", "guardrl.tasks.rewrite")
TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class TargetJudgement:
    """What other models said about a task output that is a prompt for a target model (the rewriter's judged
    RL reward: :mod:`guardrl.tasks.rewrite.reward`; produced by :mod:`guardrl.stages.rewrite.reward_services`).

    Attributes:
        answer: the target VLM's answer to the rewritten prompt; ``None`` = the target failed.
        response_label: the guard's ``Response:`` verdict on that answer against the *original* request
            (``harmful`` / ``unharmful``); ``None`` = the guard failed or its output did not parse.
        refused: the refusal detector's verdict on the answer (``None`` when there is no answer).
    """

    answer: str | None
    response_label: str | None
    refused: bool | None = None

    @property
    def failed(self) -> bool:
        return self.answer is None or self.response_label not in (HARMFUL, UNHARMFUL)


@dataclass(frozen=True)
class Judgement:
    """One completion read against a sample's gold.

    Attributes:
        format_ok: the completion parsed.
        correct: it parsed and matches every gold label the sample has.
        prediction: a short label for tables and rejection records (``"harmful/none"``,
            ``"format_failure"``).
    """

    format_ok: bool
    correct: bool
    prediction: str


@runtime_checkable
class Task(Protocol):
    """The plug-in interface. ``name`` is the recipe's ``task:``; metric keys start with ``metric_prefix/``."""

    name: str
    metric_prefix: str

    def prompt_messages(self, sample: Sample) -> list[dict[str, Any]]:
        """The prompt as Hugging Face chat messages (content lists), one ``{"type": "image"}`` item per
        image of ``sample`` (images first in the user turn). Engines apply the chat template to these.
        Reads the sample's inputs only: at inference it is unlabelled (:func:`query_sample`)."""
        ...

    def sft_target(self, sample: Sample) -> str | None:
        """The assistant turn SFT trains on; ``None`` when the row cannot be a target."""
        ...

    def parse(self, completion: str) -> Any:
        """Parse strictly; never raises on model output. The result has a ``format_ok`` attribute."""
        ...

    def judge(self, sample: Sample, completion: str) -> Judgement:
        """Is ``completion`` right for ``sample`` (the rejection-sampling and evaluation question)?"""
        ...

    def ground_truth(self, sample: Sample) -> dict[str, Any]:
        """What an RL row carries for the reward (``reward_model.ground_truth``): plain JSON-able data."""
        ...

    def reward_config(self, options: Mapping[str, Any]) -> Any:
        """The recipe's ``reward:`` block, validated (an unknown key or a bad value raises)."""
        ...

    def reward(self, completion: str, ground_truth: Any, config: Any,
               count_tokens: TokenCounter | None = None) -> dict[str, float]:
        """``{"score": reward, **parts}`` for one completion; every part is logged as a metric.
        ``ground_truth`` is what :meth:`ground_truth` wrote, as a mapping or its JSON string."""
        ...

    def score(self, sample: Sample, completion: str, output_tokens: int) -> Any:
        """One evaluated record (plain data, sent between processes) for :meth:`metrics`."""
        ...

    def metrics(self, sets: Mapping[str, Sequence[Any]]) -> dict[str, float]:
        """Metrics of each named set of :meth:`score` records: flat keys, ``<set>/...``."""
        ...

    def synthetic_target(self, sample: Sample, key: str) -> str | None:
        """A templated reasoning trace + answer for bundled data without real traces (stable in ``key``)."""
        ...


_TASKS: Registry[Task] = Registry("task")


def query_sample(id: str, request: str, response: str | None = None, images: Sequence[bytes] = ()) -> Sample:
    """An unlabelled :class:`~guardrl.core.schema.Sample` of one interaction to moderate (inference has no gold,
    so the schema's rule "at least one label" is not applied; nothing else is read from the labels).
    ``modality``: ``text`` without images, ``image`` with images and no text, else ``text_image``."""
    modality = "text" if not images else ("text_image" if request.strip() else "image")
    s = object.__new__(Sample)
    values = {"id": id, "source": "", "modality": modality, "request": request, "response": response,
              "images": tuple(images), "label_request": None, "label_response": None, "target": None,
              "provenance": {}}
    for name, value in values.items():
        object.__setattr__(s, name, value)
    return s


def register_task(task: Task) -> Task:
    """Register a task instance under ``task.name``.

    Raises:
        ValueError: the name is taken.
        TypeError: ``task`` does not implement :class:`Task`.
    """
    if not isinstance(task, Task):
        raise TypeError(f"{task!r} does not implement guardrl.tasks.Task")
    return _TASKS.add(task.name, task)


def import_task_modules(modules: Iterable[str]) -> None:
    """Import the built-in task modules and ``modules`` (dotted names or ``.py`` paths), each once."""
    for mod in (*BUILTIN_MODULES, *modules):
        if mod.endswith(".py"):
            path = Path(mod).resolve()
            name = f"guardrl_task_{abs(hash(str(path)))}"
            if name in sys.modules:
                continue
            if not path.is_file():
                raise FileNotFoundError(f"task module {mod}: no such file")
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[name] = module
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            importlib.import_module(mod)


def get_task(name: str | None = None, modules: Iterable[str] = ()) -> Task:
    """The task registered under ``name`` (default :data:`DEFAULT_TASK`), after importing ``modules``.

    Raises:
        KeyError: unknown name; the message lists the valid ones.
    """
    import_task_modules(modules)
    return _TASKS.get(name or DEFAULT_TASK)


def task_names(modules: Iterable[str] = ()) -> list[str]:
    import_task_modules(modules)
    return _TASKS.names()


def task_modules(modules: Iterable[str] | None) -> list[str]:
    """A recipe's ``task_modules`` with ``.py`` paths made absolute (Ray workers may start elsewhere)."""
    return [str(Path(m).resolve()) if str(m).endswith(".py") else str(m) for m in modules or ()]


def check_task(name: str | None, modules: Iterable[str] | None = (), where: str = "<recipe>") -> Task:
    """:func:`get_task` for config validation.

    Raises:
        guardrl.core.recipe.RecipeError: naming ``where``: an unknown task (listing the valid names) or a task
            module that does not import.
    """
    from guardrl.core.recipe import RecipeError

    try:
        return get_task(name, task_modules(modules))
    except KeyError as exc:
        raise RecipeError(f"{where}: task: {exc.args[0]}") from None
    except (ImportError, OSError, SyntaxError) as exc:
        raise RecipeError(f"{where}: task_modules: {exc}") from exc
