"""Training data, rewards and TRL trainers for IRanker, DRanker and setwise rankers."""
