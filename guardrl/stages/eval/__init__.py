"""Evaluation: run a guard model over benchmark sets, score, report, plot (``guardrl eval``)."""
