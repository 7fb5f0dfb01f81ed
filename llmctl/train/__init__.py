"""Training: batching (batching.py), optimizer and schedule (optim.py), training-state
checkpoints (checkpoint.py), scoring (evaluate.py) and the one loop (loop.py)."""
