"""Model builders: the tiny random Qwen2.5-VL for tests and the demo."""
