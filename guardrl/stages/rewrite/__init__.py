"""The rewriter's stages (VLMGuard-R1): data synthesis (``guardrl rewrite synth``)."""
