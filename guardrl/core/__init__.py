"""The pure, task-independent core: schema, images, metrics, clip schedules, registries, shards I/O.

Nothing here imports a task, a stage, Ray, verl or vLLM (``tests/unit/test_layers.py``).
"""
