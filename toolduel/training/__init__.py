"""Training: several processes, trainer arguments, SFT and GRPO."""
