"""Training: batching (batching.py), optimizer and schedule (optim.py), mixed precision
(precision.py), training-state checkpoints (checkpoint.py) and the one loop (loop.py)."""
