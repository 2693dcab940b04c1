"""Foundations every layer may use: errors, named random streams, atomic files, matrix-product
precision and torch.compile's switch. Nothing here knows of RL."""
