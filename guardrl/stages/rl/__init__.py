"""Online GRPO through verl (``guardrl rl``); the verl side is guardrl.integrations.verl."""
