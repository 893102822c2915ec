"""toolduel: an RL-trained query model duels a function-calling model; its wins become training data."""

__version__ = "0.1.0"
