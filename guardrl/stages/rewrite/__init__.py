"""``guardrl rewrite``: the VLMGuard-R1 prompt rewriter -- data synthesis, evaluation, use."""
