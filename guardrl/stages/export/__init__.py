"""Checkpoint (SFT or verl FSDP) -> Hugging Face folder + model card (``guardrl export``)."""
