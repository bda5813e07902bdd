"""verl's ``data.custom_cls``: the RL set's rows (data only) get their prompt from the task at load time.

``guardrl rl`` sets, for every recipe::

    data:
      custom_cls: {path: pkg://guardrl.integrations.verl.dataset, name: TaskRLDataset}
      task: guard                  # the recipe's `task:` (default guard)
      task_modules: []             # the recipe's `task_modules:` (a task defined outside guardrl)

verl 0.9.1 builds its train / val datasets with ``get_dataset_class(config.data)(data_files, tokenizer,
config.data, processor, max_samples)``, and its agent loop asks the same class for the images of a
prompt. :class:`TaskRLDataset` is verl's ``RLHFDataset`` with one step added where verl reads the
Parquet files (before its over-long-prompt filter): each row written by
:mod:`guardrl.integrations.verl.rows` gets a ``prompt`` column, ``task.prompt_messages(sample)`` flattened to
verl's string layout (one ``<image>`` per image). Everything after that (length filter, images,
``raw_prompt``, ``__getitem__``) is verl's own code. As EasyR1 renders its prompt formats when the data
is loaded, a template change takes effect at the next run without rebuilding the set. A file that
already has a ``prompt`` column (verl's own layout, hand-made sets) is used as it is.
"""

from __future__ import annotations

from typing import Any

from verl.utils.dataset.rl_dataset import RLHFDataset

from guardrl.integrations.verl.rows import sample_from_row, verl_messages

_DATA_COLUMNS = ("ability", "sample", "images", "extra_info")


def render_prompts(dataframe: Any, task: Any, prompt_key: str = "prompt", image_key: str = "images",
                   where: str = "RL set") -> Any:
    """``dataframe`` (a ``datasets.Dataset`` of verl rows) with a ``prompt_key`` column rendered by ``task``.

    Raises:
        ValueError: a row built by another task (``ability``), or one that is not a sample, naming
            ``where`` and the row.
    """
    if prompt_key in dataframe.column_names:
        return dataframe
    missing = [c for c in _DATA_COLUMNS if c != "images" and c not in dataframe.column_names]
    if missing:
        raise ValueError(f"{where}: neither a {prompt_key!r} column nor guardrl's RL row layout (missing {missing}); "
                         "build the set with `guardrl augment run`")
    view = dataframe.select_columns([c for c in (*_DATA_COLUMNS[:2], image_key, "extra_info")
                                     if c in dataframe.column_names])
    prompts = []
    for i, row in enumerate(view):
        if row["ability"] != task.name:
            raise ValueError(f"{where} row {i}: built for task {row['ability']!r}, the recipe's task is {task.name!r}")
        try:
            sample = sample_from_row({**row, "images": row.get(image_key)})
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where} row {i}: {exc}") from exc
        prompts.append(verl_messages(task.prompt_messages(sample)))
    return dataframe.add_column(prompt_key, prompts)


class TaskRLDataset(RLHFDataset):
    """verl's ``RLHFDataset``; guardrl rows get their prompt from the task named by ``data.task``."""

    def maybe_filter_out_long_prompts(self, dataframe: Any = None) -> Any:
        from guardrl.tasks import get_task

        task = get_task(self.config.get("task"), list(self.config.get("task_modules") or []))
        where = ", ".join(map(str, self.original_data_files))
        dataframe = render_prompts(dataframe, task, self.prompt_key, self.image_key, where=where)
        return super().maybe_filter_out_long_prompts(dataframe)
