"""The RL set: hard samples + safety-aware concatenation (``guardrl augment``)."""
