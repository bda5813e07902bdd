"""``guardrl rewrite``: the VLMGuard-R1 prompt rewriter -- synthesis, evaluation, use."""
