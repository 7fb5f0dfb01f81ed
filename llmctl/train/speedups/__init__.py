"""CPU training speed-ups: patches that compute the same thing as the stock model, cheaper on a
CPU. apply.py picks those that fit a model; each module says why its change is exact.
"""
