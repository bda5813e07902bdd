"""The pipeline runner: data -> sft -> reject -> augment -> rl -> export -> eval (see runner.py)."""
